"""MAD-X against each baseline, as the report compares them, each difference with its paired bootstrap.

For every comparison table (2, 5, 3 F1, 3 EM) and every other method in it, per target language and
per average column (avg seen / unseen / all): the mean difference over seeds (MAD-X minus the
baseline; the sample std of the per-seed differences when both ran the same seeds) and a 95 %
paired-bootstrap interval over the test examples (``significance.py``). The heatmaps of differences
get the same per (source, target) pair.

Like for like: a comparison uses only the (source, target) evaluations that both methods have, so a
cell can differ from the difference of the two rows in the table when one method misses a pair.

The bootstrap reads each eval job's per-example results (``predictions.py``). A result without
them (evaluated before eval jobs stored them) gives no interval: the comparison says why, and the
rest of the report is unchanged. Every job's resampled scores are computed once per metric, on its
test set's resamples, and shared by all the comparisons it takes part in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.report import paper, significance
from bench.report.aggregate import EvalCells, Value, _as_float, _seed_sort_key, average, difference
from bench.report.load import ResultStore
from bench.report.predictions import PerExample, PredictionsError, predictions_path, read_predictions
from bench.results import JobResult

REFERENCE_METHOD = "madx"
UNITS = {"ner": "sentences", "qa": "questions"}
# the baselines of the paper's difference figures (3: XLM-R, 4: MLM-TRG, 5: MAD-X –INV)
NER_PAIR_BASELINES = tuple(method for method, _ in paper.DIFF_FIGURES)

GroupKey = tuple[str, str, str, str]  # (task, method, source, target)
NO_PREDICTIONS = "no per-example predictions: evaluated before eval jobs stored them"
PairKey = tuple[str, str, str, str, str]  # (task, metric, baseline, source, target)


@dataclass(frozen=True, eq=False)
class Scores:
    """One eval job's metric recomputed from its per-example results."""

    test_set: str  # examples_sha256
    n: int  # examples
    observed: float  # on the test set as it is (the job's metric)
    resampled: np.ndarray  # (n_resamples,) on each resample of the test set


@dataclass(frozen=True)
class Comparison:
    method: str  # MAD-X
    baseline: str
    column: str  # a target language, an average column ("avg"), or "source→target" for a heatmap cell
    pairs: tuple[str, ...]  # the (source→target) evaluations compared: the ones both methods have
    diff: Value  # mean over seeds of method − baseline (per-seed differences when both ran the same seeds)
    interval: significance.Interval | None  # the paired bootstrap of the same difference
    unavailable: str | None = None  # why there is no interval
    n_results: int = 0  # eval results behind the comparison (both methods, every seed)
    n_without: int = 0  # of those, results whose per-example predictions are missing or unusable
    significant: bool | None = field(init=False)  # the interval excludes 0 (None: no interval)

    def __post_init__(self) -> None:
        object.__setattr__(self, "significant", None if self.interval is None else self.interval.excludes_zero)


@dataclass(frozen=True)
class ComparisonRow:
    baseline: str
    name: str  # the paper's name for the baseline
    cells: Mapping[str, Comparison]  # column -> comparison (absent: no evaluation both methods have)

    def cell(self, column: str) -> Comparison | None:
        return self.cells.get(column)


@dataclass(frozen=True)
class SignificanceTable:
    id: str  # the comparison table's id ("table2", "table3-f1", ...)
    title: str
    metric: str
    unit: str  # what the bootstrap resamples: "sentences" / "questions"
    method: str
    columns: tuple[str, ...]
    summary_columns: tuple[str, ...]
    rows: tuple[ComparisonRow, ...]
    n_resamples: int = significance.N_RESAMPLES
    confidence: float = significance.CONFIDENCE
    seed: int = significance.SEED

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.columns + self.summary_columns

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for row in self.rows for c in row.cells.values()]


