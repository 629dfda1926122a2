"""Write a report's files: report.md, report.html, report.json (atomically, with the user's file mode: madx.atomic)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from madx.atomic import atomic_write_json, atomic_write_text

from bench.report.build import Report
from bench.report.render_html import render_html
from bench.report.render_json import report_json
from bench.report.render_md import render_markdown

FORMATS = ("md", "html", "json")
FILENAMES = {"md": "report.md", "html": "report.html", "json": "report.json"}


def write_report(report: Report, formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Write the requested formats into ``report.out_dir``; return format -> path."""
    written: dict[str, Path] = {}
    formats = set(formats)
    unknown = sorted(formats - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format {unknown[0]!r}; known: {', '.join(FORMATS)}")
    for name in sorted(formats, key=FORMATS.index):
        path = report.out_dir / FILENAMES[name]
        if name == "md":
            atomic_write_text(path, render_markdown(report))
        elif name == "html":
            atomic_write_text(path, render_html(report))
        else:
            atomic_write_json(path, report_json(report))
        written[name] = path
    return written


__all__ = ["FILENAMES", "FORMATS", "write_report"]
