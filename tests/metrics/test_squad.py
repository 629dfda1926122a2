"""madx.metrics.squad: the official SQuAD v1.1 normalisation and scores, hand-computed."""

from __future__ import annotations

import logging
import os

import pytest

from madx.metrics import normalize_answer, squad_scores
from madx.metrics.squad import exact_match_score, f1_score


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Quick, brown fox!", "quick brown fox"),  # article, punctuation, double space
        ("An apple a day.", "apple day"),
        ("theater banana", "theater banana"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("  Hello\tworld\n", "hello world"),
        ("don't", "dont"),
        # punctuation goes first: "a - b" -> "a  b"; then the article "a" -> "b"
        ("A - B", "b"),
        ("l'Église", "léglise"),  # non-ASCII letters are kept and lower-cased
        ("«Paris»", "«paris»"),  # only ASCII punctuation is removed (official behaviour)
        ("The", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_token_f1_hand_computed():
    # pred -> [cat, sat, on, mat] (4), gold -> [cat, on, mat] (3), common 3
    # P = 3/4, R = 3/3, F1 = 2 * 0.75 * 1 / 1.75 = 6/7
    assert f1_score("the cat sat on mat", "a cat on the mat") == pytest.approx(6 / 7)
    # bag of tokens: common = min(2,1) x + min(1,2) y = 2; P = R = 2/3 -> F1 = 2/3
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1_score("", "Paris") == 0.0


def test_exact_match_ignores_case_punctuation_articles():
    assert exact_match_score("Denver Broncos.", "the denver broncos")
    assert not exact_match_score("Denver", "Denver Broncos")


def test_best_over_multiple_gold_answers():
    # vs "cat": P 1/2, R 1/1 -> F1 2/3.  vs "dog sat down": common 1 (sat), P 1/2, R 1/3 -> 2*(1/6)/(5/6) = 2/5.
    # max = 2/3 -> 66.67 %; no exact match.
    r = squad_scores(predictions={"q": "cat sat"}, references={"q": ["cat", "dog sat down"]})
    assert r["f1"] == pytest.approx(100 * 2 / 3)
    assert r["exact_match"] == 0.0
    # The second gold answer matches exactly after normalisation.
    r = squad_scores(predictions={"q": "Broncos"}, references={"q": ["Denver Broncos", "the broncos."]})
    assert (r["exact_match"], r["f1"]) == (100.0, 100.0)


def test_average_over_all_questions_with_a_missing_prediction(caplog):
    predictions = {"q1": "Denver Broncos", "q2": "the cat sat on mat"}
    references = {"q1": ["Denver Broncos", "Broncos"], "q2": ["a cat on the mat"], "q3": ["Paris"]}
    with caplog.at_level(logging.WARNING, logger="madx.metrics.squad"):
        r = squad_scores(predictions=predictions, references=references)
    # q1: EM 1, F1 1.  q2: EM 0, F1 6/7.  q3: no prediction -> 0, 0.
    # EM = 100 * 1/3 = 33.33;  F1 = 100 * (1 + 6/7) / 3 = 100 * 13/21 = 61.90
    assert r["exact_match"] == pytest.approx(100 / 3)
    assert r["f1"] == pytest.approx(100 * 13 / 21)
    assert (r["n_questions"], r["n_missing"], r["missing_ids"]) == (3, 1, ["q3"])
    assert "1 of 3 questions have no prediction" in caplog.text


def test_empty_prediction_and_the_official_empty_answer_quirk():
    assert squad_scores(predictions={"q": ""}, references={"q": ["Paris"]})["f1"] == 0.0
    # Both sides normalise to "": official v1.1 gives EM 1 (equal strings) but F1 0 (no common token).
    r = squad_scores(predictions={"q": ""}, references={"q": ["The"]})
    assert (r["exact_match"], r["f1"]) == (100.0, 0.0)


def test_unsegmented_scripts_are_one_token():
    # English-specific by design: "北京大学" vs "北京" share no whitespace token -> 0, as XQuAD reports count it.
    r = squad_scores(predictions={"q": "北京大学"}, references={"q": ["北京"]})
    assert (r["exact_match"], r["f1"]) == (0.0, 0.0)


def test_prediction_for_unknown_id_is_named():
    with pytest.raises(ValueError, match=r"1 prediction\(s\) for ids without gold answers: 'q9'"):
        squad_scores(predictions={"q1": "a", "q9": "b"}, references={"q1": ["a"]})


@pytest.mark.parametrize(
    "references, message",
    [
        ({}, "no gold questions"),
        ({"q": []}, "'q' has no gold answer"),
        ({"q": "Paris"}, "must be a list of strings"),
        ({"q": [None]}, "must be strings"),
    ],
)
def test_bad_references_raise(references, message):
    with pytest.raises(ValueError, match=message):
        squad_scores(predictions={}, references=references)


def test_missing_ids_listing_is_capped_but_counted():
    references = {f"q{i}": ["x"] for i in range(30)}
    r = squad_scores(predictions={}, references=references, max_listed=5)
    assert (r["n_missing"], r["missing_ids"], r["f1"]) == (30, ["q0", "q1", "q2", "q3", "q4"], 0.0)
