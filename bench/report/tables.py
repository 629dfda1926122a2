"""The report's tables as data: ours (mean ± std over seeds, n) beside the paper's number and the difference.

* Table 2: NER F1 per target language, averaged over every source language present (the paper: all
  16), per method; seen/unseen targets split as Table 2's dashed line.
* Table 5: NER F1 from English per target language, per method.
* Table 3: XQuAD F1 and EM from English per language, per method.
* Table 4: parameters each adapter variant adds, and the base model's own size.
* Cost per job kind and per table (a table's jobs: its eval jobs and everything they depend on),
  and provenance (run.json, plus what the results themselves record).

* MAD-X against each baseline in Tables 2, 5 and 3: differences with their paired bootstrap
  (``comparisons.py``), and per (source, target) pair for the heatmaps.

When the run's base model is not the paper's (XLM-R base), the paper's numbers stay in the tables as a
reference but no difference to them is computed (``Cell.comparable``; ``Tables.paper_comparable``).

Results are read through ``bench.results`` (``bench.report.load``). Nothing here formats text; the
layout (``layout.py``) does. A missing number is ``None`` (shown as "—"), never 0. Derived numbers
(differences, rates) are fields set on creation, so ``dataclasses.asdict`` (the JSON report) has them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from bench.report import paper
from bench.report.aggregate import MISSING, CellWarning, EvalCells, Value, average, eval_cells
from bench.report.comparisons import (Comparer, Comparison, PairKey, SignificanceTable, pair_comparisons,
                                      significance_table)
from bench.report.load import JOB_KINDS, ResultStore
from bench.results import SCHEMA_VERSION, JobResult, RunInfo
from madx.variants import MLM_MODES, VARIANTS

SUMMARY_SEEN, SUMMARY_UNSEEN, SUMMARY_ALL = "avg seen", "avg unseen", "avg"


@dataclass(frozen=True)
class Cell:
    ours: Value
    paper: float | None
    paper_note: str | None = None  # why the paper number is missing, or how it was derived
    comparable: bool = True  # our base model is the paper's; otherwise the paper number is a reference only
    diff: float | None = field(init=False)  # ours - paper (None when either is missing, or not comparable)

    def __post_init__(self) -> None:
        missing = self.ours.mean is None or self.paper is None or not self.comparable
        object.__setattr__(self, "diff", None if missing else self.ours.mean - self.paper)


EMPTY_CELL = Cell(MISSING, None)


@dataclass(frozen=True)
class Row:
    method: str
    name: str  # the paper's name for the method
    cells: Mapping[str, Cell]  # column (language or summary) -> cell
    paper_missing: str | None = None  # why the paper has no row for this method

    def cell(self, column: str) -> Cell:
        return self.cells.get(column, EMPTY_CELL)


@dataclass(frozen=True)
class ComparisonTable:
    id: str  # "table2", "table5", "table3-f1", "table3-em"
    paper_table: str  # "table2", "table5", "table3"
    title: str
    caption: str
    metric: str  # result metric: "f1", "exact_match"
    columns: tuple[str, ...]  # target languages, paper order first
    summary_columns: tuple[str, ...]
    rows: tuple[Row, ...]
    seen: frozenset[str] = frozenset()  # targets on the seen side (empty: no split shown)
    parts_label: str | None = None  # what Value.parts of a language cell lists ("sources")
    notes: tuple[str, ...] = ()
    paper_reference_only: bool = False  # the run's base model is not the paper's: no differences to the paper

    def row(self, method: str) -> Row | None:
        return next((r for r in self.rows if r.method == method), None)

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.columns + self.summary_columns

    def summary_targets(self, name: str) -> tuple[str, ...]:
        """The language columns a summary column averages when none is missing."""
        if name == SUMMARY_SEEN:
            return tuple(c for c in self.columns if c in self.seen)
        if name == SUMMARY_UNSEEN:
            return tuple(c for c in self.columns if c not in self.seen)
        return self.columns

    def incomplete(self, row: "Row", name: str) -> bool:
        """Does this row's summary cell average fewer targets than the table has (some without result)?"""
        value = row.cell(name).ours
        return not value.missing and len(value.parts) < len(self.summary_targets(name))


