"""Arguments and helpers shared by the training and evaluation commands."""

from __future__ import annotations

import json
from pathlib import Path

from madx.atomic import atomic_write_json


def add_training_arguments(parser, lr: float, batch_size: int) -> None:
    parser.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr}, the paper's for adapters)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--eval-every", type=int, default=None, help="optimizer steps between dev evaluations")
    parser.add_argument("--log-every", type=int, default=10)


def tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out / "tb"))


def write_metrics(out: Path, command: str, args, runtime, result: dict) -> Path:
    from madx.provenance import now, provenance  # imports torch: not while the parser is built (madx/cli.py)

    record = {
        "command": command,
        "config": {k: v for k, v in vars(args).items() if k != "run" and not callable(v)},
        "result": result,
        "device": runtime.describe(),
        "finished_at": now(),
        **provenance(),
    }
    path = atomic_write_json(out / "metrics.json", record)
    if runtime.is_main_process:
        summary = {k: v for k, v in (result.get("dev") or result.get("metrics") or {}).items() if isinstance(v, (int, float))}
        print(json.dumps(summary, indent=1))
        print(f"wrote {path}")
    return path
