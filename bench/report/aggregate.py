"""Aggregate evaluation results over seeds: cells (task, method, source, target) -> mean ± std.

Aggregation keeps every seed's number (:class:`Value.per_seed`) so that averages of averages (over
source languages, over target languages) can still give a standard deviation across seeds: the
sample std (ddof=1) of the per-seed averages, when every component has the same seeds.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.results import JobResult

CellKey = tuple[str, str, str, str]  # (task, method, source, target)


def _as_float(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Value:
    """A mean over seeds (or an average of such means) with what is known about its spread.

    mean: None = missing (no seed). std: sample std (ddof=1) across seeds; None when fewer than 2
    seeds, or (for averages) when the components do not share the same seeds. per_seed: seed ->
    value when each seed has exactly one value (for leaves) / every component has the same seeds
    (for averages); None otherwise. n_seeds_min/max: seeds per leaf cell (equal when balanced).
    n_parts: how many leaf cells an average is over (1 for a leaf).
    """

    mean: float | None
    std: float | None = None
    n_seeds_min: int = 0
    n_seeds_max: int = 0
    per_seed: Mapping[Any, float] | None = None
    n_parts: int = 0
    parts: tuple[str, ...] = ()  # labels of the components of an average (e.g. source languages)

    @property
    def missing(self) -> bool:
        return self.mean is None

    @property
    def n_seeds(self) -> int:
        """Seeds behind the number (the smaller count when components differ)."""
        return self.n_seeds_min

    def seeds_label(self) -> str:
        if self.n_seeds_min == self.n_seeds_max:
            return str(self.n_seeds_min)
        return f"{self.n_seeds_min}–{self.n_seeds_max}"


MISSING = Value(mean=None)


def _seed_sort_key(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else (1, str(seed))


def leaf_value(samples: Iterable[tuple[Any, float]]) -> Value:
    """Mean ± sample std of (seed, value) samples. Duplicate seeds are kept as separate samples."""
    samples = sorted(samples, key=lambda s: (_seed_sort_key(s[0]), s[1]))
    if not samples:
        return MISSING
    values = [v for _, v in samples]
    seeds = [s for s, _ in samples]
    per_seed = dict(samples) if len(set(seeds)) == len(seeds) else None
    return Value(
        mean=math.fsum(values) / len(values),
        std=statistics.stdev(values) if len(values) >= 2 else None,
        n_seeds_min=len(values), n_seeds_max=len(values),
        per_seed=per_seed, n_parts=1,
    )


def average(values: Iterable[Value], labels: Iterable[str] | None = None) -> Value:
    """Mean of the components' means; std across seeds of the per-seed averages when balanced.

    Missing components are left out (the result's ``parts``/``n_parts`` say which were used).
    """
    values = list(values)
    labels = list(labels) if labels is not None else [""] * len(values)
    present = [(label, v) for label, v in zip(labels, values) if not v.missing]
    if not present:
        return MISSING
    means = [v.mean for _, v in present]
    per_seed = None
    std = None
    seed_sets = [None if v.per_seed is None else frozenset(v.per_seed) for _, v in present]
    if all(s is not None for s in seed_sets) and len(set(seed_sets)) == 1:
        seeds = sorted(seed_sets[0], key=_seed_sort_key)
        per_seed = {s: math.fsum(v.per_seed[s] for _, v in present) / len(present) for s in seeds}
        if len(per_seed) >= 2:
            std = statistics.stdev(per_seed.values())
    return Value(
        mean=math.fsum(means) / len(means),
        std=std,
        n_seeds_min=min(v.n_seeds_min for _, v in present),
        n_seeds_max=max(v.n_seeds_max for _, v in present),
        per_seed=per_seed,
        n_parts=sum(v.n_parts for _, v in present),
        parts=tuple(label for label, _ in present),
    )


def difference(a: Value, b: Value) -> Value:
    """a − b: the difference of the means; per seed, and the sample std of those differences, when both
    have the same seeds (pairing seed s of one method with seed s of the other, as averages pair components)."""
    if a.missing or b.missing:
        return MISSING
    per_seed = None
    std = None
    if a.per_seed is not None and b.per_seed is not None and set(a.per_seed) == set(b.per_seed):
        per_seed = {s: a.per_seed[s] - b.per_seed[s] for s in sorted(a.per_seed, key=_seed_sort_key)}
        if len(per_seed) >= 2:
            std = statistics.stdev(per_seed.values())
    return Value(
        mean=a.mean - b.mean, std=std,
        n_seeds_min=min(a.n_seeds_min, b.n_seeds_min), n_seeds_max=max(a.n_seeds_max, b.n_seeds_max),
        per_seed=per_seed, n_parts=max(a.n_parts, b.n_parts), parts=a.parts if a.parts == b.parts else (),
    )


@dataclass(frozen=True)
class CellWarning:
    key: CellKey
    message: str


@dataclass(frozen=True)
class EvalCells:
    """Eval results of one metric, keyed (task, method, source, target)."""

    metric: str
    cells: Mapping[CellKey, Value]
    warnings: tuple[CellWarning, ...] = ()

    def get(self, task: str, method: str, source: str, target: str) -> Value:
        return self.cells.get((task, method, source, target), MISSING)

    def keys(self, task: str | None = None) -> list[CellKey]:
        return sorted(k for k in self.cells if task is None or k[0] == task)

    def methods(self, task: str) -> set[str]:
        return {k[1] for k in self.cells if k[0] == task}

    def sources(self, task: str, method: str | None = None) -> set[str]:
        return {k[2] for k in self.cells if k[0] == task and (method is None or k[1] == method)}

    def targets(self, task: str, method: str | None = None, source: str | None = None) -> set[str]:
        return {k[3] for k in self.cells if k[0] == task and (method is None or k[1] == method)
                and (source is None or k[2] == source)}


# Parameters that identify a cell or a replicate; any other parameter that differs inside one cell
# means the cell mixes configurations (worth a warning in the report).
_CELL_PARAMS = {"task", "method", "source", "target", "seed"}


def eval_cells(results: Iterable[JobResult], metric: str) -> EvalCells:
    """Aggregate eval results over seeds into cells (task, method, source, target) -> Value."""
    groups: dict[CellKey, list[JobResult]] = defaultdict(list)
    notes: list[CellWarning] = []
    for r in results:
        job = r.job
        if job.kind != "eval":
            continue
        key = (job.task, job.method, job.params.get("source"), job.params.get("target"))
        if any(not isinstance(k, str) or not k for k in key):
            continue
        if _as_float(r.metrics.get(metric)) is None:
            notes.append(CellWarning(key, f"job {job.id} (jobs/{job.id}/result.json) has no numeric {metric!r}; left out"))
            continue
        groups[key].append(r)
    cells: dict[CellKey, Value] = {}
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (_seed_sort_key(r.job.seed), r.job.id))
        cells[key] = leaf_value((r.job.seed, _as_float(r.metrics[metric])) for r in group)
        seeds = [r.job.seed for r in group]
        duplicates = sorted({str(s) for s in seeds if seeds.count(s) > 1})
        if duplicates:
            notes.append(CellWarning(key, f"seed(s) {', '.join(duplicates)} appear more than once "
                                          f"(jobs {', '.join(r.job.id[:10] for r in group)}); all values are averaged"))
        varying = sorted(
            name for name in set().union(*(r.job.params.keys() for r in group)) - _CELL_PARAMS
            if len({json.dumps(r.job.params.get(name), sort_keys=True, default=str) for r in group}) > 1
        )
        if varying:
            notes.append(CellWarning(key, f"results differ in {', '.join(varying)} but are averaged together"))
    return EvalCells(metric, cells, tuple(sorted(notes, key=lambda w: (w.key, w.message))))

__all__ = [
    "CellKey",
    "CellWarning",
    "EvalCells",
    "MISSING",
    "Value",
    "average",
    "difference",
    "eval_cells",
    "leaf_value",
]
