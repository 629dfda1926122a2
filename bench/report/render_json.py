"""The report as JSON: the report's own dataclasses through ``dataclasses.asdict``.

``tables`` is :class:`bench.report.tables.Tables` as data (every cell with its per-seed values,
the paper's number and the difference; Table 4; cost; provenance with run.json), ``heatmaps`` the
plotted arrays. Conversions for JSON only: tuple keys (cells are keyed (task, method, source,
target)) are joined with "/", other keys become strings, sets sorted lists, paths relative to the
report directory, and NaN / infinities ``null`` (a missing number is never 0).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import paper
from bench.report.build import Report
from bench.report.layout import warning_items

# 1: the hand-written layout of bench/report/render.py; 2: the dataclasses as they are
JSON_SCHEMA = 2


def _key(key: Any) -> str:
    return "/".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def jsonable(value: Any, root: Path | None = None) -> Any:
    """``asdict`` output (or any nesting of mappings and sequences) as JSON-ready data."""
    if isinstance(value, Mapping):
        return {_key(k): jsonable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, root) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v, root) for v in value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), root)
    if isinstance(value, np.generic):
        return jsonable(value.item(), root)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        if root is not None and value.is_relative_to(root):
            return value.relative_to(root).as_posix()
        return value.as_posix()
    return value


def report_json(report: Report) -> dict[str, Any]:
    store = report.store
    data = {
        "schema": JSON_SCHEMA,
        "title": report.title,
        "run_dir": report.run_dir.name,
        "paper_setting": paper.PAPER_SETTING,
        "status": asdict(store.status),
        "jobs_by_kind": dict(sorted(Counter(r.job.kind for r in store.results).items())),
        "problems": [asdict(p) for p in store.problems],
        "upgraded": list(store.upgraded),
        "warnings": warning_items(report),
        "tables": asdict(report.tables),
        "heatmaps": [asdict(h) for h in report.heatmaps],
    }
    return jsonable(data, report.out_dir)


__all__ = ["JSON_SCHEMA", "jsonable", "report_json"]