def _language_order(codes: Iterable[str], order: Iterable[str]) -> tuple[str, ...]:
    order = list(order)
    codes = set(codes)
    return tuple([c for c in order if c in codes] + sorted(codes - set(order)))


def _paper_summary(table: str, method: str, targets: tuple[str, ...], metric: str, paper_columns: tuple[str, ...]) -> tuple[float | None, str | None]:
    """The paper's average over the same targets we average over."""
    if not targets:
        return None, None
    if paper.missing_reason(table, method):
        return None, paper.missing_reason(table, method)
    if set(targets) == set(paper_columns):
        return paper.value(table, method, "avg", metric), "the paper's avg column"
    mean = paper.subset_mean(table, method, targets, metric)
    if mean is None:
        return None, "not available (the paper has no number for some of these targets)"
    return mean, f"mean of the paper's numbers for the same {len(targets)} targets"


def _comparison_table(
    *, table_id: str, paper_table: str, title: str, caption: str, metric: str,
    values: Mapping[tuple[str, str], Value], methods: Iterable[str], seen_split: bool,
    parts_label: str | None, notes: Iterable[str] = (), comparable: bool = True,
) -> ComparisonTable:
    """values: (method, target) -> Value. Builds rows with paper numbers, differences and summary columns."""
    paper_columns = paper.columns(paper_table)
    columns = _language_order({t for (_, t) in values}, paper_columns)
    seen_codes, _ = paper.seen_split()
    seen = frozenset(c for c in columns if c in seen_codes) if seen_split else frozenset()
    summaries: list[tuple[str, tuple[str, ...]]] = []
    if seen_split:
        summaries += [(SUMMARY_SEEN, tuple(c for c in columns if c in seen)),
                      (SUMMARY_UNSEEN, tuple(c for c in columns if c not in seen))]
    summaries.append((SUMMARY_ALL, columns))
    summaries = [(name, cols) for name, cols in summaries if cols]
    rows = []
    for method in sorted(set(methods), key=paper.method_sort_key):
        missing = paper.missing_reason(paper_table, method)
        cells: dict[str, Cell] = {}
        for target in columns:
            ours = values.get((method, target), MISSING)
            cells[target] = Cell(ours, paper.value(paper_table, method, target, metric), missing, comparable)
        for name, cols in summaries:
            ours = average([cells[c].ours for c in cols], labels=cols)
            paper_value, note = _paper_summary(paper_table, method, ours.parts, metric, paper_columns)
            cells[name] = Cell(ours, paper_value, note, comparable)
        rows.append(Row(method, paper.method_display_name(method), cells, missing))
    return ComparisonTable(
        id=table_id, paper_table=paper_table, title=title, caption=caption, metric=metric,
        columns=columns, summary_columns=tuple(name for name, _ in summaries), rows=tuple(rows),
        seen=seen, parts_label=parts_label, notes=tuple(notes), paper_reference_only=not comparable,
    )


def table2(ner_f1: EvalCells, comparable: bool = True) -> ComparisonTable:
    """NER F1 per target, averaged over all source languages present (per method and target)."""
    values: dict[tuple[str, str], Value] = {}
    methods = ner_f1.methods("ner")
    for method in methods:
        for target in ner_f1.targets("ner", method):
            sources = _language_order(ner_f1.sources("ner", method), paper.ner_language_order())
            values[(method, target)] = average([ner_f1.get("ner", method, s, target) for s in sources], labels=sources)
    all_sources = _language_order(ner_f1.sources("ner"), paper.ner_language_order())
    notes = [
        "Each language cell is the mean over the source languages present for that method and target "
        f"(this run: {len(all_sources)} source language{'s' if len(all_sources) != 1 else ''}: "
        f"{', '.join(all_sources) or 'none'}); the paper averages over all 16. Our averages over fewer "
        "sources are not directly comparable with the paper's.",
        "std: sample std (ddof=1) across seeds of the per-seed average; n/a when the averaged cells do not share "
        "the same seeds (a single seed shows the mean alone).",
        "Seen / unseen: " + paper.seen_split_note(),
    ]
    return _comparison_table(
        table_id="table2", paper_table="table2", metric="f1", methods=methods, values=values, seen_split=True,
        parts_label="sources", comparable=comparable,
        title="Table 2 — NER F1 per target language, averaged over source languages",
        caption="WikiANN NER F1 (%) when transferring to each target language (columns), averaged over the "
                "source languages; seen-by-XLM-R targets first, unseen after.",
        notes=notes,
    )


