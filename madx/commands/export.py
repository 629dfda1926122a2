"""Export a trained madx adapter for another library. One format so far: AdapterHub (``adapters``
1.x), which loads the result with ``adapters.init(model); model.load_adapter(OUT, use_safetensors=True)``.

    madx export --format adapterhub --model xlm-roberta-base --adapter adapters/qu/adapter --out hub/qu
    madx export --format adapterhub --model xlm-roberta-base --adapter runs/ner-en/task_adapter --task ner --out hub/ner

A language adapter goes with its invertible adapter; a task adapter saved with its head goes with
the head, which needs --task (the head's model class and label names) unless --no-head. AdapterHub
stacks adapters its own way, not as MAD-X eq. 2 does (see madx.inject.layer): a language + task
stack there computes what Stack(..., mode="adapterhub") computes here.
"""

from __future__ import annotations

from pathlib import Path

from madx.commands.common import UsageError, add_output_arguments, check_adapter, check_model, prepare_output
from madx.tasks.registry import task_names

HELP = "export a madx adapter in another library's format (AdapterHub)"
FORMATS = ("adapterhub",)


def add_arguments(parser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, help="the layout to write")
    parser.add_argument("--model", required=True, help="hub name or path of the base model the adapter was trained on")
    parser.add_argument("--adapter", required=True, type=Path, help="a madx adapter directory (madx save_adapter / train-lang / train-task)")
    add_output_arguments(parser, "AdapterHub's adapter_config.json, pytorch_adapter.safetensors, head files")
    parser.add_argument("--task", choices=task_names(), help="the task of a task adapter saved with its head (its model class and labels)")
    parser.add_argument("--no-head", action="store_true", help="export a task adapter without its prediction head")


def run(args) -> int:
    check_model("--model", args.model)
    config = check_adapter("--adapter", args.adapter)
    if _holds_madx_adapter(args.out):  # not an earlier export: --overwrite does not replace it
        raise UsageError(f"--out {args.out} holds a madx adapter, which the export would overwrite; export into another folder")
    prepare_output(args.out, "adapter_config.json", "AdapterHub export", args.overwrite)

    import madx

    with_head = config.kind == "task" and bool(config.head) and not args.no_head
    if with_head and args.task is None:
        raise UsageError(f"--adapter {args.adapter}: task adapter {config.name!r} was saved with head(s) {config.head}; pass --task "
                         f"({', '.join(task_names())}) to export the head with its model class and labels, or --no-head")
    model = _load_model(args.model, args.task)
    name = madx.load_adapter(model, args.adapter, load_head=with_head)
    out = madx.export_adapterhub(model, name, args.out, with_head=with_head if config.kind == "task" else None)
    parts = [f"{config.kind} adapter {name!r}"] + (["invertible adapter"] if config.invertible_bottleneck_size else []) + (
        [f"head {config.head}"] if with_head else [])
    print(f"wrote {out}: {', '.join(parts)}")
    print(f"load it with: adapters.init(model); model.load_adapter({str(out)!r}, use_safetensors=True)")
    return 0


def _holds_madx_adapter(out: Path) -> bool:
    import json

    try:
        saved = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and "kind" in saved and "format_version" in saved


def _load_model(name_or_path: str, task: str | None):
    """The task's model (its head and labels) when a task is given, else the MLM model a language adapter trains on."""
    from madx.commands.model_loading import load_task_model, quiet_loading

    if task is not None:
        return load_task_model(name_or_path, task)[0]  # the head comes from the task adapter
    from transformers import AutoModelForMaskedLM

    with quiet_loading():  # only the encoder's shape matters for a language adapter's export
        return AutoModelForMaskedLM.from_pretrained(name_or_path)
