"""Arguments and checks shared by the commands: every path is checked here, locally and at once,
before anything is loaded (a mistyped ``--model models/tinyy`` is "no such folder" with a
did-you-mean, not half a minute of hub retries), and every command that writes refuses to replace
a finished output unless ``--overwrite``. This module imports nothing heavy: the parser uses it."""

from __future__ import annotations

import difflib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from madx.atomic import atomic_write_json


class UsageError(ValueError):
    """A command line that cannot work as given (a missing flag, flags that contradict each other or
    their files, an output already there): said in the command line's terms; ``madx`` prints it as one
    line, ``madx COMMAND: error: …``, and exits 2."""


# -- arguments ------------------------------------------------------------------------------------
def add_training_arguments(parser, lr: float | None, batch_size: int | None, lr_help: str = "learning rate",
                           batch_help: str = "examples per optimizer step on each process") -> None:
    parser.add_argument("--lr", type=float, default=lr, help=lr_help)
    parser.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    parser.add_argument("--seed", type=int, default=1, help="seed of the initialisation, shuffling and masking")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no", help="autocast dtype")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="optimizer steps between dev evaluations (default: once per epoch, or 10 per run)")
    parser.add_argument("--log-every", type=int, default=10, help="optimizer steps between progress lines")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="optimizer steps between checkpoints in OUT/checkpoints (one is also written on SIGTERM; "
                             "default: the training loop's, TrainConfig.checkpoint_every)")


def checkpoint_settings(args) -> dict:
    """TrainConfig keywords for ``--checkpoint-every`` (left out: TrainConfig's own default)."""
    return {} if args.checkpoint_every is None else {"checkpoint_every": args.checkpoint_every}


def add_output_arguments(parser, what: str, resumable: bool = False) -> None:
    parser.add_argument("--out", required=True, type=Path, help=f"the folder to write ({what})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished output in --out (refused otherwise)"
                             + ("; with an unfinished one, start over instead of resuming from its checkpoint" if resumable else ""))


# -- names ----------------------------------------------------------------------------------------
def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the nearest candidate, or ``""``."""
    near = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=cutoff)
    return f" (did you mean {near[0]}?)" if near else ""


def _near_path(path: Path, want_dir: bool | None) -> str:
    """Did-you-mean among the entries of the deepest existing parent of ``path``."""
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    try:
        entries = [p for p in parent.iterdir() if want_dir is None or p.is_dir() == want_dir]
    except OSError:
        return ""
    relative = path.relative_to(parent) if path.is_relative_to(parent) else path
    names = {str(p.relative_to(parent)): p for p in entries}
    near = difflib.get_close_matches(str(relative).split(os.sep)[0], list(names), n=1, cutoff=0.6)
    if not near:
        return ""
    rest = Path(*Path(relative).parts[1:]) if len(Path(relative).parts) > 1 else None
    suggestion = names[near[0]] / rest if rest else names[near[0]]
    return f" (did you mean {suggestion}?)"


# -- inputs ---------------------------------------------------------------------------------------
def looks_local(name_or_path: str) -> bool:
    """Whether a ``--model`` value is meant as a folder here rather than a hub name: a hub id is ``name`` or
    ``owner/name``; anything with more parts, a leading ``.``/``/``/``~``, or whose first part is a folder
    here (``models/tinyy`` next to ``models/``) is a path."""
    text = str(name_or_path)
    if text.startswith((".", "/", "~")) or text.endswith("/") or os.sep != "/" and os.sep in text:
        return True
    parts = text.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).expanduser().is_dir())


def check_model(flag: str, name_or_path: str | os.PathLike, presets: Iterable[str] = ()) -> str:
    """A model folder here, a preset, or a hub name: checked before any hub lookup. A folder must exist and hold
    a ``config.json``; a name close to a preset or to a folder here is refused with a did-you-mean."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    presets = tuple(presets)
    if text in presets:
        return text
    if path.is_dir():
        if not (path / "config.json").is_file():
            hint = _subfolder_hint(path, "config.json")
            raise UsageError(f"{flag} {text}: the folder has no config.json, so it is not a model folder{hint}")
        return text
    if path.exists():
        raise UsageError(f"{flag} {text}: is a file; pass the model's folder (the one holding config.json) or a hub name")
    if looks_local(text):
        raise UsageError(f"{flag} {text}: no such folder{_near_path(path, want_dir=True)}")
    if _in_hub_cache(text):
        return text
    hint = did_you_mean(text, [*presets, *(p.name for p in Path.cwd().iterdir() if p.is_dir())], cutoff=0.85)
    if hint:
        raise UsageError(f"{flag} {text}: not a folder here, a built-in preset or a model in the local hub cache{hint}")
    problem = _hub_problem(text)
    if problem:
        where = f"not a folder here{', not a built-in preset' if presets else ''}, not in the local hub cache, and {problem}"
        raise UsageError(f"{flag} {text}: {where}")
    return text


