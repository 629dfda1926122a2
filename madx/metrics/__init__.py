"""Task metrics: entity-level NER F1 (seqeval / conlleval semantics) and SQuAD v1.1 EM / F1.

Use the functions directly, or as offline `evaluate` modules:

    >>> import evaluate, madx.metrics
    >>> seqeval = evaluate.load(madx.metrics.evaluate_module_path("madx_seqeval"))
"""

from __future__ import annotations

import difflib
from pathlib import Path

from madx.metrics.ner import ner_scores
from madx.metrics.squad import normalize_answer, squad_scores

EVALUATE_MODULES = ("madx_seqeval", "madx_squad")
_MODULES_DIR = Path(__file__).resolve().parent / "evaluate_modules"


def evaluate_module_path(name: str) -> str:
    """Local path of one of `EVALUATE_MODULES`, to pass to `evaluate.load` (works without network)."""
    if name not in EVALUATE_MODULES:
        close = difflib.get_close_matches(name, EVALUATE_MODULES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown evaluate module {name!r}.{hint} Available: {', '.join(EVALUATE_MODULES)}")
    return str(_MODULES_DIR / name / f"{name}.py")


__all__ = ["EVALUATE_MODULES", "evaluate_module_path", "ner_scores", "normalize_answer", "squad_scores"]