def table5(ner_f1: EvalCells, comparable: bool = True) -> ComparisonTable:
    """NER F1 from English to each target (zero-shot from en), per method."""
    values = {(m, t): ner_f1.get("ner", m, "en", t) for m in ner_f1.methods("ner") for t in ner_f1.targets("ner", m, "en")}
    methods = {m for (m, _) in values}
    return _comparison_table(
        table_id="table5", paper_table="table5", metric="f1", methods=methods, values=values, seen_split=True,
        parts_label=None, comparable=comparable,
        title="Table 5 — NER F1 from English per target language",
        caption="WikiANN NER F1 (%) with English as the source language, per target language.",
        notes=["The paper's Table 5 also has an mBERT row; madx-bench has no mBERT method, so it is not shown."],
    )


def table3(qa: EvalCells, metric: str, comparable: bool = True) -> ComparisonTable:
    """XQuAD F1 or EM from English per target language, per method."""
    values = {(m, t): qa.get("qa", m, "en", t) for m in qa.methods("qa") for t in qa.targets("qa", m, "en")}
    methods = {m for (m, _) in values}
    label = {"f1": "F1", "exact_match": "EM"}[metric]
    return _comparison_table(
        table_id=f"table3-{'f1' if metric == 'f1' else 'em'}", paper_table="table3", metric=metric, methods=methods,
        values=values, seen_split=False, parts_label=None, comparable=comparable,
        title=f"Table 3 — XQuAD {label} from English per language",
        caption=f"XQuAD {label} (%) with English (SQuAD) as the training language, per evaluation language.",
        notes=["The paper reports Table 3 for XLM-R, MAD-X –INV and MAD-X only; other methods have no paper number."],
    )


# ---------------------------------------------------------------------------------------------
# Table 4: parameters


