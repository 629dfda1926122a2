"""Per-example results of an evaluation job: ``RUN/jobs/<id>/artifacts/predictions.npz``.

The eval job (``bench.execute.run_eval``) writes what the task's evaluate function returns with
``per_example=True`` (``madx.tasks.ner.evaluate_ner``, ``madx.tasks.qa.evaluate_qa``); the report
reads it for its paired bootstrap (``bench.report.significance``). One numpy ``.npz`` (compressed):

    meta          a JSON string: {"format": 1, "task": "ner", "unit": "sentence",
                  "examples_sha256": which test set (a hash of its examples and gold labels),
                  "statistics": {metric: {"name": "micro_f1", "columns": ["tp", "fp", "fn"]}}}
    <column>      one array per column, one row per test example, in the test set's order:
                  NER tp, fp, fn (int32 entity counts per sentence); QA f1, exact_match (percent per question)

``statistics`` says how a metric is recomputed from the columns summed over (resampled) examples,
by a name from ``bench.report.significance.STATISTICS``, so the report needs no per-task code. This
module imports numpy only: the runner uses it without the report's plotting dependencies.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS_FILE = "predictions.npz"
FORMAT = 1


class PredictionsError(ValueError):
    """A predictions file that cannot be used (unreadable, another format, inconsistent columns)."""


@dataclass(frozen=True, eq=False)
class PerExample:
    task: str
    unit: str  # "sentence" / "question": what one row is
    examples_sha256: str  # the test set: results with the same hash were computed on the same examples
    columns: Mapping[str, np.ndarray]  # name -> (n,)
    statistics: Mapping[str, tuple[str, tuple[str, ...]]]  # metric -> (statistic name, its columns)

    @property
    def n(self) -> int:
        return len(next(iter(self.columns.values())))

    def has(self, metric: str) -> bool:
        return metric in self.statistics

    def matrix(self, metric: str) -> tuple[str, np.ndarray]:
        """(statistic name, (n, k) float64 array of its columns) for ``metric``."""
        name, columns = self.statistics[metric]
        return name, np.stack([np.asarray(self.columns[c], dtype=np.float64) for c in columns], axis=1)


def predictions_path(run_dir: str | Path, job_id: str) -> Path:
    """Where an eval job's predictions are: in its artifacts (``bench.store.RunStore.artifacts``)."""
    return Path(run_dir) / "jobs" / job_id / "artifacts" / PREDICTIONS_FILE


def write_predictions(path: str | Path, task: str, per_example: Mapping[str, Any]) -> Path:
    """Write an evaluate function's ``per_example`` record (unit, examples_sha256, columns, statistics)."""
    path = Path(path)
    columns = {name: np.asarray(values) for name, values in per_example["columns"].items()}
    meta = {"format": FORMAT, "task": task, "unit": per_example["unit"], "examples_sha256": per_example["examples_sha256"],
            "statistics": per_example["statistics"]}
    if "meta" in columns:
        raise ValueError("a per-example column may not be called 'meta'")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a file object: savez would otherwise append ".npz" to other names
        np.savez_compressed(handle, meta=np.array(json.dumps(meta, sort_keys=True)), **columns)
    return path


def read_predictions(path: str | Path) -> PerExample:
    """Read a predictions file; raises PredictionsError saying what is wrong."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise PredictionsError(f"unreadable: {type(error).__name__}: {error}") from None
    if "meta" not in arrays:
        raise PredictionsError("no 'meta' entry")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as error:
        raise PredictionsError(f"meta is not JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PredictionsError(f"format {meta.get('format') if isinstance(meta, dict) else meta!r} "
                               f"(this madx-bench reads format {FORMAT})")
    lengths = {name: a.shape for name, a in arrays.items()}
    if not arrays or any(len(shape) != 1 for shape in lengths.values()) or len({s[0] for s in lengths.values()}) != 1:
        raise PredictionsError(f"columns must be 1-d arrays of one length, got {lengths}")
    statistics: dict[str, tuple[str, tuple[str, ...]]] = {}
    for metric, spec in (meta.get("statistics") or {}).items():
        try:
            name, columns = spec["name"], tuple(spec["columns"])
        except (TypeError, KeyError):
            raise PredictionsError(f"statistics.{metric}: expected {{name, columns}}, got {spec!r}") from None
        missing = [c for c in columns if c not in arrays]
        if missing:
            raise PredictionsError(f"statistics.{metric} names column(s) {', '.join(missing)} that the file lacks")
        statistics[metric] = (str(name), columns)
    return PerExample(task=str(meta.get("task")), unit=str(meta.get("unit")), examples_sha256=str(meta.get("examples_sha256")),
                      columns=arrays, statistics=statistics)


__all__ = ["FORMAT", "PREDICTIONS_FILE", "PerExample", "PredictionsError", "predictions_path", "read_predictions",
           "write_predictions"]
