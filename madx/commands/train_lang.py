"""Train a language adapter (+ its invertible adapter) with MLM on unlabelled text; the base
model and its MLM head stay frozen. Output: OUT/adapter (safetensors + config), OUT/metrics.json,
OUT/tb (tensorboard).

    madx train-lang --model xlm-roberta-base --language qu --text qu.txt --out adapters/qu
    accelerate launch --num_processes 4 -m madx train-lang ...   # data-parallel
"""

from __future__ import annotations

from pathlib import Path

from madx.adapters.config import AdapterConfig

HELP = "train a language adapter (+ invertible adapter) with MLM"


def add_arguments(parser) -> None:
    from madx.commands.common import add_training_arguments

    parser.add_argument("--model", required=True, help="hub name or path of a model with an MLM head")
    parser.add_argument("--language", required=True, help="adapter name, e.g. the ISO code")
    parser.add_argument("--text", nargs="+", required=True, help="text files (one document per line) or hub:NAME")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--no-invertible", action="store_true", help="MAD-X -INV: no invertible adapter")
    parser.add_argument("--leave-out", type=int, nargs="*", default=[], metavar="LAYER",
                        help="layers without a language adapter; MAD-X 2.0: --leave-out -1 (the last layer)")
    parser.add_argument("--reduction-factor", type=int, default=AdapterConfig.language_reduction_factor,
                        help=AdapterConfig.help("language_reduction_factor"))
    parser.add_argument("--invertible-reduction-factor", type=int, default=AdapterConfig.invertible_reduction_factor,
                        help=AdapterConfig.help("invertible_reduction_factor"))
    parser.add_argument("--steps", type=int, default=250000, help="the paper trains 250k steps")
    parser.add_argument("--max-seq-length", type=int, default=256)
    add_training_arguments(parser, lr=1e-4, batch_size=64)
    parser.add_argument("--compile", choices=("auto", "yes", "no"), default="auto",
                        help="torch.compile the encoder of the MLM step: auto = on CUDA only (default), no = the opt-out")


def run(args) -> int:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    import madx
    from madx.commands.common import tensorboard, write_metrics
    from madx.data.mlm import load_text_hub
    from madx.phases import MLMData, train_language_adapter
    from madx.runtime import Runtime
    from madx.train import TrainConfig

    runtime = Runtime.distributed(args.mixed_precision, compile=args.compile)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForMaskedLM.from_pretrained(args.model)
    corpus = load_text_hub(args.text[0][4:]) if args.text[0].startswith("hub:") else [Path(p) for p in args.text]
    config = TrainConfig(learning_rate=args.lr, batch_size=args.batch_size, max_steps=args.steps, seed=args.seed,
                         gradient_accumulation_steps=args.grad_accum, eval_every=args.eval_every, log_every=args.log_every)
    writer = tensorboard(args.out) if runtime.is_main_process else None
    progress = (lambda r: print(f"step {r['step']} loss {r['loss']:.4f} {r['tokens_per_s']:.0f} tok/s", flush=True)) if runtime.is_main_process else None
    result = train_language_adapter(model, args.language, corpus, tokenizer, config, runtime,
                                    invertible=not args.no_invertible,
                                    adapters=AdapterConfig(language_reduction_factor=args.reduction_factor,
                                                           leave_out=tuple(args.leave_out),
                                                           invertible_reduction_factor=args.invertible_reduction_factor),
                                    data=MLMData(max_seq_length=args.max_seq_length), writer=writer, progress=progress)
    if runtime.is_main_process:
        madx.save_adapter(runtime.unwrap(model), args.language, args.out / "adapter")
        write_metrics(args.out, "train-lang", args, runtime, result)
    return 0
