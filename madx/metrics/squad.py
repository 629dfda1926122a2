"""The official SQuAD v1.1 evaluation (exact match and token F1, best over the gold answers, in percent).

`normalize_answer`, `f1_score`, `exact_match_score` and `metric_max_over_ground_truths` are the official
`evaluate-v1.1.py` logic, unchanged: lower-case, drop ASCII punctuation (`string.punctuation`), drop the
English articles a/an/the, collapse whitespace; split on whitespace for token F1.

This normalisation is English-specific (articles, whitespace tokenisation: a Chinese or Thai answer without
spaces is a single "token", so F1 there is close to exact match). XQuAD results, the MAD-X paper's Table 3
included, are reported with this same script, so it is kept identical rather than "fixed" per language.

Two quirks of the official script are kept on purpose:
* A prediction and a gold answer that both normalise to "" (e.g. "The", ".") give EM 1 but F1 0.
* Scores are averaged over *all* gold questions: a question with no prediction scores 0 (the official
  script prints "Unanswered question ... will receive score 0."; here it is counted in `n_missing`).

What the official script would silently accept or crash on is an error here: a prediction for an id that
has no gold answers, no questions at all, and a question with an empty list of gold answers.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from typing import Callable, Mapping, Sequence

_PUNCTUATION = set(string.punctuation)
logger = logging.getLogger(__name__)


# --- official SQuAD v1.1 evaluation logic (evaluate-v1.1.py), same behaviour -----------------------------
def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        return "".join(ch for ch in text if ch not in _PUNCTUATION)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 (bag of normalised whitespace tokens) between one prediction and one gold answer."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(
    metric_fn: Callable[[str, str], float], prediction: str, ground_truths: Sequence[str]
) -> float:
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)
# --- end of the official logic -----------------------------------------------------------------------------


def squad_scores(
    *, predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], max_listed: int = 20
) -> dict:
    """SQuAD v1.1 exact match and F1 over all questions in `references`, in percent (0-100).

    Args:
        predictions: question id -> predicted answer text.
        references: question id -> gold answer texts (at least one; duplicates are fine, as in SQuAD).
        max_listed: how many missing ids to list in the result (all are counted).

    Returns:
        {"exact_match", "f1": float in [0, 100], "n_questions", "n_missing": int,
         "missing_ids": the first `max_listed` unanswered ids, in `references` order}

    Raises:
        ValueError: no questions; a prediction for an id not in `references` (named in the message);
            a question without gold answers; a non-string prediction or gold answer.
    """
    if not references:
        raise ValueError("no gold questions to score")
    unknown = [qid for qid in predictions if qid not in references]
    if unknown:
        shown = ", ".join(repr(q) for q in unknown[:max_listed])
        more = f" (and {len(unknown) - max_listed} more)" if len(unknown) > max_listed else ""
        raise ValueError(f"{len(unknown)} prediction(s) for ids without gold answers: {shown}{more}")

    exact_match = f1 = 0.0
    missing: list[str] = []
    for qid, ground_truths in references.items():
        if isinstance(ground_truths, str):  # a bare string would be scored character by character
            raise ValueError(f"question {qid!r}: gold answers must be a list of strings, got a string")
        if len(ground_truths) == 0:
            raise ValueError(f"question {qid!r} has no gold answer (SQuAD v1.1 has no unanswerable questions)")
        if not all(isinstance(g, str) for g in ground_truths):
            raise ValueError(f"question {qid!r}: gold answers must be strings, got {list(ground_truths)!r}")
        if qid not in predictions:
            missing.append(qid)
            continue
        prediction = predictions[qid]
        if not isinstance(prediction, str):
            raise ValueError(f"question {qid!r}: prediction must be a string, got {type(prediction).__name__}")
        exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
        f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)

    total = len(references)
    if missing:
        logger.warning("%d of %d questions have no prediction and score 0 (first: %r)", len(missing), total, missing[0])
    return {
        "exact_match": 100.0 * exact_match / total,
        "f1": 100.0 * f1 / total,
        "n_questions": total,
        "n_missing": len(missing),
        "missing_ids": missing[:max_listed],
    }


__all__ = ["normalize_answer", "f1_score", "exact_match_score", "metric_max_over_ground_truths", "squad_scores"]
