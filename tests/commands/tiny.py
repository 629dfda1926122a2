"""What the command tests start from, made in code: a tiny model folder (``madx models make-tiny``),
WikiANN files, and language / task adapters saved by the library (untrained)."""

from __future__ import annotations

import json
from pathlib import Path

from madx import cli
from madx.data import synthetic


def make_tiny(root: Path) -> Path:
    synthetic.write_text(root / "en.txt", "en", 60)
    assert cli.main(["models", "make-tiny", "--out", str(root / "model"), "--text", str(root / "en.txt"),
                     "--vocab-size", "600", "--hidden-size", "32"]) == 0
    for lang in ("en", "qu"):
        synthetic.write_wikiann(root / f"test-{lang}.tsv", lang, 9, seed=2)
        synthetic.write_wikiann(root / f"train-{lang}.tsv", lang, 12, seed=0)
    return root / "model"


def save_language_adapter(model_dir: Path, name: str, out: Path, invertible: bool = True, leave_out=()) -> Path:
    import madx
    from madx.adapters.config import AdapterConfig
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    madx.add_language_adapter(model, name, AdapterConfig(leave_out=tuple(leave_out)), invertible)
    return madx.save_adapter(model, name, out)


def save_task_adapter(model_dir: Path, out: Path, method: str | None = "madx", leave_out=()) -> Path:
    """A NER task adapter with its head in OUT/task_adapter, and (``method``) the train-task record beside it."""
    import madx
    from madx.adapters.config import AdapterConfig
    from madx.tasks.registry import get_task

    model = get_task("ner").load_model(str(model_dir))
    madx.add_task_adapter(model, "ner", AdapterConfig(leave_out=tuple(leave_out)))
    path = madx.save_adapter(model, "ner", out / "task_adapter")
    if method is not None:
        (out / "metrics.json").write_text(json.dumps({"command": "train-task", "config": {"method": method}}))
    return path


def tiny_with_adapters(root: Path) -> Path:
    """A tiny model in ``root`` with a Quechua language adapter (``lang-qu/adapter``) and a MAD-X NER task
    adapter (``ner-madx``), as train-lang and train-task write them."""
    model = make_tiny(root)
    save_language_adapter(model, "qu", root / "lang-qu" / "adapter")
    save_task_adapter(model, root / "ner-madx", method="madx")
    return root
