"""The report document as one self-contained HTML page, through a jinja2 template.

The template (``templates/report.html.j2``) and the style (``templates/report.css``) are package
files; the heatmap PNGs are embedded as base64 data URIs, so the page needs nothing beside it.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from importlib import resources

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from bench.report.build import Report
from bench.report.document import Details, Document, Figures
from bench.report.layout import report_document

TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"


def inline(text: str) -> Markup:
    """Escape, then turn `code` spans into <code>."""
    parts = re.split(r"`([^`]*)`", str(text))
    return Markup("".join(f"<code>{escape(p)}</code>" if i % 2 else str(escape(p)) for i, p in enumerate(parts)))


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("bench.report", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["inline"] = inline
    return env


def stylesheet() -> str:
    return resources.files("bench.report").joinpath("templates", STYLESHEET).read_text(encoding="utf-8")


def render_html_document(document: Document, images: Mapping[str, bytes] | None = None) -> str:
    """``images``: figure path -> PNG bytes to embed (a figure without bytes links its path)."""
    uris = {path: "data:image/png;base64," + base64.b64encode(data).decode("ascii") for path, data in (images or {}).items()}
    return environment().get_template(TEMPLATE).render(doc=document, images=uris, css=Markup(stylesheet()))


def _figure_paths(blocks) -> list[str]:
    paths = []
    for block in blocks:
        if isinstance(block, Figures):
            paths += [f.path for f in block.figures]
        elif isinstance(block, Details):
            paths += _figure_paths(block.blocks)
    return paths


def render_html(report: Report) -> str:
    document = report_document(report)
    images = {}
    for path in (p for section in document.sections for p in _figure_paths(section.blocks)):
        file = report.out_dir / path
        if file.is_file():
            images[path] = file.read_bytes()
    return render_html_document(document, images)


__all__ = ["environment", "inline", "render_html", "render_html_document", "stylesheet"]
