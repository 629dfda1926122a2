"""Paired bootstrap over test examples: is a difference between two methods more than test-set luck?

    interval = paired_bootstrap([TestSet("ner/qu", a=((madx_seed1, madx_seed2),), b=((xlmr_seed1, xlmr_seed2),))],
                                micro_f1, seed=0)
    interval.low, interval.high, interval.excludes_zero      # 95 % interval of A − B, in points

Both methods' numbers are recomputed on every resample of the test examples (sentences for NER,
questions for QA) drawn with replacement, with the *same* resamples for both methods and for every
seed: each resampled difference pairs every example's result under A with its result under B
(Koehn, 2004; Berg-Kirkpatrick et al., 2012). The interval is the percentile interval of the
resampled differences; it says how much the difference would move on another test set of the same
size, not how much it moves between training seeds (the report shows that spread separately).

A statistic maps per-example columns *summed over a resample* to the metric: micro-F1 is recomputed
from the resampled sentences' entity counts (tp, fp, fn) — never an average of per-sentence F1s —
and QA's F1 / EM are means of per-question scores. Both are in percent, as the metrics are.

The shape of one comparison mirrors the report's averages (``bench.report.aggregate``): test sets
(one per target language; an average over targets resamples each separately), on each test set
each method has parts (e.g. source languages, averaged), each part has seeds (averaged). A test
set's resamples depend only on ``seed`` and the test set's ``key``, so every comparison that uses a
test set uses the same resamples, and the same inputs always give the same interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

N_RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0
_CHUNK = 100  # resamples drawn and summed at a time: bounds memory at _CHUNK × n weights

Statistic = Callable[[np.ndarray, int], np.ndarray]  # (sums (..., k), n examples) -> (...)


def micro_f1(sums: np.ndarray, n: int) -> np.ndarray:
    """Micro-F1 in percent from summed (tp, fp, fn) entity counts, ``(..., 3) -> (...)``.

    Nothing to find and nothing found scores 100, as ``madx.metrics.ner_scores`` decides."""
    sums = np.asarray(sums, dtype=np.float64)
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 200 * tp / np.where(denominator > 0, denominator, 1), 100.0)


def mean(sums: np.ndarray, n: int) -> np.ndarray:
    """The mean of one per-example column (QA's F1 and EM, already in percent), ``(..., 1) -> (...)``."""
    return np.asarray(sums, dtype=np.float64)[..., 0] / n


# the names a predictions file uses for its statistics (bench.report.predictions)
STATISTICS: dict[str, Statistic] = {"micro_f1": micro_f1, "mean": mean}


def resample_weights(n: int, key: str, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """The resamples of a test set of ``n`` examples, as multiplicities: chunks of shape (r, n), r ≤ 100.

    Row i counts how often each example was drawn in resample i (n draws with replacement). The
    stream depends only on (seed, key, n, n_resamples)."""
    if n <= 0:
        raise ValueError(f"test set {key!r} has no examples")
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng(np.random.SeedSequence([seed, digest]))
    done = 0
    while done < n_resamples:
        r = min(_CHUNK, n_resamples - done)
        draws = rng.integers(0, n, size=(r, n))  # (r, n) example indices
        rows = np.repeat(np.arange(r) * n, n)
        yield np.bincount(rows + draws.ravel(), minlength=r * n).reshape(r, n).astype(np.float64)
        done += r


def replicates(runs: Sequence[np.ndarray], statistic: Statistic, key: str, *, n_resamples: int = N_RESAMPLES,
               seed: int = SEED) -> np.ndarray:
    """``statistic`` on every resample of one test set, for several runs on it at once: (len(runs), n_resamples).

    runs: per-example columns of each run, (n, k) with the same n (the same test set)."""
    runs = [np.asarray(r, dtype=np.float64).reshape(len(r), -1) for r in runs]
    n = runs[0].shape[0]
    if any(r.shape[0] != n for r in runs):
        raise ValueError(f"runs on test set {key!r} have different numbers of examples: {[r.shape[0] for r in runs]}")
    widths = [r.shape[1] for r in runs]
    stacked = np.concatenate(runs, axis=1)  # (n, sum k)
    out = np.empty((len(runs), n_resamples))
    done = 0
    for weights in resample_weights(n, key, n_resamples=n_resamples, seed=seed):
        sums = weights @ stacked  # (r, sum k): each run's columns summed over the resample
        for i, part in enumerate(np.split(sums, np.cumsum(widths)[:-1], axis=1)):
            out[i, done:done + len(weights)] = statistic(part, n)
        done += len(weights)
    return out


def observed(run: np.ndarray, statistic: Statistic) -> float:
    """``statistic`` on the whole test set (what the metric is)."""
    run = np.asarray(run, dtype=np.float64).reshape(len(run), -1)
    return float(statistic(run.sum(axis=0), run.shape[0]))


@dataclass(frozen=True)
class Interval:
    """A difference A − B with its paired-bootstrap interval."""

    observed: float  # A − B on the test sets as they are
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int
    n_examples: tuple[int, ...]  # per test set
    excludes_zero: bool = field(init=False)  # the interval lies wholly above or below 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "excludes_zero", bool(self.low > 0 or self.high < 0))


def interval(differences: np.ndarray, observed_difference: float, *, confidence: float = CONFIDENCE,
             n_examples: tuple[int, ...] = (), seed: int = SEED) -> Interval:
    """The percentile interval of resampled differences."""
    differences = np.asarray(differences, dtype=np.float64)
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return Interval(float(observed_difference), float(low), float(high), confidence, len(differences), seed,
                    tuple(n_examples))


def nested_mean(values: Sequence[Sequence[np.ndarray | float]]) -> np.ndarray | float:
    """Mean over parts of the mean over each part's seeds (the report's average of cell means)."""
    return sum(sum(seeds) / len(seeds) for seeds in values) / len(values)


@dataclass(frozen=True, eq=False)
class TestSet:
    """Two methods' runs on one test set: per method, parts (e.g. source languages) × seeds, each (n, k)."""

    key: str  # names the test set: with the seed it fixes the resamples
    a: tuple[tuple[np.ndarray, ...], ...]
    b: tuple[tuple[np.ndarray, ...], ...]

    __test__ = False  # not a pytest class


def paired_bootstrap(test_sets: Sequence[TestSet], statistic: Statistic, *, n_resamples: int = N_RESAMPLES,
                     seed: int = SEED, confidence: float = CONFIDENCE) -> Interval:
    """The difference A − B, averaged over the test sets, with its paired-bootstrap interval.

    On each test set a method's number is the mean over its parts of the mean over their seeds;
    every run of both methods is scored on the same resamples of that test set."""
    if not test_sets:
        raise ValueError("no test set to compare on")
    total = np.zeros(n_resamples)
    point = 0.0
    sizes = []
    for test_set in test_sets:
        if not test_set.a or not test_set.b or not all(test_set.a) or not all(test_set.b):
            raise ValueError(f"test set {test_set.key!r}: both methods need at least one run")
        runs = [run for part in (*test_set.a, *test_set.b) for run in part]
        reps = iter(replicates(runs, statistic, test_set.key, n_resamples=n_resamples, seed=seed))
        points = iter([observed(run, statistic) for run in runs])
        shape = [len(part) for part in (*test_set.a, *test_set.b)]
        rep_parts = [[next(reps) for _ in range(k)] for k in shape]
        point_parts = [[next(points) for _ in range(k)] for k in shape]
        n_a = len(test_set.a)
        total += nested_mean(rep_parts[:n_a]) - nested_mean(rep_parts[n_a:])
        point += nested_mean(point_parts[:n_a]) - nested_mean(point_parts[n_a:])
        sizes.append(len(runs[0]))
    return interval(total / len(test_sets), point / len(test_sets), confidence=confidence, n_examples=tuple(sizes),
                    seed=seed)


__all__ = ["CONFIDENCE", "Interval", "N_RESAMPLES", "SEED", "STATISTICS", "TestSet", "interval", "mean", "micro_f1",
           "nested_mean", "observed", "paired_bootstrap", "replicates", "resample_weights"]
