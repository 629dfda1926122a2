"""Comparative reports of a benchmark run: the paper's tables beside ours, heatmaps, cost, provenance.

    from bench.report import build_report, write_report
    report = build_report("runs/smoke")            # reads runs/smoke/jobs/*/result.json through bench.results
    write_report(report, formats=("md", "html", "json"))

One concern per module:

    load.py        the run directory through the result schema (bench.results): ResultStore
    predictions.py an eval job's per-example results (artifacts/predictions.npz; the runner writes them too)
    aggregate.py   mean ± std over seeds, averages of averages, differences: Value, EvalCells
    significance.py  the paired bootstrap over test examples (pure functions with a seed)
    comparisons.py MAD-X against each baseline, per target and averaged: differences with their intervals
    paper.py       the paper's numbers (paper_tables.json), the seen/unseen marks
    tables.py      the report's tables as data (Tables 2-5, cost, provenance)
    plots.py       heatmaps (matplotlib): NER and QA scores, differences marked where not significant
    build.py       Report: store + tables + heatmaps
    document.py    the document model: Document, Section, Paragraph, Notes, Table, Figures, Details
    layout.py      Report -> Document (what each section says), status line, warnings
    format.py      number formats
    render_md.py, render_html.py (jinja2: templates/), render_json.py (dataclasses.asdict), summary.py (terminal)
    write.py       the files, atomically

Command line: ``madx bench report DIR`` (``bench.report.cli``) or ``python -m bench.report DIR``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from madx.lazy import lazy_exports

# public name -> the module that defines it. Imported on first use (PEP 562), so that the runner can
# use bench.report.predictions (numpy only) without importing matplotlib and jinja2.
_EXPORTS: dict[str, str] = {
    "FORMATS": "bench.report.write",
    "Report": "bench.report.build",
    "build_report": "bench.report.build",
    "load_store": "bench.report.load",
    "render_html": "bench.report.render_html",
    "render_markdown": "bench.report.render_md",
    "report_document": "bench.report.layout",
    "report_json": "bench.report.render_json",
    "terminal_summary": "bench.report.summary",
    "write_report": "bench.report.write",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from bench.report.build import Report, build_report
    from bench.report.layout import report_document
    from bench.report.load import load_store
    from bench.report.render_html import render_html
    from bench.report.render_json import report_json
    from bench.report.render_md import render_markdown
    from bench.report.summary import terminal_summary
    from bench.report.write import FORMATS, write_report
