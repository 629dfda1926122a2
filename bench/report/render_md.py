"""The report document as markdown (GitHub-flavoured; details as <details> HTML blocks)."""

from __future__ import annotations

import html
from collections.abc import Iterable

from bench.report.build import Report
from bench.report.document import Block, Details, Document, Figures, Notes, Paragraph, Table
from bench.report.layout import report_document
from madx.tables import render_table


def _table(table: Table) -> list[str]:
    align = "".join(table.alignment(j) for j in range(len(table.header)))
    rows = [[c.text for c in row] for row in table.rows]
    return render_table([c.text for c in table.header], rows, align=align).split("\n")


def _blocks(blocks: Iterable[Block]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Notes):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += _table(block) + [""]
        elif isinstance(block, Figures):
            for figure in block.figures:
                out += [f"![{figure.alt}]({figure.path})", ""]
        elif isinstance(block, Details):
            out += ["<details>", f"<summary>{html.escape(block.summary)}</summary>", ""]
            out += _blocks(block.blocks)
            out += ["</details>", ""]
        else:
            raise TypeError(f"no markdown for {type(block).__name__}")
    return out


def render_markdown_document(document: Document) -> str:
    lines = [f"# {document.title}", ""] + _blocks(document.lead)
    for section in document.sections:
        lines += [f"## {section.title}", ""] + _blocks(section.blocks)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def render_markdown(report: Report) -> str:
    return render_markdown_document(report_document(report))


__all__ = ["render_markdown", "render_markdown_document"]