class Comparer:
    """The eval results of a store, their predictions (read once) and resampled scores (computed once)."""

    def __init__(self, store: ResultStore, n_resamples: int = significance.N_RESAMPLES, seed: int = significance.SEED,
                 confidence: float = significance.CONFIDENCE):
        self.store = store
        self.n_resamples, self.seed, self.confidence = n_resamples, seed, confidence
        self.groups: dict[GroupKey, list[JobResult]] = defaultdict(list)  # every eval result, by cell
        for r in store.results:
            job = r.job
            key = (job.task, job.method, job.params.get("source"), job.params.get("target"))
            if job.kind == "eval" and all(isinstance(k, str) and k for k in key):
                self.groups[key].append(r)
        for results in self.groups.values():
            results.sort(key=lambda r: (_seed_sort_key(r.job.seed), r.job.id))
        self._predictions: dict[str, PerExample | str] = {}  # job id -> predictions, or why there are none
        self._scores: dict[tuple[str, str], Scores | str] = {}  # (job id, metric) -> scores, or why there are none
        self.problems: dict[str, str] = {}  # predictions files that exist but cannot be used: path -> reason

    # -- per job -----------------------------------------------------------------------------
    def results(self, task: str, method: str, source: str, target: str, metric: str) -> list[JobResult]:
        """The results behind a cell: those with a number for ``metric`` (as ``aggregate.eval_cells`` takes them)."""
        return [r for r in self.groups.get((task, method, source, target), []) if _as_float(r.metrics.get(metric)) is not None]

    def predictions(self, result: JobResult) -> PerExample | str:
        job_id = result.job.id
        if job_id not in self._predictions:
            path = predictions_path(self.store.run_dir, job_id)
            if not path.is_file():
                self._predictions[job_id] = NO_PREDICTIONS
            else:
                try:
                    self._predictions[job_id] = read_predictions(path)
                except PredictionsError as error:
                    self.problems[path.relative_to(self.store.run_dir).as_posix()] = str(error)
                    self._predictions[job_id] = "unusable per-example predictions, listed under Warnings"
        return self._predictions[job_id]

    def scores(self, result: JobResult, metric: str) -> Scores | str:
        """One eval job's score on its test set and on every resample of it, or why there is none."""
        key = (result.job.id, metric)
        if key not in self._scores:
            self._score_target(result.job.task, result.job.params["target"], metric)
        return self._scores.get(key, NO_PREDICTIONS)

    def _score_target(self, task: str, target: str, metric: str) -> None:
        """Resample every eval job on (task, target) at once: one pass over each test set's resamples."""
        by_test_set: dict[tuple[str, str], list[tuple[JobResult, np.ndarray]]] = defaultdict(list)
        for (t, _, _, tgt), results in self.groups.items():
            if (t, tgt) != (task, target):
                continue
            for r in results:
                loaded = self.predictions(r)
                if isinstance(loaded, str):
                    self._scores[(r.job.id, metric)] = loaded
                elif not loaded.has(metric):
                    self._scores[(r.job.id, metric)] = f"per-example predictions without a statistic for {metric!r}"
                else:
                    name, matrix = loaded.matrix(metric)
                    if name not in significance.STATISTICS:
                        self._scores[(r.job.id, metric)] = f"an unknown statistic {name!r} in the per-example predictions"
                        continue
                    by_test_set[(loaded.examples_sha256, name)].append((r, matrix))
        for (sha, name), runs in sorted(by_test_set.items()):
            statistic = significance.STATISTICS[name]
            sizes = {len(m) for _, m in runs}
            if len(sizes) != 1:  # one hash, different lengths: not one test set after all
                for r, _ in runs:
                    self._scores[(r.job.id, metric)] = f"per-example predictions of test set {sha[:12]} differ in length"
                continue
            reps = significance.replicates([m for _, m in runs], statistic, f"{task}/{sha}",
                                           n_resamples=self.n_resamples, seed=self.seed)
            for (r, matrix), row in zip(runs, reps):
                self._scores[(r.job.id, metric)] = Scores(sha, len(matrix), significance.observed(matrix, statistic), row)

    # -- comparisons -------------------------------------------------------------------------
    def compare(self, task: str, metric: str, cells: EvalCells, method: str, baseline: str, column: str,
                plan: Sequence[tuple[str, Sequence[str]]]) -> Comparison | None:
        """``method`` − ``baseline`` averaged as the tables average: over targets, over sources, over seeds.

        plan: (target, candidate sources) in the table's order; only sources both methods have are used.
        None when no evaluation is common to both."""
        used: list[tuple[str, tuple[str, ...]]] = []
        for target, sources in plan:
            common = tuple(s for s in sources
                           if not cells.get(task, method, s, target).missing and not cells.get(task, baseline, s, target).missing)
            if common:
                used.append((target, common))
        if not used:
            return None

        def value(m: str) -> Value:
            per_target = [average([cells.get(task, m, s, t) for s in sources], labels=sources) for t, sources in used]
            return average(per_target, labels=[t for t, _ in used])

        diff = difference(value(method), value(baseline))
        pairs = tuple(f"{s}→{t}" for t, sources in used for s in sources)
        interval, reason, n_results, n_without = self._bootstrap(task, metric, method, baseline, used)
        return Comparison(method, baseline, column, pairs, diff, interval, reason, n_results, n_without)

    def _bootstrap(self, task: str, metric: str, method: str, baseline: str,
                   used: Sequence[tuple[str, tuple[str, ...]]]) -> tuple[significance.Interval | None, str | None, int, int]:
        """The paired bootstrap of the difference ``compare`` computed: every test set resampled on its own."""
        total, point, sizes = np.zeros(self.n_resamples), 0.0, []
        missing: dict[str, int] = defaultdict(int)
        n_results = 0
        for target, sources in used:
            sides = []
            for m in (method, baseline):
                parts = [[self.scores(r, metric) for r in self.results(task, m, source, target, metric)] for source in sources]
                n_results += sum(len(part) for part in parts)
                for scored in (s for part in parts for s in part if isinstance(s, str)):
                    missing[scored] += 1
                sides.append(parts)
            if missing:
                continue
            test_sets = {s.test_set for side in sides for part in side for s in part}
            if len(test_sets) != 1:
                return None, f"the results on {target} were computed on {len(test_sets)} different test sets", n_results, 0
            a, b = sides
            total += significance.nested_mean([[s.resampled for s in part] for part in a])
            total -= significance.nested_mean([[s.resampled for s in part] for part in b])
            point += significance.nested_mean([[s.observed for s in part] for part in a])
            point -= significance.nested_mean([[s.observed for s in part] for part in b])
            sizes.append(a[0][0].n)
        if missing:
            return None, "; ".join(sorted(missing)), n_results, sum(missing.values())
        return significance.interval(total / len(used), point / len(used), confidence=self.confidence,
                                     n_examples=tuple(sizes), seed=self.seed), None, n_results, 0