@dataclass(frozen=True)
class Spread:
    """Distinct values of an integer recorded by several jobs."""

    low: int | None
    high: int | None
    n_jobs: int = 0

    @classmethod
    def of(cls, values: Iterable[Any]) -> "Spread":
        ints = [int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return cls(min(ints), max(ints), len(ints)) if ints else cls(None, None, 0)


@dataclass(frozen=True)
class ParamsRow:
    """Table 4 as the paper counts it: computed from the architecture (presets only), beside the paper."""

    method: str
    name: str
    computed_added: int | None = None  # weight matrices only, as the paper counts
    computed_added_with_bias: int | None = None
    computed_pct_of_paper_base: float | None = None  # added / 270M, not truncated
    computed_pct_of_base: float | None = None  # added_with_bias / counted base
    paper_params: str | None = None
    paper_params_count: int | None = None
    paper_pct: float | None = None
    added_diff: int | None = field(init=False)  # computed_added - paper_params_count

    def __post_init__(self) -> None:
        missing = self.computed_added is None or self.paper_params_count is None
        object.__setattr__(self, "added_diff", None if missing else self.computed_added - self.paper_params_count)


ADAPTER_METHODS = ("madx", "madx-inv", "madx-lad-inv")


@dataclass(frozen=True)
class RecordedParams:
    """What the runs themselves recorded (cost.trainable_params / total_params), per method and task."""

    method: str
    name: str
    task: str | None  # None: the method has MLM jobs but no task job yet
    mlm_trainable: Spread  # this method's MLM jobs (one language each)
    task_trainable: Spread  # this method's task jobs for ``task`` (head included)
    total_params: Spread  # the task model's total, where recorded
    # what one target language + the task adds (adapter methods): one MLM job's trainables + one task job's
    added: int | None = field(init=False)

    def __post_init__(self) -> None:
        added = None
        if self.task_trainable.high is not None and self.method in ADAPTER_METHODS:
            mlm = 0 if self.method == "madx-lad-inv" else self.mlm_trainable.high
            added = None if mlm is None else mlm + self.task_trainable.high
        object.__setattr__(self, "added", added)


@dataclass(frozen=True)
class ParamsTable:
    arch: str | None  # base model as found in the suite / run
    arch_source: str | None  # where it was found
    computed: bool  # parameter_table(arch) used (arch is a built-in preset)
    base_params: int | None  # the base model's own size (no head, no adapter); None: not known
    rows: tuple[ParamsRow, ...]  # computed (empty when the base model is not a preset)
    recorded: tuple[RecordedParams, ...] = ()
    notes: tuple[str, ...] = ()
    base_params_source: str | None = None  # how base_params was found
    paper_comparable: bool = True  # the base model is the paper's: differences to Table 4 mean something


def _model_name(model: Any) -> str | None:
    """The suite's model (``bench.suite``: ``{"name_or_path": ...}`` or ``{"tiny": {config}}``, the
    offline suites' tiny random model) as a name."""
    if not isinstance(model, Mapping):
        return None
    if isinstance(model.get("name_or_path"), str) and model["name_or_path"]:
        return model["name_or_path"]
    tiny = model.get("tiny")
    if isinstance(tiny, Mapping):
        shape = ", ".join(f"{k} {tiny[k]}" for k in ("hidden_size", "num_hidden_layers") if k in tiny)
        return f"tiny random {tiny.get('arch', 'model')}" + (f" ({shape})" if shape else "")
    return None


def find_base_model(store: ResultStore) -> tuple[str | None, str | None]:
    """(base model, where it was found): run.json's model (resolved), else the jobs' ``model`` parameter."""
    name = _model_name(store.run.model) if store.run is not None else None
    if name:
        return name, "run.json: model"
    for r in store.results:
        name = _model_name(r.job.params.get("model"))
        if name:
            return name, "job parameters: model"
    return None, None


@lru_cache(maxsize=8)
def _parameter_rows(arch: str) -> tuple:
    """madx.params.parameter_table for a preset (a pure function of the architecture; cached)."""
    from madx.params import parameter_table

    return tuple(parameter_table(arch))


# The runner's MLM jobs name what they train ("mode"), not a method; one full-model MLM job serves both baselines.
MLM_MODE_METHODS = {mode: tuple(v.name for v in VARIANTS.values() if v.mlm_mode == mode) for mode in MLM_MODES}


def mlm_methods(result: JobResult) -> tuple[str, ...]:
    if result.job.method:
        return (result.job.method,)
    return MLM_MODE_METHODS.get(str(result.job.params.get("mode")), ())


def recorded_base_parameters(store: ResultStore) -> tuple[int | None, str | None]:
    """The base model's size as the runs recorded it, and how it was found (None, None: not recorded).

    An adapter task job trains only its task adapter and head, so ``total − trainable`` of its cost is
    what stays frozen: the base model, plus, for MAD-X and MAD-X –INV, the source language's adapter,
    whose size is that language's MLM job's ``trainable_params``. MAD-X –LAD –INV loads none."""
    language_adapters: dict[tuple[str, str], int] = {}
    for r in store.by_kind("mlm"):
        language = r.job.params.get("language")
        if isinstance(r.cost.trainable_params, int) and isinstance(language, str):
            for method in mlm_methods(r):
                language_adapters[(method, language)] = r.cost.trainable_params
    frozen: dict[str, list[int]] = defaultdict(list)
    for r in store.by_kind("task"):
        method, total, trainable = r.job.method, r.cost.total_params, r.cost.trainable_params
        if method not in ADAPTER_METHODS or not isinstance(total, int) or not isinstance(trainable, int):
            continue
        adapter = 0 if method == "madx-lad-inv" else language_adapters.get((method, str(r.job.params.get("source"))))
        if adapter is not None:
            frozen[method].append(total - trainable - adapter)
    for method in ("madx-lad-inv", "madx-inv", "madx"):
        if frozen[method]:
            counts = Counter(frozen[method])
            base, n = counts.most_common(1)[0]
            how = (f"recorded: total − trainable parameters of the {paper.method_display_name(method)} task jobs"
                   + (" less the language adapter" if method != "madx-lad-inv" else "")
                   + " (what stays frozen: the base model without heads)")
            if len(counts) > 1:
                how += f"; {n} of {len(frozen[method])} jobs agree, the others record {', '.join(f'{v:,}' for v in sorted(counts) if v != base)}"
            return base, how
    return None, None


def table4(store: ResultStore) -> ParamsTable:
    from madx.params import ARCH_PRESETS

    arch, where = find_base_model(store)
    comparable = paper.is_paper_base_model(arch)
    mlm: dict[str, list] = defaultdict(list)
    task: dict[tuple[str, str], list] = defaultdict(list)
    total: dict[tuple[str, str], list] = defaultdict(list)
    for r in store.results:
        if r.job.kind == "task" and r.job.method:
            key = (r.job.method, str(r.job.task))
            task[key].append(r.cost.trainable_params)
            total[key].append(r.cost.total_params)
        elif r.job.kind == "mlm":
            for method in mlm_methods(r):
                mlm[method].append(r.cost.trainable_params)
    recorded = []
    for method in sorted(set(mlm) | {m for m, _ in task}, key=paper.method_sort_key):
        tasks = sorted(t for m, t in task if m == method) or [None]
        for t in tasks:
            recorded.append(RecordedParams(
                method, paper.method_display_name(method), t, Spread.of(mlm.get(method, [])),
                Spread.of(task.get((method, t), [])), Spread.of(total.get((method, t), []))))
    rows = []
    base, base_source = None, None
    if arch in ARCH_PRESETS:
        for c in _parameter_rows(arch):
            p = paper.added_parameters(c.variant)
            base, base_source = c.base, f"counted from the architecture (madx.params.parameter_table({arch!r}))"
            rows.append(ParamsRow(
                method=c.variant, name=paper.method_display_name(c.variant), computed_added=c.added,
                computed_added_with_bias=c.added_with_bias, computed_pct_of_paper_base=c.percent_of_paper_base,
                computed_pct_of_base=c.percent_of_base,
                paper_params=p["params"] if p else None, paper_params_count=p["params_count"] if p else None,
                paper_pct=p["pct"] if p else None,
            ))
        rows.sort(key=lambda r: paper.method_sort_key(r.method))
    if base is None:
        base, base_source = recorded_base_parameters(store)
    notes = ["The paper counts adapter weight matrices only (no biases, no task head) and divides by 270M; "
             "'% of 270M' is truncated to two decimals as in the paper."]
    if not comparable:
        notes.append(f"The paper's counts are for XLM-R base; this run's base model is {_base_phrase(arch)}, so they are "
                     "shown for reference only, without differences.")
    if rows:
        notes.append(f"Computed with madx.params.parameter_table({arch!r}) (base model from {where}).")
    else:
        reason = f"base model {arch!r} (from {where}) is not a built-in preset" if arch else "no base model named in run.json"
        notes.append(f"Not computed: {reason}; the recorded trainable parameters of the runs are shown instead.")
    if recorded:
        notes.append("Recorded: the runs' own counts (cost.trainable_params), per task (the task heads differ). They "
                     "include biases and the task head. 'added' = one language's MLM-job trainables + one task job's "
                     "(adapter methods only; the baselines train the whole model); '% of base' = added / the base "
                     "model's parameters above.")
    return ParamsTable(arch, where, bool(rows), base, tuple(rows), tuple(recorded), tuple(notes), base_source, comparable)


def _base_phrase(arch: str | None) -> str:
    return f"`{arch}`" if arch else "not named in the run"


# ---------------------------------------------------------------------------------------------
# Cost


@dataclass(frozen=True)
class CostRow:
    label: str
    n_jobs: int
    tokens: int | None
    wall_s: float | None
    device_hours: float | None
    peak_memory_bytes: int | None  # max over jobs
    devices: tuple[str, ...]
    n_without_cost: int = 0  # jobs missing a cost field (their share is not in the sums)
    n_deps_missing: int = 0  # dependencies with no result in the store (per-table rows)
    missing_fields: Mapping[str, int] = field(default_factory=dict)  # cost field -> jobs that do not record it
    tokens_per_s: float | None = field(init=False)  # tokens / wall_s

    def __post_init__(self) -> None:
        rate = None if self.tokens is None or not self.wall_s else self.tokens / self.wall_s
        object.__setattr__(self, "tokens_per_s", rate)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


COST_FIELDS = ("tokens", "wall_s", "device_hours", "peak_memory_bytes")  # what the cost tables sum (or take the max of)


def cost_row(label: str, jobs: Iterable[JobResult], n_deps_missing: int = 0) -> CostRow:
    jobs = sorted(jobs, key=lambda r: r.job.id)
    sums: dict[str, list[float]] = defaultdict(list)
    incomplete = 0
    missing: Counter = Counter()
    for r in jobs:
        values = {k: _number(getattr(r.cost, k)) for k in COST_FIELDS}
        incomplete += any(v is None for v in values.values())
        for k, v in values.items():
            if v is not None:
                sums[k].append(v)
            else:
                missing[k] += 1
    return CostRow(
        label=label, n_jobs=len(jobs),
        tokens=int(math.fsum(sums["tokens"])) if sums["tokens"] else None,
        wall_s=math.fsum(sums["wall_s"]) if sums["wall_s"] else None,
        device_hours=math.fsum(sums["device_hours"]) if sums["device_hours"] else None,
        peak_memory_bytes=int(max(sums["peak_memory_bytes"])) if sums["peak_memory_bytes"] else None,
        devices=tuple(sorted({r.cost.device for r in jobs if r.cost.device})),
        n_without_cost=incomplete, n_deps_missing=n_deps_missing,
        missing_fields={k: missing[k] for k in COST_FIELDS if missing[k]},
    )


def cost_by_kind(store: ResultStore) -> tuple[CostRow, ...]:
    kinds = sorted({r.job.kind for r in store.results},
                   key=lambda k: (JOB_KINDS.index(k), k) if k in JOB_KINDS else (len(JOB_KINDS), k))
    rows = [cost_row(kind, store.by_kind(kind)) for kind in kinds]
    rows.append(cost_row("all jobs", store.results))
    return tuple(rows)


def job_closure(store: ResultStore, roots: Iterable[JobResult]) -> tuple[list[JobResult], int]:
    """The roots and everything they depend on (transitively); and how many deps have no result."""
    by_id = store.by_id
    seen: dict[str, JobResult] = {}
    missing: set[str] = set()
    stack = list(roots)
    while stack:
        job = stack.pop()
        if job.job.id in seen:
            continue
        seen[job.job.id] = job
        for dep in job.job.deps:
            if dep in by_id:
                stack.append(by_id[dep])
            else:
                missing.add(dep)
    return list(seen.values()), len(missing)


def table_eval_jobs(store: ResultStore, table_id: str) -> list[JobResult]:
    evals = store.by_kind("eval")
    if table_id == "table2":
        return [r for r in evals if r.job.task == "ner"]
    if table_id == "table5":
        return [r for r in evals if r.job.task == "ner" and r.job.params.get("source") == "en"]
    if table_id == "table3":
        return [r for r in evals if r.job.task == "qa" and r.job.params.get("source") == "en"]
    raise ValueError(f"unknown table {table_id!r}")


TABLE_COST_LABELS = {
    "table2": "Table 2 (NER, all pairs)",
    "table5": "Table 5 (NER from en)",
    "table3": "Table 3 (XQuAD from en)",
}


def cost_by_table(store: ResultStore) -> tuple[CostRow, ...]:
    rows = []
    for table_id, label in TABLE_COST_LABELS.items():
        roots = table_eval_jobs(store, table_id)
        if not roots:
            continue
        jobs, missing = job_closure(store, roots)
        rows.append(cost_row(label, jobs, missing))
    return tuple(rows)


# ---------------------------------------------------------------------------------------------
# Provenance and notes


def hardware_label(hardware: Mapping[str, Any]) -> str:
    """``madx info``'s device record as one line: "cpu, threads 1", "cuda, bf16 True, count 1, name ..."."""
    rest = ", ".join(f"{k} {hardware[k]}" for k in sorted(hardware) if k != "type")
    return ", ".join(part for part in (str(hardware.get("type", "")), rest) if part)


@dataclass(frozen=True)
class ProvenanceSummary:
    """What the results record about the code and machines that produced them: value -> jobs."""

    run: RunInfo | None  # run.json
    code_versions: Mapping[str, int]  # git revision (+ "uncommitted changes") -> jobs that recorded it
    madx_versions: Mapping[str, int]
    hardware: Mapping[str, int]
    devices: Mapping[str, int]
    workers: Mapping[str, int]  # "host:pid:rankN" -> jobs
    versions: Mapping[str, Mapping[str, int]]  # package -> version -> jobs
    finished_first: str | None
    finished_last: str | None
    unrecorded: int = 0  # results that record no code version (schema 1, or outside git)
    result_schemas: Mapping[str, int] = field(default_factory=dict)  # schema the file was written in -> jobs
    mixed: tuple[str, ...] = field(init=False)  # what differs between jobs (the report warns)

    def __post_init__(self) -> None:
        mixed = [label for label, counter in (("result schema", self.result_schemas), ("git revision", self.code_versions),
                                              ("madx version", self.madx_versions), ("hardware", self.hardware))
                 if len(counter) > 1]
        mixed += [f"{pkg} version" for pkg, versions in sorted(self.versions.items()) if len(versions) > 1]
        object.__setattr__(self, "mixed", tuple(mixed))


def provenance(store: ResultStore) -> ProvenanceSummary:
    code, madx_versions, hardware, devices, workers = Counter(), Counter(), Counter(), Counter(), Counter()
    versions: dict[str, Counter] = defaultdict(Counter)
    finished = []
    unrecorded = 0
    for r in store.results:
        p = r.provenance
        if p.code_version is not None:
            code[p.code_version] += 1
        else:
            unrecorded += 1
        if p.madx_version is not None:
            madx_versions[p.madx_version] += 1
        if p.hardware:
            hardware[hardware_label(p.hardware)] += 1
        devices[r.cost.device] += 1
        workers[r.worker.id] += 1
        for pkg, version in p.versions.items():
            versions[pkg][version or "not installed"] += 1
        finished.append(r.finished_at)
    return ProvenanceSummary(
        run=store.run, code_versions=dict(sorted(code.items())), madx_versions=dict(sorted(madx_versions.items())),
        hardware=dict(sorted(hardware.items())), devices=dict(sorted(devices.items())),
        workers=dict(sorted(workers.items())),
        versions={pkg: dict(sorted(v.items())) for pkg, v in sorted(versions.items())},
        finished_first=min(finished) if finished else None, finished_last=max(finished) if finished else None,
        unrecorded=unrecorded, result_schemas=_result_schemas(store),
    )


def _result_schemas(store: ResultStore) -> dict[str, int]:
    """Jobs per schema their file was written in: results upgraded from schema 1 came from older code."""
    old = sum(1 for p in store.upgraded if p.startswith("jobs/"))
    counts = {"1": old, str(SCHEMA_VERSION): len(store.results) - old}
    return {schema: n for schema, n in counts.items() if n}


def passthrough_notes(store: ResultStore) -> tuple[str, ...]:
    """The suite's notes as run.json records them (e.g. "QA trained on a SQuAD stand-in"), deduplicated."""
    notes: list[str] = []
    for note in store.run.notes if store.run is not None else ():
        if note.strip() and note.strip() not in notes:
            notes.append(note.strip())
    return tuple(notes)


# ---------------------------------------------------------------------------------------------
# Everything together


@dataclass(frozen=True)
class Tables:
    ner_f1: EvalCells
    qa_f1: EvalCells
    qa_em: EvalCells
    comparisons: tuple[ComparisonTable, ...]
    params: ParamsTable
    cost_by_kind: tuple[CostRow, ...]
    cost_by_table: tuple[CostRow, ...]
    provenance: ProvenanceSummary
    notes: tuple[str, ...]  # passed through from run.json
    cell_warnings: tuple[CellWarning, ...] = field(default_factory=tuple)
    base_model: str | None = None  # the run's base model (find_base_model), None: not named
    base_model_source: str | None = None
    paper_comparable: bool = True  # the base model is the paper's (XLM-R base): differences to the paper are shown
    # MAD-X against each baseline, per comparison table (comparisons.py): differences with their bootstrap
    significance: tuple[SignificanceTable, ...] = field(default_factory=tuple)
    # the same per (task, metric, baseline, source, target), for the heatmaps of differences
    pair_comparisons: Mapping[PairKey, Comparison] = field(default_factory=dict)
    prediction_problems: Mapping[str, str] = field(default_factory=dict)  # predictions files that cannot be used

    def comparison(self, table_id: str) -> ComparisonTable | None:
        return next((t for t in self.comparisons if t.id == table_id), None)

    def significance_table(self, table_id: str) -> SignificanceTable | None:
        return next((t for t in self.significance if t.id == table_id), None)


def build_tables(store: ResultStore, comparer: Comparer | None = None) -> Tables:
    """Every table of the report; ``comparer`` sets the bootstrap (resamples, seed, confidence)."""
    ner_f1 = eval_cells(store.results, "f1")
    ner_f1 = EvalCells("f1", {k: v for k, v in ner_f1.cells.items() if k[0] == "ner"},
                       tuple(w for w in ner_f1.warnings if w.key[0] == "ner"))
    qa_f1 = eval_cells((r for r in store.results if r.job.task == "qa"), "f1")
    qa_em = eval_cells((r for r in store.results if r.job.task == "qa"), "exact_match")
    arch, where = find_base_model(store)
    comparable = paper.is_paper_base_model(arch)
    comparisons = [t for t in (table2(ner_f1, comparable), table5(ner_f1, comparable), table3(qa_f1, "f1", comparable),
                               table3(qa_em, "exact_match", comparable)) if t.rows]
    comparer = comparer or Comparer(store)
    cells_of = {"table2": ner_f1, "table5": ner_f1, "table3-f1": qa_f1, "table3-em": qa_em}
    significance = [significance_table(comparer, t, cells_of[t.id]) for t in comparisons]
    pairs = pair_comparisons(comparer, ner_f1, {"f1": qa_f1, "exact_match": qa_em})
    return Tables(
        ner_f1=ner_f1, qa_f1=qa_f1, qa_em=qa_em,
        comparisons=tuple(comparisons),
        params=table4(store), cost_by_kind=cost_by_kind(store), cost_by_table=cost_by_table(store),
        provenance=provenance(store), notes=passthrough_notes(store),
        cell_warnings=tuple(dict.fromkeys(ner_f1.warnings + qa_f1.warnings + qa_em.warnings)),
        base_model=arch, base_model_source=where, paper_comparable=comparable,
        significance=tuple(t for t in significance if t is not None), pair_comparisons=pairs,
        prediction_problems=dict(sorted(comparer.problems.items())),
    )


__all__ = [
    "Cell",
    "ComparisonTable",
    "CostRow",
    "ParamsRow",
    "ParamsTable",
    "RecordedParams",
    "ProvenanceSummary",
    "Row",
    "SUMMARY_ALL",
    "SUMMARY_SEEN",
    "SUMMARY_UNSEEN",
    "Spread",
    "Tables",
    "build_tables",
    "cost_by_kind",
    "cost_by_table",
    "find_base_model",
    "hardware_label",
    "job_closure",
    "passthrough_notes",
    "provenance",
    "recorded_base_parameters",
    "table2",
    "table3",
    "table4",
    "table5",
]
