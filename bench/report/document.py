"""The report as a document: a title, lead paragraphs and sections of blocks, as plain data.

``layout.py`` builds it from the tables; ``render_md.py`` and ``render_html.py`` render the same
document, so markdown and HTML always say the same thing. Text may hold `code` spans; renderers
escape everything else.

    Document(title, lead=(Paragraph, ...), sections=(Section(title, anchor, blocks), ...))
    blocks: Paragraph, Notes (a bullet list), Table, Figures (a gallery of Figure), Details (collapsed blocks)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

from madx.tables import column_alignment


@dataclass(frozen=True)
class Paragraph:
    text: str
    cls: str = ""  # html class ("lead")
    kind: ClassVar[str] = "paragraph"


@dataclass(frozen=True)
class Notes:
    """A bullet list: a table's legend, warnings, the facts to read first."""

    items: tuple[str, ...]
    cls: str = "notes"  # html class: notes / about / warnings
    kind: ClassVar[str] = "notes"


@dataclass(frozen=True)
class TableCell:
    text: str
    cls: str = ""  # html class: ours / paper / diff pos / diff neg / missing / label / unseen-start ...
    colspan: int = 1


@dataclass(frozen=True)
class Table:
    header: tuple[TableCell, ...]
    rows: tuple[tuple[TableCell, ...], ...]
    group_header: tuple[TableCell, ...] = ()  # html only (markdown marks groups in the header labels)
    row_cls: tuple[str, ...] = ()
    cls: str = ""
    align: str = ""  # one "l"/"r" per column; default: first column left, the rest right (madx.tables)
    kind: ClassVar[str] = "table"

    def alignment(self, column: int) -> str:
        return column_alignment(self.align, column)


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the report directory
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Figures:
    """Images shown side by side (one grid in HTML, one image per paragraph in markdown)."""

    figures: tuple[Figure, ...]
    kind: ClassVar[str] = "figures"


@dataclass(frozen=True)
class Details:
    summary: str
    blocks: tuple["Block", ...]
    kind: ClassVar[str] = "details"


Block = Union[Paragraph, Notes, Table, Figures, Details]


@dataclass(frozen=True)
class Section:
    title: str
    anchor: str  # html id and table-of-contents target
    blocks: tuple[Block, ...]
    short: str = ""  # label in the HTML table of contents (default: the title up to " — ")

    @property
    def toc_label(self) -> str:
        return self.short or self.title.split(" — ")[0]


@dataclass(frozen=True)
class Document:
    title: str
    lead: tuple[Paragraph, ...]
    sections: tuple[Section, ...]


__all__ = ["Block", "Details", "Document", "Figure", "Figures", "Notes", "Paragraph", "Section", "Table", "TableCell"]
