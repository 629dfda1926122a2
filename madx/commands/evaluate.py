"""Evaluate a trained task on a target language: zero-shot transfer swaps in the target's
language adapter (``--language-adapter``) under the task adapter (``--task-adapter``), or
evaluates a fully fine-tuned model (``--model`` pointing at it, no adapters).

    madx evaluate --model xlm-roberta-base --task ner --test test-qu.tsv \\
        --language-adapter adapters/qu/adapter --task-adapter runs/ner-en/task_adapter --out runs/ner-en-qu
"""

from __future__ import annotations

from pathlib import Path

from madx.tasks.registry import get_task, task_names

HELP = "evaluate NER F1 / QA F1+EM, with the target language's adapter swapped in"


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--test", required=True, help="WikiANN TSV / SQuAD-format JSON (e.g. XQuAD), or hub:NAME[:CONFIG]")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--language-adapter", type=Path, help="the TARGET language adapter")
    parser.add_argument("--task-adapter", type=Path, help="the task adapter (saved with its head)")
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")


def run(args) -> int:
    import madx
    from madx.commands.common import write_metrics
    from madx.commands.model_loading import load_task_model
    from madx.phases import evaluate_task, prepare_task_data
    from madx.runtime import Runtime

    runtime = Runtime.distributed(args.mixed_precision)
    model, tokenizer = load_task_model(args.model, args.task)
    names = []
    if args.language_adapter:
        names.append(madx.load_adapter(model, args.language_adapter))
    if args.task_adapter:
        names.append(madx.load_adapter(model, args.task_adapter))
    model = model.to(runtime.device)
    examples = get_task(args.task).load(args.test, "test")
    features = prepare_task_data(args.task, examples, tokenizer, train=False, max_length=args.max_length)
    with madx.active(model, madx.Stack(*names) if names else None):
        metrics = evaluate_task(args.task, model, examples, features, tokenizer, runtime, args.batch_size)
    if runtime.is_main_process:
        write_metrics(args.out, "evaluate", args, runtime, {"metrics": metrics})
    return 0
