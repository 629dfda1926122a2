"""Comparative reports of a benchmark run: the paper's tables beside ours, heatmaps, cost, provenance.

    from bench.report import build_report, write_report
    report = build_report("runs/smoke")            # reads runs/smoke/jobs/*/result.json
    write_report(report, formats=("md", "html", "json"))

Command line: ``madx bench report DIR`` (``bench.report.cli``) or ``python -m bench.report DIR``.
"""

from bench.report.render import build_report, render_html, render_markdown, report_json, terminal_summary, write_report
from bench.report.store import load_store

__all__ = ["build_report", "load_store", "render_html", "render_markdown", "report_json", "terminal_summary",
           "write_report"]
