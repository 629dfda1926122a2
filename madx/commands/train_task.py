"""Train a task (NER or QA) on a source language: a task adapter stacked on the fixed source
language adapter (MAD-X, MAD-X -INV, MAD-X 2.0), a task adapter alone (MAD-X -LAD -INV), or the
whole model (full fine-tuning; point --model at an MLM-adapted model for MLM-SRC / MLM-TRG). The
best dev checkpoint is kept. Output: OUT/task_adapter or OUT/model, OUT/metrics.json (written last:
the run is finished), OUT/tb; OUT/checkpoints while it runs (run the same command again to resume).
Learning rate, batch size, epochs and input length default to the paper's settings for --method and
--task (madx/recipes.py).

    madx train-task --model xlm-roberta-base --task ner --train train-en.tsv --dev dev-en.tsv \\
        --language-adapter adapters/en/adapter --out runs/ner-en
"""

from __future__ import annotations

import shutil
from pathlib import Path

from madx.adapters.config import AdapterConfig
from madx.commands.common import (CHECKPOINTS, UsageError, add_output_arguments, add_training_arguments, check_adapter,
                                  check_file, check_model, prepare_output, record_arguments)
from madx.commands.methods import TASK_METHODS, check_adapters_fit
from madx.recipes import RECIPES, UnknownRecipeError, recipe
from madx.tasks.registry import get_task, task_names

HELP = "train a task adapter (or the whole model) on a source language"


def _by_recipe(field: str) -> str:
    """``adapters: ner 0.0001, qa 0.0001; whole model: ner 5e-05, qa 3e-05`` from the recipes table."""
    families = {"adapters": "adapter methods", "full-model": "full-ft"}
    parts = []
    for family, label in families.items():
        values = ", ".join(f"{r.task} {getattr(r, field)}" for r in RECIPES if r.phase == "task" and r.family == family)
        parts.append(f"{label}: {values}")
    return "; ".join(parts)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="hub name or folder of the base model (or of an MLM-adapted one)")
    parser.add_argument("--task", required=True, choices=task_names(), help="the task")
    parser.add_argument("--train", required=True, help="WikiANN TSV / SQuAD JSON file, or hub:NAME[:CONFIG]")
    parser.add_argument("--dev", required=True, help="dev set for best-checkpoint selection (file or hub:NAME[:CONFIG])")
    add_output_arguments(parser, "task_adapter/ or model/, metrics.json, tb/, checkpoints/", resumable=True)
    parser.add_argument("--method", default="madx", choices=TASK_METHODS,
                        help="madx2 / madx2-inv: MAD-X 2.0, no adapter in the last layer; full-ft: the whole model")
    parser.add_argument("--language-adapter", type=Path,
                        help="the source language adapter (needed by madx, madx-inv, madx2, madx2-inv)")
    parser.add_argument("--reduction-factor", type=int, default=AdapterConfig.task_reduction_factor,
                        help=AdapterConfig.help("task_reduction_factor"))
    parser.add_argument("--epochs", type=float, default=None,
                        help=f"passes over the training set (default: the paper's, {_by_recipe('epochs')})")
    parser.add_argument("--max-length", type=int, default=None,
                        help=f"tokens per input (default: {_by_recipe('max_length')})")
    parser.add_argument("--max-train", type=int, default=None, help="use the first N training examples (default: all)")
    parser.add_argument("--max-dev", type=int, default=None,
                        help="evaluate only the first N dev examples at each dev evaluation (default: all)")
    add_training_arguments(parser, lr=None, batch_size=None,
                           lr_help=f"learning rate (default: the paper's, {_by_recipe('learning_rate')})",
                           batch_help=f"examples per optimizer step on each process (default: {_by_recipe('batch_size')})")


def resolve_defaults(args):
    """The paper's settings (madx/recipes.py) for what the command line leaves out."""
    fields = {"lr": "learning_rate", "batch_size": "batch_size", "epochs": "epochs", "max_length": "max_length"}
    left = [name for name in fields if getattr(args, name) is None]
    if not left:
        return args
    try:
        paper = recipe(args.method, "task", args.task)
    except UnknownRecipeError:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in left)
        raise UsageError(f"madx/recipes.py has no settings for --task {args.task}; pass {flags}") from None
    for name in left:
        setattr(args, name, getattr(paper, fields[name]))
    return args


def check_arguments(args) -> str:
    """Everything checkable before loading a model; returns "new" or "resume"."""
    for name in ("max_train", "max_dev", "epochs", "lr", "batch_size", "max_length"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    check_model("--model", args.model)
    check_file("--train", args.train)
    check_file("--dev", args.dev)
    language = check_adapter("--language-adapter", args.language_adapter, "language") if args.language_adapter else None
    check_adapters_fit(args.method, language, None, args.language_adapter, None)
    what = "model" if args.method == "full-ft" else "task adapter"
    return prepare_output(args.out, "metrics.json", f"train-task run ({what})", args.overwrite, resumable=True)


def run(args) -> int:
    resolve_defaults(args)
    mode = check_arguments(args)

    import torch

    import madx
    from madx.atomic import atomic_save_pretrained
    from madx.commands.common import checkpoint_settings, runtime_for, tensorboard, write_metrics
    from madx.commands.model_loading import load_task_model
    from madx.phases import train_task
    from madx.train import TrainConfig
    from madx.variants import get_variant

    variant = get_variant(args.method)
    runtime = runtime_for(args.mixed_precision)
    if runtime.is_main_process:
        record_arguments(args.out, args, resuming=mode == "resume")
        if mode == "resume":
            print(f"resuming from {args.out / CHECKPOINTS} (--overwrite starts over)", flush=True)
    torch.manual_seed(args.seed)
    model, tokenizer, _ = load_task_model(args.model, args.task)  # a missing head is the one this trains
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
    if args.max_dev:
        dev_examples = dev_examples.select(range(min(args.max_dev, len(dev_examples))))
    config = TrainConfig(learning_rate=args.lr, batch_size=args.batch_size, num_epochs=args.epochs, seed=args.seed,
                         gradient_accumulation_steps=args.grad_accum, eval_every=args.eval_every, log_every=args.log_every,
                         **checkpoint_settings(args))
    writer = tensorboard(args.out) if runtime.is_main_process else None
    progress = (lambda r: print(f"step {r['step']} loss {r['loss']:.4f} {r['tokens_per_s']:.0f} tok/s", flush=True)) if runtime.is_main_process else None
    result = train_task(model, args.task, train_examples, dev_examples, tokenizer, config, runtime, setup,
                        task_adapter=args.task if variant.uses_adapters else None,
                        adapters=variant.adapter_config(AdapterConfig(task_reduction_factor=args.reduction_factor)),
                        max_length=args.max_length, writer=writer, progress=progress,
                        checkpoint_dir=args.out / CHECKPOINTS)
    if runtime.is_main_process:
        model = runtime.unwrap(model)
        if variant.uses_adapters:
            madx.save_adapter(model, args.task, args.out / "task_adapter")
        else:
            atomic_save_pretrained(args.out / "model", model, tokenizer)
        write_metrics(args.out, "train-task", args, runtime, result)
        shutil.rmtree(args.out / CHECKPOINTS, ignore_errors=True)  # finished: metrics.json says so; resuming is over
    return 0
