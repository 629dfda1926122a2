"""Comparative reports of a benchmark run: the paper's tables beside ours, heatmaps, cost, provenance.

    from bench.report import build_report, write_report
    report = build_report("runs/smoke")            # reads runs/smoke/jobs/*/result.json through bench.results
    write_report(report, formats=("md", "html", "json"))

One concern per module:

    load.py        the run directory through the result schema (bench.results): ResultStore
    aggregate.py   mean ± std over seeds, averages of averages: Value, EvalCells
    paper.py       the paper's numbers (paper_tables.json)
    tables.py      the report's tables as data (Tables 2-5, cost, provenance)
    plots.py       heatmaps (matplotlib)
    build.py       Report: store + tables + heatmaps
    document.py    the document model: Document, Section, Paragraph, Notes, Table, Figures, Details
    layout.py      Report -> Document (what each section says), status line, warnings
    format.py      number formats
    render_md.py, render_html.py (jinja2: templates/), render_json.py (dataclasses.asdict), summary.py (terminal)
    write.py       the files, atomically

Command line: ``madx bench report DIR`` (``bench.report.cli``) or ``python -m bench.report DIR``.
"""

from bench.report.build import Report, build_report
from bench.report.layout import report_document
from bench.report.load import load_store
from bench.report.render_html import render_html
from bench.report.render_json import report_json
from bench.report.render_md import render_markdown
from bench.report.summary import terminal_summary
from bench.report.write import FORMATS, write_report

__all__ = ["FORMATS", "Report", "build_report", "load_store", "render_html", "render_markdown", "report_document",
           "report_json", "terminal_summary", "write_report"]
