"""Evaluate a trained task on a target language: zero-shot transfer swaps in the target's
language adapter (``--language-adapter``) under the task adapter (``--task-adapter``), or
evaluates a fully fine-tuned model (``--model`` pointing at it, no adapters).

    madx evaluate --model xlm-roberta-base --task ner --test test-qu.tsv \\
        --language-adapter adapters/qu/adapter --task-adapter runs/ner-en/task_adapter --out runs/ner-en-qu
    madx evaluate --model runs/ner-en-full/model --task ner --test test-qu.tsv --out runs/ner-en-full-qu

The method is read from the train-task record beside the task adapter (or --method): a MAD-X task
adapter needs the target's language adapter, and its variant's invertible part and left-out layers
must match. A head that was never trained is refused: without --task-adapter the model itself must
hold a trained head. Output: OUT/metrics.json, and OUT/predictions.npz (per sentence or question:
the columns the metrics are computed from, in the format of the suite's eval jobs).
"""

from __future__ import annotations

import json
from pathlib import Path

from madx.commands.common import (UsageError, add_output_arguments, check_adapter, check_file, check_model,
                                  prepare_output)
from madx.commands.methods import TASK_METHODS, check_adapters_fit
from madx.tasks.registry import get_task, task_names

HELP = "evaluate NER F1 / QA F1+EM, with the target language's adapter swapped in"
PREDICTIONS_FILE = "predictions.npz"  # bench.report.predictions.PREDICTIONS_FILE: the suite's eval jobs' file


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="the base model (adapters), or a fully fine-tuned model")
    parser.add_argument("--task", required=True, choices=task_names(), help="the task")
    parser.add_argument("--test", required=True, help="WikiANN TSV / SQuAD-format JSON (e.g. XQuAD), or hub:NAME[:CONFIG]")
    add_output_arguments(parser, "metrics.json, predictions.npz")
    parser.add_argument("--language-adapter", type=Path, help="the TARGET language adapter")
    parser.add_argument("--task-adapter", type=Path, help="the task adapter (saved with its head)")
    parser.add_argument("--method", choices=TASK_METHODS,
                        help="how the task adapter was trained (default: from the train-task record beside it; "
                             "without --task-adapter: full-ft)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per input (default: the task's)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per forward pass")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no", help="autocast dtype")


def recorded_method(task_adapter: Path) -> str | None:
    """The --method of the train-task run that wrote ``task_adapter`` (its OUT/metrics.json), if it is there."""
    record = task_adapter.parent / "metrics.json"
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("command") != "train-task":
        return None
    method = (data.get("config") or {}).get("method")
    return method if method in TASK_METHODS else None


def resolve_method(args, language, task) -> str:
    if args.method:
        return args.method
    if args.task_adapter is None:
        if args.language_adapter is not None:
            raise UsageError("--language-adapter without --task-adapter: a language adapter has no task head; pass the "
                             "task adapter trained on the source language (train-task's OUT/task_adapter)")
        return "full-ft"
    method = recorded_method(args.task_adapter)
    if method is None and args.language_adapter is None:
        raise UsageError(f"--task-adapter {args.task_adapter}: no train-task record beside it says how it was trained; "
                         "pass the target's --language-adapter (MAD-X), or --method madx-lad-inv for a task adapter alone")
    if method is None:  # a language adapter is given: its own variant
        invertible = language.invertible_bottleneck_size is not None
        method = ("madx2" if language.leave_out else "madx") + ("" if invertible else "-inv")
    return method


def check_arguments(args):
    """Everything about the command line that can be checked without loading a model: (method, task adapter config)."""
    check_model("--model", args.model)
    check_file("--test", args.test)
    language = check_adapter("--language-adapter", args.language_adapter, "language") if args.language_adapter else None
    task = check_adapter("--task-adapter", args.task_adapter, "task") if args.task_adapter else None
    method = resolve_method(args, language, task)
    check_adapters_fit(method, language, task, args.language_adapter, args.task_adapter, evaluating=True)
    prepare_output(args.out, "metrics.json", "evaluation", args.overwrite)
    return method, task


def check_head(args, task_config, head_missing: list[str]) -> None:
    """Refuse to score a head that nothing trained: neither in --model's checkpoint nor in the task adapter."""
    if not head_missing:
        return
    heads = ", ".join(sorted({key.split(".")[0] for key in head_missing}))
    if task_config is None:
        raise UsageError(f"--model {args.model} has no trained {args.task} head ({heads} is not in its checkpoint, so it "
                         "would be random); pass --task-adapter (train-task's OUT/task_adapter, saved with its head), or "
                         "--model a fully fine-tuned model (train-task --method full-ft writes OUT/model)")
    if not task_config.head:
        raise UsageError(f"--task-adapter {args.task_adapter} was saved without its head and --model {args.model} has no "
                         f"trained {args.task} head ({heads}); save the task adapter with its head")


def run(args) -> int:
    method, task_config = check_arguments(args)

    import inspect

    import madx
    from madx.commands.common import runtime_for, write_metrics
    from madx.commands.model_loading import load_task_model
    from madx.phases import prepare_task_data
    from madx.variants import get_variant

    variant = get_variant(method)
    runtime = runtime_for(args.mixed_precision)
    model, tokenizer, head_missing = load_task_model(args.model, args.task)
    check_head(args, task_config, head_missing)
    names = []
    if args.language_adapter:
        names.append(madx.load_adapter(model, args.language_adapter))
    if args.task_adapter:
        names.append(madx.load_adapter(model, args.task_adapter))
    model = model.to(runtime.device)
    spec = get_task(args.task)
    examples = spec.load(args.test, "test")
    features = prepare_task_data(args.task, examples, tokenizer, train=False, max_length=args.max_length)
    per_example = "per_example" in inspect.signature(spec.evaluate).parameters
    with madx.active(model, madx.Stack(*names) if variant.uses_adapters else None):
        if per_example:
            metrics = spec.evaluate(model, examples, features, tokenizer, runtime, args.batch_size, per_example=True)
        else:
            metrics = spec.evaluate(model, examples, features, tokenizer, runtime, args.batch_size)
    rows = metrics.pop("per_example", None)
    if runtime.is_main_process:
        if rows is not None:
            write_predictions(args.out / PREDICTIONS_FILE, args.task, rows)
        write_metrics(args.out, "evaluate", args, runtime, {"method": method, "metrics": metrics})
    return 0


def write_predictions(path: Path, task: str, per_example: dict) -> Path:
    """An evaluate function's ``per_example`` record in the file format of the suite's eval jobs
    (``bench.report.predictions``, format 1: a JSON ``meta`` entry and one array per column), so the
    report's paired bootstrap and a user's own analysis read one format."""
    import io

    import numpy as np

    from madx.atomic import atomic_write

    meta = {"format": 1, "task": task, "unit": per_example["unit"], "examples_sha256": per_example["examples_sha256"],
            "statistics": per_example["statistics"]}
    columns = {name: np.asarray(values) for name, values in per_example["columns"].items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps(meta, sort_keys=True)), **columns)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
