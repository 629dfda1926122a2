"""Train a task (NER or QA) on a source language: a task adapter stacked on the fixed source
language adapter (MAD-X, MAD-X -INV), a task adapter alone (MAD-X -LAD -INV), or the whole model
(full fine-tuning; point --model at an MLM-adapted model for MLM-SRC / MLM-TRG). The best dev
checkpoint is kept. Output: OUT/task_adapter or OUT/model, OUT/metrics.json, OUT/tb.

    madx train-task --model xlm-roberta-base --task ner --train train-en.tsv --dev dev-en.tsv \\
        --language-adapter adapters/en/adapter --out runs/ner-en
"""

from __future__ import annotations

from pathlib import Path

from madx.adapters.config import AdapterConfig
from madx.variants import VARIANTS

TASK_METHODS = tuple(name for name, v in VARIANTS.items() if v.full_model_mlm is None)

from madx.tasks.registry import get_task, task_names

HELP = "train a task adapter (or the whole model) on a source language"


def add_arguments(parser) -> None:
    from madx.commands.common import add_training_arguments

    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--train", required=True, help="WikiANN TSV / SQuAD JSON file, or hub:NAME[:CONFIG]")
    parser.add_argument("--dev", required=True, help="dev set for best-checkpoint selection")
    parser.add_argument("--out", required=True, type=Path)
    # the methods whose task phase this command runs (MLM-SRC / MLM-TRG: full-ft on their MLM-adapted model)
    parser.add_argument("--method", default="madx", choices=TASK_METHODS,
                        help="madx2 / madx2-inv: MAD-X 2.0, no adapter in the last layer")
    parser.add_argument("--language-adapter", type=Path, help="the source language adapter (MAD-X, MAD-X -INV)")
    parser.add_argument("--reduction-factor", type=int, default=AdapterConfig.task_reduction_factor,
                        help=AdapterConfig.help("task_reduction_factor"))
    parser.add_argument("--epochs", type=float, default=100)
    parser.add_argument("--max-length", type=int, default=None, help="default: the task's (NER 128, QA 384)")
    parser.add_argument("--max-train", type=int, default=None, help="use the first N training examples")
    add_training_arguments(parser, lr=1e-4, batch_size=16)


def run(args) -> int:
    import torch

    import madx
    from madx.commands.common import tensorboard, write_metrics
    from madx.phases import train_task
    from madx.runtime import Runtime
    from madx.train import TrainConfig
    from madx.commands.model_loading import load_task_model
    from madx.variants import get_variant

    variant = get_variant(args.method)
    if variant.language_adapters and args.language_adapter is None:
        raise SystemExit(f"--method {args.method} needs --language-adapter (the source language's adapter)")
    runtime = Runtime.distributed(args.mixed_precision)
    torch.manual_seed(args.seed)
    model, tokenizer = load_task_model(args.model, args.task)
    setup = None
    if variant.language_adapters:
        setup = madx.Stack(madx.load_adapter(model, args.language_adapter), args.task)
    elif variant.uses_adapters:
        setup = madx.Stack(args.task)
    spec = get_task(args.task)
    train_examples = spec.load(args.train, "train")
    if args.max_train:
        train_examples = train_examples.select(range(min(args.max_train, len(train_examples))))
    dev_examples = spec.load(args.dev, "dev")
    config = TrainConfig(learning_rate=args.lr, batch_size=args.batch_size, num_epochs=args.epochs, seed=args.seed,
                         gradient_accumulation_steps=args.grad_accum, eval_every=args.eval_every, log_every=args.log_every)
    writer = tensorboard(args.out) if runtime.is_main_process else None
    progress = (lambda r: print(f"step {r['step']} loss {r['loss']:.4f} {r['tokens_per_s']:.0f} tok/s", flush=True)) if runtime.is_main_process else None
    result = train_task(model, args.task, train_examples, dev_examples, tokenizer, config, runtime, setup,
                        task_adapter=args.task if variant.uses_adapters else None, adapters=variant.adapter_config(AdapterConfig(task_reduction_factor=args.reduction_factor)),
                        max_length=args.max_length, writer=writer, progress=progress)
    if runtime.is_main_process:
        model = runtime.unwrap(model)
        if variant.uses_adapters:
            madx.save_adapter(model, args.task, args.out / "task_adapter")
        else:
            model.save_pretrained(args.out / "model")
            tokenizer.save_pretrained(args.out / "model")
        write_metrics(args.out, "train-task", args, runtime, result)
    return 0
