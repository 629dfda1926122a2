"""Entity-level NER scores with conlleval semantics (seqeval's default mode), on word-level tag strings.

Entities are read with `seqeval.metrics.sequence_labeling.get_entities`, the function seqeval's default
(non-strict) mode uses: like conlleval.pl, an `I-X` that follows `O` or a different type *starts* an
entity, and `B-X I-Y` is two entities. An entity counts as correct when type, start and end all match.
Micro precision/recall/F1 pool the counts over all types, as seqeval's `average="micro"` and conlleval do.
Scores are fractions in [0, 1] (seqeval's convention; multiply by 100 for the paper's tables).

Edge cases, decided here rather than left to warnings:
* No gold and no predicted entity anywhere: precision = recall = F1 = 1.0 (nothing to find and nothing
  falsely found is a perfect prediction). seqeval and conlleval.pl return 0 here (seqeval with an
  UndefinedMetricWarning); the entity counts in the result let a caller tell this case apart.
* Otherwise a 0/0 is 0, as in conlleval: no predicted entities -> precision 0; no gold entities -> recall 0.
  The same holds per type (a type appears in `per_type` if it occurs in gold or predictions).
* A sentence whose prediction is shorter or longer than its gold (an empty prediction list included)
  raises ValueError naming the sentence index and both lengths; so does a different number of sentences,
  no sentence at all, no token at all, or a tag that is not "O" or "<B|I|E|S>-TYPE".
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

_PREFIXES = ("B-", "I-", "E-", "S-")


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _check_tags(tags: Sequence[str], which: str, sentence: int, valid: set[str]) -> None:
    if isinstance(tags, str):
        raise ValueError(f"{which} sentence {sentence} is a string, not a list of tags (a flat list of tags "
                         f"instead of one list per sentence?)")
    for position, tag in enumerate(tags):
        if isinstance(tag, str) and tag in valid:
            continue
        # seqeval only warns ("seems not to be NE tag") and then mis-reads the tag; label ids or
        # "LABEL_3" strings here mean the caller forgot to map ids to tag names.
        if not isinstance(tag, str) or not (tag == "O" or (tag.startswith(_PREFIXES) and len(tag) > 2)):
            raise ValueError(
                f"{which} sentence {sentence}, token {position}: {tag!r} is not an IOB/IOBES tag "
                f"('O' or 'B-TYPE', 'I-TYPE', 'E-TYPE', 'S-TYPE')"
            )
        valid.add(tag)


def ner_scores(*, predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict:
    """Entity-level micro precision/recall/F1, token accuracy and per-type scores.

    Args:
        predictions: one list of word-level tags per sentence, e.g. [["B-PER", "I-PER", "O"], ...].
        references: the gold tags, same shape as `predictions`.

    Returns:
        {"precision", "recall", "f1", "accuracy": float in [0, 1],
         "n_sentences", "n_tokens", "n_gold_entities", "n_pred_entities", "n_correct_entities": int,
         "per_type": {type: {"precision", "recall", "f1": float, "support": int (gold entities)}}}
        `per_type` is sorted by type name.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predicted sentences but {len(references)} gold sentences"
        )
    if len(references) == 0:
        raise ValueError("no sentences to score")
    # Imported here: seqeval pulls in scikit-learn (seconds), which `import madx.metrics` should not cost.
    from seqeval.metrics.sequence_labeling import get_entities

    valid: set[str] = set()
    gold_entities: set[tuple[int, str, int, int]] = set()  # (sentence, type, start, end)
    pred_entities: set[tuple[int, str, int, int]] = set()
    n_tokens = n_token_correct = 0
    for i, (pred, gold) in enumerate(zip(predictions, references)):
        _check_tags(gold, "gold", i, valid)
        _check_tags(pred, "predicted", i, valid)
        if len(pred) != len(gold):
            raise ValueError(f"sentence {i}: prediction has {len(pred)} tags but gold has {len(gold)}")
        # Per sentence, so entities never cross sentence boundaries (seqeval joins sentences with "O",
        # which is the same thing, but only recognises nested *lists*, not tuples).
        gold_entities.update((i, t, s, e) for t, s, e in get_entities(list(gold)))
        pred_entities.update((i, t, s, e) for t, s, e in get_entities(list(pred)))
        n_tokens += len(gold)
        n_token_correct += sum(p == g for p, g in zip(pred, gold))
    if n_tokens == 0:
        raise ValueError(f"no tokens to score ({len(references)} sentences, all empty)")

    correct = gold_entities & pred_entities
    n_gold, n_pred, n_correct = len(gold_entities), len(pred_entities), len(correct)
    if n_gold == 0 and n_pred == 0:
        precision = recall = f1 = 1.0  # documented convention: nothing to find, nothing falsely found
    else:
        precision, recall = _ratio(n_correct, n_pred), _ratio(n_correct, n_gold)
        f1 = _f1(precision, recall)

    gold_by_type = Counter(t for _, t, _, _ in gold_entities)
    pred_by_type = Counter(t for _, t, _, _ in pred_entities)
    correct_by_type = Counter(t for _, t, _, _ in correct)
    per_type = {}
    for entity_type in sorted(gold_by_type.keys() | pred_by_type.keys()):
        p = _ratio(correct_by_type[entity_type], pred_by_type[entity_type])
        r = _ratio(correct_by_type[entity_type], gold_by_type[entity_type])
        per_type[entity_type] = {"precision": p, "recall": r, "f1": _f1(p, r), "support": gold_by_type[entity_type]}

    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": n_token_correct / n_tokens,
        "n_sentences": len(references),
        "n_tokens": n_tokens,
        "n_gold_entities": n_gold,
        "n_pred_entities": n_pred,
        "n_correct_entities": n_correct,
        "per_type": per_type,
    }


__all__ = ["ner_scores"]
