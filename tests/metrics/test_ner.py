"""madx.metrics.ner: hand-computed entity-level scores, edge cases, seqeval parity, the evaluate module."""

from __future__ import annotations

import os
import random
import warnings

import pytest
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

from madx.metrics import ner_scores

# Entities are (type, first, last) per sentence, read with conlleval rules.
GOLD = [
    ["B-PER", "I-PER", "O", "B-LOC"],  # PER(0,1) LOC(3,3)
    ["O", "B-ORG", "I-ORG", "I-ORG"],  # ORG(1,3)
    ["B-LOC", "O", "O"],  # LOC(0,0)
]
PRED = [
    ["B-PER", "O", "O", "B-LOC"],  # PER(0,0): partial overlap, wrong   LOC(3,3): right
    ["O", "I-ORG", "I-ORG", "I-ORG"],  # I- after O starts an entity: ORG(1,3), right
    ["B-LOC", "O", "B-PER"],  # LOC(0,0): right   PER(2,2): spurious
]


def test_partial_overlap_and_i_tag_start():
    r = ner_scores(predictions=PRED, references=GOLD)
    # gold 4 entities, predicted 5, correct 3 (LOC s0, ORG s1, LOC s2)
    assert (r["n_gold_entities"], r["n_pred_entities"], r["n_correct_entities"]) == (4, 5, 3)
    assert r["precision"] == pytest.approx(3 / 5)
    assert r["recall"] == pytest.approx(3 / 4)
    # F1 = 2 * 0.6 * 0.75 / (0.6 + 0.75) = 0.9 / 1.35 = 2/3
    assert r["f1"] == pytest.approx(2 / 3)
    # tokens right: s0 3/4 (I-PER vs O), s1 3/4 (B-ORG vs I-ORG), s2 2/3 (O vs B-PER) -> 8/11
    assert r["accuracy"] == pytest.approx(8 / 11)
    assert (r["n_sentences"], r["n_tokens"]) == (3, 11)
    assert list(r["per_type"]) == ["LOC", "ORG", "PER"]
    # LOC: 2 correct of 2 predicted, 2 gold.  ORG: 1/1, 1 gold.  PER: 0 of 2 predicted, 1 gold.
    assert r["per_type"]["LOC"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert r["per_type"]["ORG"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert r["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_type_change_inside_a_span_splits_it():
    # gold PER(0,1); predicted B-PER I-LOC = PER(0,0) + LOC(1,1): nothing matches.
    r = ner_scores(predictions=[["B-PER", "I-LOC"]], references=[["B-PER", "I-PER"]])
    assert (r["n_gold_entities"], r["n_pred_entities"], r["n_correct_entities"]) == (1, 2, 0)
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["accuracy"] == pytest.approx(1 / 2)
    assert r["per_type"]["LOC"]["support"] == 0 and r["per_type"]["PER"]["support"] == 1


def test_iobes_and_iob_spans_are_the_same_entity():
    # B-LOC E-LOC and B-LOC I-LOC both read LOC(2,3); S-PER is PER(0,0). Entities all right, one token differs.
    r = ner_scores(predictions=[["S-PER", "O", "B-LOC", "I-LOC"]], references=[["S-PER", "O", "B-LOC", "E-LOC"]])
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)
    assert r["accuracy"] == pytest.approx(3 / 4)


def test_no_entities_anywhere_is_a_perfect_score_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = ner_scores(predictions=[["O", "O"], ["O"]], references=[["O", "O"], ["O"]])
    # Convention (documented in madx.metrics.ner): nothing to find and nothing found -> 1.0, not seqeval's 0.
    assert (r["precision"], r["recall"], r["f1"], r["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert (r["n_gold_entities"], r["n_pred_entities"]) == (0, 0)
    assert r["per_type"] == {}


def test_gold_entities_but_no_predictions():
    # precision 0/0 -> 0 (conlleval), recall 0/1 = 0, F1 0; tokens 1 of 2 right.
    r = ner_scores(predictions=[["O", "O"]], references=[["B-PER", "O"]])
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["accuracy"] == pytest.approx(1 / 2)
    assert r["per_type"] == {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}}


def test_predictions_but_no_gold_entities():
    # precision 0/1 = 0, recall 0/0 -> 0: spurious entities are errors even with nothing to find.
    r = ner_scores(predictions=[["B-MISC", "O"]], references=[["O", "O"]])
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["per_type"]["MISC"]["support"] == 0


def test_empty_sentence_among_others_and_tuples():
    r = ner_scores(predictions=[(), ("B-PER",)], references=[[], ["B-PER"]])
    assert (r["f1"], r["n_sentences"], r["n_tokens"]) == (1.0, 2, 1)


def test_length_mismatch_names_sentence_and_lengths():
    with pytest.raises(ValueError, match=r"sentence 1: prediction has 2 tags but gold has 3"):
        ner_scores(predictions=[["O"], ["O", "O"]], references=[["O"], ["O", "O", "B-PER"]])


def test_empty_prediction_list_for_a_gold_sentence():
    with pytest.raises(ValueError, match=r"sentence 0: prediction has 0 tags but gold has 2"):
        ner_scores(predictions=[[]], references=[["B-PER", "O"]])


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        ([["O"]], [["O"], ["O"]], "1 predicted sentences but 2 gold"),
        ([], [], "no sentences"),
        ([[], []], [[], []], "no tokens"),
        ([["O", 3]], [["O", "O"]], r"predicted sentence 0, token 1: 3 is not"),
        ([["O"]], [["LABEL_1"]], r"gold sentence 0, token 0: 'LABEL_1' is not"),
        ([["PER"]], [["O"]], "'PER' is not"),
        ([["B-"]], [["O"]], "'B-' is not"),
        ([[["O"]]], [["O"]], r"\['O'\] is not"),
        (["B-PER", "O"], ["B-PER", "O"], "gold sentence 0 is a string"),
    ],
)
def test_invalid_inputs_raise(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        ner_scores(predictions=predictions, references=references)


def _random_tags(rng: random.Random, n_sentences: int) -> list[list[str]]:
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    return [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(n_sentences)]


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_seqeval_default_mode(seed):
    # The oracle: seqeval's own default-mode functions (the hand-computed cases above pin the semantics).
    rng = random.Random(seed)
    gold = _random_tags(rng, 200)
    pred = [[t if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-LOC", "I-ORG"]) for t in s] for s in gold]
    r = ner_scores(predictions=pred, references=gold)
    assert r["precision"] == pytest.approx(precision_score(gold, pred))
    assert r["recall"] == pytest.approx(recall_score(gold, pred))
    assert r["f1"] == pytest.approx(f1_score(gold, pred))
    assert r["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True)
    for entity_type, scores in r["per_type"].items():
        for key, seqeval_key in [("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"), ("support", "support")]:
            assert scores[key] == pytest.approx(report[entity_type][seqeval_key]), (entity_type, key)


def test_hand_computed_case_matches_seqeval_too():
    assert ner_scores(predictions=PRED, references=GOLD)["f1"] == pytest.approx(f1_score(GOLD, PRED))
