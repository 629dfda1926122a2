"""A report's data: the result store, the tables built from it, and the heatmaps drawn from them.

    report = build_report("runs/smoke", out_dir="runs/smoke/report")   # reads, aggregates, draws PNGs

Rendering is elsewhere: ``layout.py`` (the document), ``render_md.py``, ``render_html.py``,
``render_json.py``, ``summary.py`` (the terminal), ``write.py`` (the files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.report.load import ResultStore, load_store
from bench.report.plots import Heatmap, ner_heatmaps, qa_heatmaps
from bench.report.tables import Tables, build_tables

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class Report:
    run_dir: Path
    out_dir: Path
    store: ResultStore
    tables: Tables
    heatmaps: tuple[Heatmap, ...] = field(default_factory=tuple)

    @property
    def title(self) -> str:
        suite = self.store.run.suite if self.store.run is not None else None
        return f"madx-bench report: {suite or self.run_dir.name}"


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, plots: bool = True) -> Report:
    """Read the store, build the tables, draw the heatmaps into ``out_dir/plots`` (if ``plots``)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    store = load_store(run_dir)
    tables = build_tables(store)
    plots_dir = out_dir / PLOTS_DIR if plots else None
    heatmaps = ner_heatmaps(tables.ner_f1, plots_dir, tables.pair_comparisons)
    heatmaps += qa_heatmaps({"f1": tables.qa_f1, "exact_match": tables.qa_em}, plots_dir, tables.pair_comparisons)
    return Report(run_dir, out_dir, store, tables, tuple(heatmaps))


__all__ = ["PLOTS_DIR", "Report", "build_report"]