# ---------------------------------------------------------------------------------------------
# What the report compares


def _plan(table_id: str, cells: EvalCells, task: str, targets: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(target, candidate sources) for a column: Table 2 averages over every source, Tables 5 and 3 use English."""
    if table_id == "table2":
        order = paper.ner_language_order()
        sources = cells.sources(task)
        candidates = tuple([s for s in order if s in sources] + sorted(sources - set(order)))
    else:
        candidates = ("en",)
    return [(t, candidates) for t in targets]


def significance_table(comparer: Comparer, table, cells: EvalCells) -> SignificanceTable | None:
    """The comparisons behind one comparison table (``tables.ComparisonTable``): MAD-X − every other method in it."""
    task = "qa" if table.paper_table == "table3" else "ner"
    methods = [row.method for row in table.rows]
    if REFERENCE_METHOD not in methods:
        return None
    rows = []
    for baseline in methods:
        if baseline == REFERENCE_METHOD:
            continue
        found: dict[str, Comparison] = {}
        for column in table.all_columns:
            targets = table.summary_targets(column) if column in table.summary_columns else (column,)
            comparison = comparer.compare(task, table.metric, cells, REFERENCE_METHOD, baseline, column,
                                          _plan(table.id, cells, task, targets))
            if comparison is not None:
                found[column] = comparison
        rows.append(ComparisonRow(baseline, paper.method_display_name(baseline), found))
    return SignificanceTable(
        id=table.id, title=table.title, metric=table.metric, unit=UNITS[task], method=REFERENCE_METHOD,
        columns=table.columns, summary_columns=table.summary_columns, rows=tuple(rows),
        n_resamples=comparer.n_resamples, confidence=comparer.confidence, seed=comparer.seed,
    )


def pair_comparisons(comparer: Comparer, ner_f1: EvalCells, qa: Mapping[str, EvalCells]) -> dict[PairKey, Comparison]:
    """Per (source, target) pair, for the heatmaps of differences: NER against the paper's figure
    baselines, every source and target; QA from English against every other method."""
    out: dict[PairKey, Comparison] = {}
    plans = [("ner", "f1", ner_f1, NER_PAIR_BASELINES)]
    plans += [("qa", metric, cells, None) for metric, cells in qa.items()]
    for task, metric, cells, baselines in plans:
        methods = cells.methods(task)
        if REFERENCE_METHOD not in methods:
            continue
        for baseline in sorted(methods - {REFERENCE_METHOD}, key=paper.method_sort_key):
            if baselines is not None and baseline not in baselines:
                continue
            for source in sorted(cells.sources(task, REFERENCE_METHOD)):
                if task == "qa" and source != "en":
                    continue
                for target in sorted(cells.targets(task, REFERENCE_METHOD, source)):
                    comparison = comparer.compare(task, metric, cells, REFERENCE_METHOD, baseline, f"{source}→{target}",
                                                  [(target, (source,))])
                    if comparison is not None:
                        out[(task, metric, baseline, source, target)] = comparison
    return out


__all__ = ["Comparer", "Comparison", "ComparisonRow", "NER_PAIR_BASELINES", "PairKey", "REFERENCE_METHOD",
           "SignificanceTable", "pair_comparisons", "significance_table"]
