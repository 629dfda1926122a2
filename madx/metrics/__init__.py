"""Task metrics: entity-level NER F1 (seqeval / conlleval semantics) and SQuAD v1.1 EM / F1.

These functions are the one metric path: the evaluation loops call them directly. They are not
wrapped as ``evaluate`` modules: ``import evaluate`` alone took 4.6 s per process here (every
suite worker would pay it), the modules only forwarded to these functions, and the numbers are
pinned by tests against seqeval and against the official SQuAD v1.1 script's normalisation.
"""

from __future__ import annotations

from madx.metrics.ner import ner_scores
from madx.metrics.squad import normalize_answer, squad_scores

__all__ = ["ner_scores", "normalize_answer", "squad_scores"]
