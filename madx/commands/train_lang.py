"""Train a language adapter (+ its invertible adapter) with MLM on unlabelled text; the base
model and its MLM head stay frozen. Output: OUT/adapter (safetensors + config), OUT/metrics.json
(written last: the run is finished), OUT/tb (tensorboard); OUT/checkpoints while it runs: run the
same command again to resume from the latest one. Steps, batch size, learning rate and block length
default to the paper's (madx/recipes.py).

    madx train-lang --model xlm-roberta-base --language qu --text qu.txt --out adapters/qu
    accelerate launch --num_processes 4 -m madx train-lang ...   # data-parallel
"""

from __future__ import annotations

import shutil
from pathlib import Path

from madx.adapters.config import AdapterConfig
from madx.commands.common import (CHECKPOINTS, UsageError, add_output_arguments, add_training_arguments, check_file,
                                  check_model, prepare_output, record_arguments)
from madx.recipes import recipe

HELP = "train a language adapter (+ invertible adapter) with MLM"
PAPER = recipe("adapters", "mlm")


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="hub name or folder of a model with an MLM head")
    parser.add_argument("--language", required=True,
                        help="the language's code in madx's language table (madx/data/languages.py), e.g. qu; "
                             "also the adapter's name")
    parser.add_argument("--unlisted-language", action="store_true",
                        help="accept a --language that is not in the language table (a new language)")
    parser.add_argument("--text", nargs="+", required=True, help="text files (one document per line) or hub:NAME")
    add_output_arguments(parser, "adapter/, metrics.json, tb/, checkpoints/", resumable=True)
    parser.add_argument("--no-invertible", action="store_true", help="MAD-X -INV: no invertible adapter")
    parser.add_argument("--leave-out", type=int, nargs="*", default=[], metavar="LAYER",
                        help="layers without a language adapter; MAD-X 2.0: --leave-out -1 (the last layer) "
                             "(default: none)")
    parser.add_argument("--reduction-factor", type=int, default=AdapterConfig.language_reduction_factor,
                        help=AdapterConfig.help("language_reduction_factor"))
    parser.add_argument("--invertible-reduction-factor", type=int, default=AdapterConfig.invertible_reduction_factor,
                        help=AdapterConfig.help("invertible_reduction_factor"))
    parser.add_argument("--steps", type=int, default=PAPER.steps, help="optimizer steps (the paper's 250k)")
    parser.add_argument("--max-seq-length", type=int, default=PAPER.max_length, help="tokens per packed MLM block")
    add_training_arguments(parser, lr=PAPER.learning_rate, batch_size=PAPER.batch_size,
                           lr_help="learning rate (the paper's for adapters)",
                           batch_help="blocks per optimizer step on each process (the paper's)")
    parser.add_argument("--compile", choices=("auto", "yes", "no"), default="auto",
                        help="torch.compile the encoder of the MLM step: auto = on CUDA only, no = the opt-out")


def check_language(args) -> None:
    from madx.data.languages import LANGUAGES, get_language

    if args.language in LANGUAGES or args.unlisted_language:
        return
    try:
        get_language(args.language)
    except LookupError as error:
        raise UsageError(f"--language {args.language}: {error}; for a language outside the table add "
                         "--unlisted-language") from None


def check_arguments(args) -> str:
    for name in ("steps", "max_seq_length", "lr", "batch_size"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    check_language(args)
    check_model("--model", args.model)
    for text in args.text:
        check_file("--text", text)
    from madx.data.corpus import check_corpus_files  # light: numpy and the checks only

    files = [text for text in args.text if not text.startswith("hub:")]
    if files:
        check_corpus_files(files)  # a WikiANN TSV or a JSON file is refused before the model loads
    return prepare_output(args.out, "metrics.json", "train-lang run (language adapter)", args.overwrite, resumable=True)


def run(args) -> int:
    mode = check_arguments(args)

    import torch

    import madx
    from madx.commands.common import checkpoint_settings, runtime_for, tensorboard, write_metrics
    from madx.commands.model_loading import load_mlm_model
    from madx.data.mlm import load_text_hub
    from madx.phases import MLMData, train_language_adapter
    from madx.train import TrainConfig

    runtime = runtime_for(args.mixed_precision, compile=args.compile)
    if runtime.is_main_process:
        record_arguments(args.out, args, resuming=mode == "resume")
        if mode == "resume":
            print(f"resuming from {args.out / CHECKPOINTS} (--overwrite starts over)", flush=True)
    torch.manual_seed(args.seed)
    model, tokenizer = load_mlm_model(args.model)
    corpus = load_text_hub(args.text[0][4:]) if args.text[0].startswith("hub:") else [Path(p) for p in args.text]
    config = TrainConfig(learning_rate=args.lr, batch_size=args.batch_size, max_steps=args.steps, seed=args.seed,
                         gradient_accumulation_steps=args.grad_accum, eval_every=args.eval_every, log_every=args.log_every,
                         **checkpoint_settings(args))
    writer = tensorboard(args.out) if runtime.is_main_process else None
    progress = (lambda r: print(f"step {r['step']} loss {r['loss']:.4f} {r['tokens_per_s']:.0f} tok/s", flush=True)) if runtime.is_main_process else None
    result = train_language_adapter(model, args.language, corpus, tokenizer, config, runtime,
                                    invertible=not args.no_invertible,
                                    adapters=AdapterConfig(language_reduction_factor=args.reduction_factor,
                                                           leave_out=tuple(args.leave_out),
                                                           invertible_reduction_factor=args.invertible_reduction_factor),
                                    data=MLMData(max_seq_length=args.max_seq_length), writer=writer, progress=progress,
                                    checkpoint_dir=args.out / CHECKPOINTS)
    if runtime.is_main_process:
        madx.save_adapter(runtime.unwrap(model), args.language, args.out / "adapter")
        write_metrics(args.out, "train-lang", args, runtime, result)
        shutil.rmtree(args.out / CHECKPOINTS, ignore_errors=True)  # finished: metrics.json says so; resuming is over
    return 0