def _hub_problem(name: str) -> str | None:
    """Why the hub cannot give ``name``'s config.json, asked once without retries (transformers retries an
    unreachable hub for half a minute); None when it can."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", "no", ""):
        return "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import file_exists
    except ImportError:
        return None
    try:
        return None if file_exists(name, "config.json") else "the hub has no such model"
    except Exception as error:  # no network, an invalid repo id, ...
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        return f"the hub cannot be asked ({type(error).__name__}: {reason})"


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id: not in the cache
        return False


def _subfolder_hint(path: Path, marker: str) -> str:
    inside = sorted(p.parent for p in path.glob(f"*/{marker}"))
    return f"; it holds {', '.join(map(str, inside))}: did you mean {inside[0]}?" if inside else ""


def check_file(flag: str, value: str | os.PathLike, hub_ok: bool = True) -> None:
    """A data file flag: ``hub:NAME`` (where allowed) or a file that exists."""
    text = str(value)
    if hub_ok and text.startswith("hub:"):
        return
    path = Path(text).expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {text}: is a folder; pass a file")
    if not path.exists():
        raise UsageError(f"{flag} {text}: no such file{_near_path(path, want_dir=False)}")


def check_adapter(flag: str, directory: Path, kind: str | None = None):
    """The config of the madx adapter in ``directory`` (checked as a folder first: a missing one gets a
    did-you-mean, a command's output folder points to the adapter inside it); ``kind`` checks what it is."""
    from madx.io import CONFIG_NAME, AdapterFileConfig

    if not directory.exists():
        raise UsageError(f"{flag} {directory}: no such folder{_near_path(directory, want_dir=True)}")
    if not directory.is_dir():
        raise UsageError(f"{flag} {directory}: is a file; pass the adapter's folder (the one holding {CONFIG_NAME})")
    if not (directory / CONFIG_NAME).is_file():
        raise UsageError(f"{flag} {directory}: no {CONFIG_NAME} here, so not a madx adapter folder"
                         f"{_subfolder_hint(directory, CONFIG_NAME)}")
    config = AdapterFileConfig.read(directory / CONFIG_NAME)
    if kind is not None and config.kind != kind:
        swapped = {"language": "--language-adapter", "task": "--task-adapter"}[config.kind]
        raise UsageError(f"{flag} {directory} is a {config.kind} adapter ({config.name!r}), not a {kind} adapter; "
                         f"did you mean {swapped} {directory}?")
    return config


# -- outputs --------------------------------------------------------------------------------------
CHECKPOINTS = "checkpoints"  # OUT/checkpoints: where a training command's checkpoints go (resumed from)


def prepare_output(out: Path, marker: str, what: str, overwrite: bool, resumable: bool = False) -> str:
    """Check ``--out`` before any work: ``"new"``, or ``"resume"`` (an unfinished training output with a
    checkpoint). ``marker`` is the file written last (its presence means finished); a finished output is
    refused unless ``overwrite``, which also drops the marker and any checkpoint, so the folder reads as
    unfinished until the new output is complete."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; pass a folder")
    done = out / marker
    checkpoints = out / CHECKPOINTS
    if done.exists() and not overwrite:
        raise UsageError(f"--out {out} already holds a finished {what} ({done}); pass --overwrite to replace it, "
                         "or choose another --out")
    if overwrite:
        done.unlink(missing_ok=True)
        if checkpoints.is_dir():
            shutil.rmtree(checkpoints)
        return "new"
    if resumable and any((p / "manifest.json").is_file() for p in checkpoints.glob("step-*")):
        return "resume"  # a complete checkpoint (madx.checkpoint: its manifest is written last)
    return "new"


def record_arguments(out: Path, args, resuming: bool, ignore: tuple[str, ...] = ()) -> None:
    """Resuming is only right with the same command line: each run's arguments are kept in
    ``OUT/command.json``; resuming with any difference (other than ``ignore``) is refused, naming it.
    (The checkpoint's own fingerprint covers the training config; this covers the data and the model.)"""
    path = out / "command.json"
    current = _arguments(args, ignore)
    if resuming and path.is_file():
        first = json.loads(path.read_text(encoding="utf-8"))
        differ = [f"--{k.replace('_', '-')} {first.get(k)!r} then, {current.get(k)!r} now"
                  for k in sorted(set(first) | set(current)) if first.get(k) != current.get(k)]
        if differ:
            raise UsageError(f"--out {out} holds an unfinished run with other arguments ({'; '.join(differ)}); run the "
                             "same command to resume it, or pass --overwrite to start over")
    atomic_write_json(path, current)


def _arguments(args, ignore: tuple[str, ...]) -> dict:
    skip = {"run", "command_prog", "overwrite", "debug", "checkpoint_every", "log_every", *ignore}
    return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, list) else v)
            for k, v in vars(args).items() if k not in skip and not callable(v)}


def runtime_for(mixed_precision: str, compile: str = "auto"):
    """One process (``madx train-lang …``): the local runtime, as the suite's workers use. Launched as several
    (``accelerate launch --num_processes N -m madx …``, which sets WORLD_SIZE): accelerate's data parallelism."""
    from madx.runtime import Runtime

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return Runtime.distributed(mixed_precision, compile=compile)
    return Runtime.local(mixed_precision=mixed_precision, compile=compile)


def tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out / "tb"))


def write_metrics(out: Path, command: str, args, runtime, result: dict) -> Path:
    from madx.provenance import now, provenance  # imports torch: not while the parser is built (madx/cli.py)

    record = {
        "command": command,
        "config": {k: v for k, v in vars(args).items() if k not in ("run", "command_prog") and not callable(v)},
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
