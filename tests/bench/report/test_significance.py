"""bench.report.significance: the paired bootstrap on synthetic data with known answers, and the
per-example predictions file it reads (bench.report.predictions)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.report.predictions import PredictionsError, read_predictions, write_predictions
from bench.report.significance import (TestSet, interval, mean, micro_f1, observed, paired_bootstrap, replicates,
                                       resample_weights)


def counts(tp, fp, fn) -> np.ndarray:
    """(n, 3) per-sentence entity counts."""
    return np.stack([np.asarray(tp), np.asarray(fp), np.asarray(fn)], axis=1)


def one(a, b, key="test") -> list[TestSet]:
    """One test set, one part, one seed per method."""
    return [TestSet(key, a=((a,),), b=((b,),))]


def noisy_run(rng, gold, ease, level):
    """A run that finds each gold entity with a probability set by the sentence's ease and the method's level."""
    tp = rng.binomial(gold, np.clip(level + ease, 0.02, 0.98))
    return counts(tp, gold - tp, gold - tp)


# ---------------------------------------------------------------------------------------------
# statistics


def test_micro_f1_is_recomputed_from_summed_counts_not_averaged_per_sentence():
    run = counts([1, 0], [0, 3], [0, 3])  # sentence F1s 100 and 0: their mean would be 50
    assert observed(run, micro_f1) == pytest.approx(200 * 1 / (2 * 1 + 3 + 3))  # 25
    assert micro_f1(np.array([0, 0, 0]), 5) == 100.0  # nothing to find, nothing found (madx.metrics.ner_scores)
    assert micro_f1(np.array([0, 4, 0]), 5) == 0.0
    assert observed(np.array([[100.0], [0.0], [50.0], [50.0]]), mean) == 50.0


def test_each_resample_draws_n_examples_and_scores_their_summed_counts():
    rng = np.random.default_rng(0)
    run = counts(rng.integers(0, 3, 37), rng.integers(0, 2, 37), rng.integers(0, 2, 37))
    weights = np.concatenate(list(resample_weights(37, "k", n_resamples=250, seed=4)))
    assert weights.shape == (250, 37) and (weights.sum(axis=1) == 37).all() and (weights >= 0).all()
    assert np.array_equal(weights, np.round(weights))
    scored = replicates([run], micro_f1, "k", n_resamples=250, seed=4)[0]
    for i in (0, 99, 100, 249):  # across the chunks the resamples are drawn in
        drawn = np.repeat(np.arange(37), weights[i].astype(int))  # the resample as a list of sentences
        assert scored[i] == pytest.approx(float(micro_f1(run[drawn].sum(axis=0), 37)))


# ---------------------------------------------------------------------------------------------
# known answers


def test_a_clear_difference_is_significant():
    gold = np.tile([1, 2, 3, 0, 2], 40)  # 200 sentences
    perfect = counts(gold, np.zeros_like(gold), np.zeros_like(gold))
    half = counts(gold // 2, gold - gold // 2, gold - gold // 2)
    result = paired_bootstrap(one(perfect, half), micro_f1)
    assert result.observed == pytest.approx(observed(perfect, micro_f1) - observed(half, micro_f1))
    assert result.low > 0 and result.excludes_zero
    assert paired_bootstrap(one(half, perfect), micro_f1).high < 0  # and the other way round


def test_equal_totals_on_different_sentences_are_not_significant():
    """Both methods find 100 of 200 entities, on different sentences: the same F1, but resamples move it."""
    found = np.tile([1, 0], 100)
    a = counts(found, 1 - found, 1 - found)
    b = counts(1 - found, found, found)
    result = paired_bootstrap(one(a, b), micro_f1)
    assert result.observed == pytest.approx(0.0)
    assert result.low < 0 < result.high and not result.excludes_zero
    assert result.high - result.low > 5  # a real spread, not a degenerate interval


def test_identical_methods_give_an_interval_around_zero():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 5, 150)
    seeds = tuple(noisy_run(rng, gold, 0.0, 0.6) for _ in range(3))
    result = paired_bootstrap([TestSet("qu", a=(seeds, seeds), b=(seeds, seeds))], micro_f1)
    assert result.low <= 0 <= result.high and not result.excludes_zero
    assert (result.observed, result.low, result.high) == (0.0, 0.0, 0.0)  # the same runs: every resample agrees


def test_reproducible_with_the_seed():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 5, 120)
    ease = rng.uniform(-0.3, 0.3, 120)
    a, b = noisy_run(rng, gold, ease, 0.6), noisy_run(rng, gold, ease, 0.55)
    first = paired_bootstrap(one(a, b), micro_f1, seed=7)
    assert paired_bootstrap(one(a, b), micro_f1, seed=7) == first  # bit for bit
    other = paired_bootstrap(one(a, b), micro_f1, seed=8)
    assert other.observed == first.observed and (other.low, other.high) != (first.low, first.high)
    assert paired_bootstrap(one(a, b, key="another test set"), micro_f1, seed=7).low != first.low  # the key seeds too


def test_the_same_resamples_for_both_methods_is_what_makes_it_paired():
    """B misses one entity in every tenth sentence that A finds: a small, consistent difference. Paired, it
    is significant; scored on independent resamples (as if unpaired), sentence sampling drowns it."""
    rng = np.random.default_rng(3)
    gold = rng.integers(1, 5, 300)
    a = noisy_run(rng, gold, rng.uniform(-0.3, 0.3, 300), 0.6)
    b = a.copy()
    worse = np.flatnonzero(a[:, 0] > 0)[::10]
    b[worse] += [-1, 1, 1]
    paired = paired_bootstrap(one(a, b), micro_f1)
    assert paired.excludes_zero and paired.low > 0
    unpaired = replicates([a], micro_f1, "resamples of A")[0] - replicates([b], micro_f1, "other resamples for B")[0]
    low, high = np.quantile(unpaired, [0.025, 0.975])
    assert low < 0 < high


def test_seeds_and_parts_are_averaged_as_the_tables_average():
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 5, 80)
    a = ((noisy_run(rng, gold, 0, 0.7), noisy_run(rng, gold, 0, 0.7)), (noisy_run(rng, gold, 0, 0.5),))
    b = ((noisy_run(rng, gold, 0, 0.4),),)
    result = paired_bootstrap([TestSet("t", a=a, b=b)], micro_f1)
    source_1 = (observed(a[0][0], micro_f1) + observed(a[0][1], micro_f1)) / 2
    assert result.observed == pytest.approx((source_1 + observed(a[1][0], micro_f1)) / 2 - observed(b[0][0], micro_f1))
    # two test sets (targets): the mean of their differences, each resampled on its own
    other = rng.integers(0, 5, 50)
    second = TestSet("t2", a=((noisy_run(rng, other, 0, 0.5),),), b=((noisy_run(rng, other, 0, 0.5),),))
    both = paired_bootstrap([TestSet("t", a=a, b=b), second], micro_f1)
    assert both.n_examples == (80, 50)
    assert both.observed == pytest.approx((result.observed + paired_bootstrap([second], micro_f1).observed) / 2)


def test_qa_scores_are_means_of_per_question_scores():
    f1_a = np.tile([100.0, 80.0, 0.0, 50.0], 50)[:, None]
    f1_b = np.tile([100.0, 40.0, 0.0, 50.0], 50)[:, None]
    result = paired_bootstrap(one(f1_a, f1_b), mean)
    assert result.observed == pytest.approx(10.0) and result.excludes_zero


def test_false_alarms_are_rare_when_two_methods_are_equally_good():
    rng = np.random.default_rng(5)
    alarms = 0
    for trial in range(60):
        gold = rng.integers(0, 4, 200)
        ease = rng.uniform(-0.3, 0.3, 200)
        result = paired_bootstrap(one(noisy_run(rng, gold, ease, 0.6), noisy_run(rng, gold, ease, 0.6), key=str(trial)),
                                  micro_f1, n_resamples=400)
        alarms += result.excludes_zero
    assert alarms <= 8  # 95 % intervals: about 3 expected


def test_interval_and_inputs_are_checked():
    assert interval(np.array([-1.0, 1.0, 2.0, 3.0]), 1.5, confidence=0.9).excludes_zero is False  # low -0.7
    assert interval(np.arange(1.0, 101.0), 50.0).low > 0
    with pytest.raises(ValueError, match="different numbers of examples"):
        replicates([np.zeros((3, 3)), np.zeros((4, 3))], micro_f1, "k")
    with pytest.raises(ValueError, match="no test set"):
        paired_bootstrap([], micro_f1)


# ---------------------------------------------------------------------------------------------
# the predictions file


def test_predictions_file_round_trip_and_errors(tmp_path):
    record = {"unit": "sentence", "examples_sha256": "ab" * 32,
              "columns": {"tp": np.array([1, 0, 2], dtype=np.int32), "fp": np.array([0, 1, 0], dtype=np.int32),
                          "fn": np.array([0, 1, 1], dtype=np.int32)},
              "statistics": {"f1": {"name": "micro_f1", "columns": ["tp", "fp", "fn"]}}}
    path = write_predictions(tmp_path / "predictions.npz", "ner", record)
    loaded = read_predictions(path)
    assert (loaded.task, loaded.unit, loaded.examples_sha256, loaded.n) == ("ner", "sentence", "ab" * 32, 3)
    name, matrix = loaded.matrix("f1")
    assert name == "micro_f1" and matrix.tolist() == [[1, 0, 0], [0, 1, 1], [2, 0, 1]]
    assert loaded.has("f1") and not loaded.has("exact_match")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(PredictionsError, match="unreadable"):
        read_predictions(tmp_path / "broken.npz")
    bad = {**record, "statistics": {"f1": {"name": "micro_f1", "columns": ["tp", "fp", "missed"]}}}
    with pytest.raises(PredictionsError, match="missed"):
        read_predictions(write_predictions(tmp_path / "bad.npz", "ner", bad))
    with pytest.raises(PredictionsError, match="one length"):
        read_predictions(write_predictions(tmp_path / "ragged.npz", "ner", {**record, "columns": {
            **record["columns"], "tp": np.array([1, 0], dtype=np.int32)}}))
    with pytest.raises(ValueError, match="meta"):
        write_predictions(tmp_path / "x.npz", "ner", {**record, "columns": {"meta": np.zeros(3)}})
