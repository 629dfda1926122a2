"""Plain-text tables as markdown: one renderer for every table madx and its tools print or write.

    >>> print(render_table(["method", "added"], [["madx", "8,257,536"], ["madx-inv", "7,962,624"]], pad=True))
    | method   |     added |
    |:---------|----------:|
    | madx     | 8,257,536 |
    | madx-inv | 7,962,624 |

``align`` holds one letter per column: ``l`` (left), ``r`` (right) or ``c`` (centre); columns it
does not cover are left-aligned for the first and right-aligned for the rest (labels, then numbers).
``pad=True`` pads every column to its widest cell, for terminals and fixed-width files; the
default writes no padding (smaller files, and cells can be edited without re-aligning the rest).
Either way the result is valid GitHub-flavoured markdown: ``|`` in a cell is escaped, and a newline
becomes a space.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

ALIGNMENTS = ("l", "r", "c")
_RULES = {"l": ":---", "r": "---:", "c": ":---:"}


def column_alignment(align: str, column: int) -> str:
    """The alignment of ``column`` under ``align`` (see the module docstring for the default)."""
    if column < len(align):
        return align[column]
    return "l" if column == 0 else "r"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def _pad(text: str, width: int, alignment: str) -> str:
    if alignment == "r":
        return text.rjust(width)
    if alignment == "c":
        return text.center(width)
    return text.ljust(width)


def _rule(alignment: str, width: int) -> str:
    if width <= len(_RULES[alignment]):
        return _RULES[alignment]
    if alignment == "c":
        return ":" + "-" * (width - 2) + ":"
    return ":" + "-" * (width - 1) if alignment == "l" else "-" * (width - 1) + ":"


def render_table(headers: Sequence[object], rows: Iterable[Sequence[object]], align: str = "", *, pad: bool = False) -> str:
    """A markdown table (no trailing newline). Cells are converted with ``str``; every row must have
    as many cells as ``headers``."""
    unknown = sorted(set(align) - set(ALIGNMENTS))
    if unknown:
        raise ValueError(f"align letters must be l, r or c; got {''.join(unknown)!r} in {align!r}")
    header = [_cell(h) for h in headers]
    body = [[_cell(c) for c in row] for row in rows]
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} cells; the table has {len(header)} columns")
    alignments = [column_alignment(align, j) for j in range(len(header))]
    if pad:
        widths = [max([len(header[j]), 3] + [len(row[j]) for row in body]) for j in range(len(header))]
        header = [_pad(text, widths[j], alignments[j]) for j, text in enumerate(header)]
        body = [[_pad(text, widths[j], alignments[j]) for j, text in enumerate(row)] for row in body]
        rule = "|" + "|".join(_rule(a, w + 2) for a, w in zip(alignments, widths)) + "|"
    else:
        rule = "|" + "|".join(_RULES[a] for a in alignments) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


__all__ = ["ALIGNMENTS", "column_alignment", "render_table"]
