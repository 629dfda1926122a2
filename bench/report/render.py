"""Render a run's report as markdown, self-contained HTML, JSON and a short terminal summary.

The report is first laid out as a small list of blocks (headings, paragraphs, tables, images,
collapsible details); markdown and HTML are two renderings of the same blocks, so they always say
the same thing. Everything is deterministic: the same run directory gives byte-identical markdown and
JSON (no "now" timestamps, sorted keys and rows, fixed float formats). Files are written atomically.

    report = build_report("runs/smoke", out_dir="runs/smoke/report")
    paths = write_report(report, formats=("md", "html", "json"))
    print(terminal_summary(report, paths))
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from madx.atomic import atomic_write_json, atomic_write_text

from bench.report import paper
from bench.report.plots import Heatmap, ner_heatmaps
from bench.report.store import JOB_KINDS, ResultStore, Value, load_store
from bench.report.tables import (
    SUMMARY_ALL,
    SUMMARY_SEEN,
    SUMMARY_UNSEEN,
    Cell,
    ComparisonTable,
    CostRow,
    ParamsTable,
    Tables,
    build_tables,
)

FORMATS = ("md", "html", "json")
FILENAMES = {"md": "report.md", "html": "report.html", "json": "report.json"}
PLOTS_DIR = "plots"
MISSING_TEXT = "—"
JSON_SCHEMA = 1


# ---------------------------------------------------------------------------------------------
# Number formatting (fixed, so output is byte-stable)


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING_TEXT
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def fmt_diff(x: float | None, digits: int = 1) -> str:
    if x is None:
        return MISSING_TEXT
    text = f"{x:+.{digits}f}"
    return text[1:] if float(text) == 0 else text  # "0.0", not "+0.0" / "-0.0"


def fmt_paper(x: float | None) -> str:
    """Paper numbers as printed (one decimal; two where the paper has two, e.g. 20.47)."""
    if x is None:
        return MISSING_TEXT
    return f"{x:.1f}" if abs(round(x, 1) - x) < 1e-9 else f"{x:.2f}"


def fmt_value(v: Value, digits: int = 1) -> str:
    if v.mean is None:
        return MISSING_TEXT
    return f"{fmt(v.mean, digits)} ± {fmt(v.std, digits) if v.std is not None else 'n/a'}"


def fmt_int(x: int | None) -> str:
    return MISSING_TEXT if x is None else f"{x:,}"


def fmt_count(x: int | None) -> str:
    """Parameter counts as the paper prints them: 8.25M (truncated to two decimals)."""
    if x is None:
        return MISSING_TEXT
    return f"{math.floor(x / 1e4) / 100:.2f}M"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return MISSING_TEXT
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_bytes(b: int | None) -> str:
    if b is None:
        return MISSING_TEXT
    if b >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    return f"{b / 2**20:.1f} MiB"


def fmt_rate(x: float | None) -> str:
    return MISSING_TEXT if x is None else f"{x:,.0f}"


# ---------------------------------------------------------------------------------------------
# Document blocks


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""
    short: str = ""  # label in the HTML table of contents


@dataclass(frozen=True)
class Para:
    text: str  # `code` spans allowed
    cls: str = ""


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    cls: str = ""


@dataclass(frozen=True)
class TCell:
    text: str
    cls: str = ""  # html class: ours / paper / diff pos / diff neg / missing / label / unseen-start
    colspan: int = 1


@dataclass(frozen=True)
class Table:
    header: tuple[TCell, ...]
    rows: tuple[tuple[TCell, ...], ...]
    group_header: tuple[TCell, ...] = ()  # html only (markdown marks groups in the header labels)
    row_cls: tuple[str, ...] = ()
    cls: str = ""
    align: str = ""  # one "l"/"r" per column; default: first column left, the rest right

    def alignment(self, column: int) -> str:
        if column < len(self.align):
            return self.align[column]
        return "l" if column == 0 else "r"


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report directory
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Details:
    summary: str
    blocks: tuple[Any, ...]


Block = Heading | Para | Bullets | Table | Image | Details


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class Report:
    run_dir: Path
    out_dir: Path
    store: ResultStore
    tables: Tables
    heatmaps: tuple[Heatmap, ...] = field(default_factory=tuple)

    @property
    def title(self) -> str:
        suite = _suite_name(self.store)
        return f"madx-bench report: {suite}" if suite else f"madx-bench report: {self.run_dir.name}"


def _suite_name(store: ResultStore) -> str | None:
    for mapping, keys in ((store.run_info, ("suite", "suite_name", "name")), (store.suite, ("name", "suite"))):
        for key in keys:
            value = mapping.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, Mapping) and isinstance(value.get("name"), str):
                return value["name"]
    return None


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, plots: bool = True) -> Report:
    """Read the store, build the tables, draw the heatmaps into ``out_dir/plots`` (if ``plots``)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    store = load_store(run_dir)
    tables = build_tables(store)
    heatmaps = ner_heatmaps(tables.ner_f1, out_dir / PLOTS_DIR if plots else None)
    return Report(run_dir, out_dir, store, tables, tuple(heatmaps))


# ---------------------------------------------------------------------------------------------
# Layout: report -> blocks


def _header_label(table: ComparisonTable, column: str) -> str:
    if table.seen and column in table.columns and column not in table.seen:
        return f"{column}†"
    return column


def _col_cls(table: ComparisonTable, column: str) -> str:
    classes = []
    unseen = [c for c in table.columns if c not in table.seen] if table.seen else []
    if unseen and column == unseen[0]:
        classes.append("unseen-start")
    if column == (table.summary_columns[0] if table.summary_columns else None):
        classes.append("summary-start")
    if column in table.summary_columns:
        classes.append("summary")
    return " ".join(classes)


def _diff_cls(diff: float | None) -> str:
    if diff is None:
        return "missing"
    if round(diff, 1) > 0:
        return "diff pos"
    if round(diff, 1) < 0:
        return "diff neg"
    return "diff"


def _range_label(values: Sequence[int]) -> str:
    if not values:
        return MISSING_TEXT
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def _overview(table: ComparisonTable) -> Table:
    columns = table.all_columns
    header = [TCell("method", "label"), TCell("", "label")]
    header += [TCell(_header_label(table, c), _col_cls(table, c)) for c in columns]
    header += [TCell("seeds", "meta")]
    if table.parts_label:
        header += [TCell(table.parts_label, "meta")]
    group: list[TCell] = []
    if table.seen:
        n_seen = sum(c in table.seen for c in table.columns)
        n_unseen = len(table.columns) - n_seen
        group = [TCell("", colspan=2)]
        if n_seen:
            group.append(TCell("seen by XLM-R", "group", n_seen))
        if n_unseen:
            group.append(TCell("unseen", "group unseen-start", n_unseen))
        group.append(TCell("averages over the targets present", "group summary-start", len(table.summary_columns)))
        group.append(TCell("", colspan=2 if table.parts_label else 1))
    rows, row_cls = [], []
    for row in table.rows:
        leaf = [row.cell(c).ours for c in table.columns if not row.cell(c).ours.missing]
        seeds = _range_label([v.n_seeds_min for v in leaf] + [v.n_seeds_max for v in leaf])
        parts = _range_label([v.n_parts for v in leaf])
        ours = [TCell(row.name, "label method"), TCell("ours", "label")]
        ours += [TCell(fmt_value(row.cell(c).ours) + ("‡" if c in table.summary_columns and table.incomplete(row, c) else ""),
                       _join("ours", _col_cls(table, c), _missing(row.cell(c).ours.mean)))
                 for c in columns]
        ours += [TCell(seeds, "meta")] + ([TCell(parts, "meta")] if table.parts_label else [])
        ref = [TCell("", "label method"), TCell("paper", "label")]
        ref += [TCell(_paper_text(table, row, c),
                      _join("paper", _col_cls(table, c), "missing" if row.cell(c).paper is None else ""))
                for c in columns]
        ref += [TCell("", "meta")] + ([TCell("", "meta")] if table.parts_label else [])
        diff = [TCell("", "label method"), TCell("Δ", "label")]
        diff += [TCell(fmt_diff(row.cell(c).diff), _join(_diff_cls(row.cell(c).diff), _col_cls(table, c))) for c in columns]
        diff += [TCell("", "meta")] + ([TCell("", "meta")] if table.parts_label else [])
        rows += [tuple(ours), tuple(ref), tuple(diff)]
        row_cls += ["ours-row first", "paper-row", "diff-row last"]
    return Table(tuple(header), tuple(rows), tuple(group), tuple(row_cls), cls="overview", align="ll")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _join(*classes: str) -> str:
    return " ".join(c for c in classes if c)


def _missing(x: Any) -> str:
    return "missing" if x is None else ""


def _paper_text(table: ComparisonTable, row, column: str) -> str:
    if row.paper_missing is not None:
        return "n/a"
    value = row.cell(column).paper
    # averages the report derives from the paper's columns get the paper's own precision (one decimal)
    return fmt(value, 1) if column in table.summary_columns else fmt_paper(value)


def _detail(table: ComparisonTable) -> Table:
    header = [TCell(h) for h in ("method", "column", "group", "mean", "std", "seeds",
                                 table.parts_label or "cells", "paper", "Δ", "over", "paper note")]
    rows = []
    for row in table.rows:
        for column in table.all_columns:
            cell: Cell = row.cell(column)
            v = cell.ours
            if column in table.summary_columns:
                group = {SUMMARY_SEEN: "seen", SUMMARY_UNSEEN: "unseen", SUMMARY_ALL: "all"}[column]
                over = ", ".join(v.parts)
                parts = _plural(len(v.parts), "target") if not v.missing else MISSING_TEXT
            else:
                group = ("seen" if column in table.seen else "unseen") if table.seen else ""
                over = ", ".join(v.parts) if table.parts_label else ""
                parts = str(v.n_parts) if not v.missing else MISSING_TEXT
            rows.append(tuple(TCell(t) for t in (
                row.name, column, group, fmt(v.mean, 2), fmt(v.std, 2) if v.std is not None else ("n/a" if not v.missing else MISSING_TEXT),
                v.seeds_label() if not v.missing else "0", parts,
                fmt(cell.paper, 2) if column in table.summary_columns else fmt_paper(cell.paper), fmt_diff(cell.diff, 2),
                over, cell.paper_note or "",
            )))
    return Table(tuple(header), tuple(rows), cls="detail", align="lll" + "r" * 7 + "ll")


def _comparison_blocks(table: ComparisonTable) -> list[Block]:
    short = table.title.split(" — ")[0] + {"table3-f1": " F1", "table3-em": " EM"}.get(table.id, "")
    blocks: list[Block] = [Heading(2, table.title, table.id, short), Para(table.caption), _overview(table)]
    legend = ["Cells: ours = mean ± sample std over seeds (n/a: a single seed, or unequal seeds), "
              "paper = the paper's number, Δ = ours − paper in points. — = no result (missing, not 0)."]
    if table.seen:
        legend.append("† unseen by XLM-R (right of Table 2's dashed line).")
    if any(table.incomplete(r, c) for r in table.rows for c in table.summary_columns):
        legend.append("‡ average over fewer targets than the table's columns (some have no result for this method): "
                      "not comparable with the other rows' averages; Δ is still like for like.")
    missing_rows = [f"{r.name}: {r.paper_missing}" for r in table.rows if r.paper_missing]
    if missing_rows:
        legend.append("Paper rows without numbers (n/a): " + "; ".join(missing_rows) + ".")
    summary_notes = [f"`{c}`" for c in table.summary_columns]
    if summary_notes:
        legend.append(f"{', '.join(summary_notes)}: mean over the target columns this method has; the paper column is "
                      "the paper's mean over the same targets (its own avg when all of its columns are present).")
    blocks.append(Bullets(tuple(legend + list(table.notes)), cls="notes"))
    blocks.append(Details(f"{table.title.split(' — ')[0]}: every cell (mean, std, seeds, paper, Δ)", (_detail(table),)))
    return blocks


def _params_blocks(params: ParamsTable) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Table 4 — parameters added per method", "table4")]
    base_text = f"base model: `{params.arch}` ({params.arch_source})" if params.arch else "base model: not named in the run"
    blocks.append(Para(base_text + (f"; base parameters: {fmt_int(params.base_params)}" if params.base_params else "") + "."))
    if params.computed:
        rows = []
        for r in params.rows:
            if r.computed_added is None:
                continue
            ours_pct = math.floor(r.computed_pct_of_paper_base * 100) / 100
            rows.append((
                TCell(r.name, "label method"), TCell(fmt_count(r.computed_added), "ours"), TCell(fmt_int(r.computed_added), "ours"),
                TCell(f"{ours_pct:.2f}", "ours"), TCell(r.paper_params or MISSING_TEXT, "paper"),
                TCell(f"{r.paper_pct:.2f}" if r.paper_pct is not None else MISSING_TEXT, "paper"),
                TCell(fmt_diff(ours_pct - r.paper_pct, 2) if r.paper_pct is not None else MISSING_TEXT,
                      _diff_cls(None if r.paper_pct is None else ours_pct - r.paper_pct)),
                TCell(fmt_int(r.computed_added_with_bias)), TCell(fmt(r.computed_pct_of_base, 2)),
            ))
        header = tuple(TCell(h) for h in ("method", "added", "added (exact)", "% of 270M", "paper", "paper %", "Δ %",
                                          "added + biases", "% of counted base"))
        blocks.append(Table(header, tuple(rows), cls="params"))
    if params.recorded:
        def spread(sp) -> str:
            if sp.low is None:
                return MISSING_TEXT
            return fmt_int(sp.low) if sp.low == sp.high else f"{fmt_int(sp.low)}–{fmt_int(sp.high)}"

        rows = []
        for r in params.recorded:
            pct = f"{r.added / r.total_params.high * 100:.2f}" if r.added is not None and r.total_params.high else MISSING_TEXT
            p = paper.added_parameters(r.method)
            rows.append((TCell(r.name, "label method"), TCell(r.task or MISSING_TEXT), TCell(spread(r.mlm_trainable)),
                         TCell(spread(r.task_trainable)), TCell(fmt_int(r.added), "ours"), TCell(spread(r.total_params)),
                         TCell(pct, "ours"), TCell(p["params"] if p else MISSING_TEXT, "paper"),
                         TCell(f"{p['pct']:.2f}" if p else MISSING_TEXT, "paper")))
        header = tuple(TCell(h) for h in ("method", "task", "trainable, MLM job", "trainable, task job", "added",
                                          "total (task model)", "% of total", "paper", "paper %"))
        blocks.append(Para("Recorded by the runs:"))
        blocks.append(Table(header, tuple(rows), cls="params", align="ll"))
    blocks.append(Bullets(params.notes, cls="notes"))
    return blocks


def _cost_table(rows: Sequence[CostRow], with_missing: bool) -> Table:
    header = ["jobs", "n", "tokens", "wall time", "device-hours", "tokens/s", "peak memory", "devices"]
    if with_missing:
        header.append("deps without result")
    body = []
    for r in rows:
        cells = [TCell(r.label, "label"), TCell(str(r.n_jobs)), TCell(fmt_int(r.tokens)), TCell(fmt_seconds(r.wall_s)),
                 TCell(fmt(r.device_hours, 4)), TCell(fmt_rate(r.tokens_per_s)), TCell(fmt_bytes(r.peak_memory_bytes)),
                 TCell(", ".join(r.devices) or MISSING_TEXT)]
        if with_missing:
            cells.append(TCell(str(r.n_deps_missing)))
        body.append(tuple(cells))
    return Table(tuple(TCell(h) for h in header), tuple(body), cls="cost", align="l" + "r" * 6 + "lr")


def _cost_blocks(tables: Tables) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Cost", "cost"), Para("Per job kind (sums over finished jobs; peak memory is the maximum):"),
                           _cost_table(tables.cost_by_kind, False)]
    if tables.cost_by_table:
        blocks += [Para("Per table: its eval jobs and every job they depend on (MLM and task jobs shared by several "
                        "tables are counted in each):"), _cost_table(tables.cost_by_table, True)]
    incomplete = sum(r.n_without_cost for r in tables.cost_by_kind[-1:])
    notes = ["tokens/s = total tokens / total wall time."]
    if incomplete:
        notes.append(f"{incomplete} job(s) lack some cost fields; their share is missing from those sums.")
    blocks.append(Bullets(tuple(notes), cls="notes"))
    return blocks


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for key in sorted(mapping, key=str):
        value = mapping[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out += _flatten(value, name + ".")
        elif isinstance(value, (list, tuple)):
            out.append((name, "; ".join(str(v) for v in value)))
        else:
            out.append((name, str(value)))
    return out


def _provenance_blocks(report: Report) -> list[Block]:
    prov = report.tables.provenance
    blocks: list[Block] = [Heading(2, "Provenance", "provenance")]
    run_rows = [(k, v) for k, v in _flatten(prov.run_info) if not k.startswith(("notes", "note"))]
    if run_rows:
        blocks.append(Para("`run.json`:"))
        blocks.append(Table((TCell("field"), TCell("value")), tuple((TCell(k, "label"), TCell(v, "mono")) for k, v in run_rows),
                            cls="kv", align="ll"))
    else:
        blocks.append(Para("No `run.json` in the run directory."))
    rows = []
    for label, counter in (("git revision", prov.git_revisions), ("hardware", prov.hardware), ("device", prov.devices),
                           ("worker", prov.workers)):
        for value, n in counter.items():
            rows.append((TCell(label, "label"), TCell(value, "mono"), TCell(str(n))))
    for pkg, versions in prov.versions.items():
        for version, n in versions.items():
            rows.append((TCell(pkg, "label"), TCell(version, "mono"), TCell(str(n))))
    if rows:
        blocks.append(Para("Recorded by the results (value, number of jobs):"))
        blocks.append(Table((TCell("what"), TCell("value"), TCell("jobs")), tuple(rows), cls="kv", align="llr"))
    if prov.finished_first:
        blocks.append(Para(f"Jobs finished between {prov.finished_first} and {prov.finished_last}."))
    return blocks


def _status_line(store: ResultStore) -> str:
    kinds = Counter(r.kind for r in store.results)
    order = sorted(kinds, key=lambda k: (JOB_KINDS.index(k), k) if k in JOB_KINDS else (len(JOB_KINDS), k))
    parts = [f"{store.status.finished} finished job(s)"
             + (f" ({', '.join(f'{k} {kinds[k]}' for k in order)})" if kinds else "")]
    if store.status.failed:
        parts.append(f"{len(store.status.failed)} failed (error.json)")
    if store.status.claimed:
        parts.append(f"{len(store.status.claimed)} claimed, not finished")
    if store.problems:
        parts.append(f"{len(store.problems)} unreadable file(s) skipped")
    return "; ".join(parts) + "."


def _warning_items(report: Report) -> list[str]:
    store, tables = report.store, report.tables
    items = [f"Skipped `{p.path}`: {p.reason}" for p in store.problems]
    items += [f"Job `{j.name}` failed (`jobs/{j.id}/error.json`)" + (f": {j.error}" if j.error else "")
              for j in store.status.failed]
    items += [f"Job `{j}` is claimed but has no result yet (running, or its worker died)" for j in store.status.claimed]
    mixed = tables.provenance.mixed
    if mixed:
        items.append("Results differ in " + ", ".join(mixed) + ": they were not all produced by the same code / environment.")
    items += [f"Cell {'/'.join(w.key)}: {w.message}" for w in tables.cell_warnings]
    scores = [v.mean for ec in (tables.ner_f1, tables.qa_f1) for v in ec.cells.values() if v.mean is not None]
    if scores and max(scores) <= 1.0:
        items.append("Every F1 is at most 1: the results look like fractions, but the report (and the paper) "
                     "use percent (0–100).")
    return items


def report_blocks(report: Report) -> list[Block]:
    store, tables = report.store, report.tables
    blocks: list[Block] = [Heading(1, report.title)]
    revision = _first(store.run_info, ("git_revision", "revision", "git")) or _single(tables.provenance.git_revisions)
    facts = [f"run directory `{report.run_dir.name}`"]
    if revision:
        facts.append(f"git `{revision}`")
    started = _first(store.run_info, ("started_at", "start_date", "started", "date"))
    if started:
        facts.append(f"started {started}")
    blocks.append(Para(" · ".join(facts), cls="lead"))
    blocks.append(Para(_status_line(store), cls="lead"))

    about = [paper.PAPER_SETTING]
    arch = tables.params.arch
    if arch and arch != "xlm-roberta-base":
        about.append(f"This run's base model is `{arch}`, not XLM-R base: compare trends and differences between "
                     "methods with the paper, not absolute numbers.")
    about += [f"Note from the run: {n}" for n in tables.notes]
    about.append("Missing numbers are shown as — (no result), never as 0. Seeds: how many seeds each mean is over "
                 "(a range when cells differ).")
    blocks += [Heading(2, "Read this first", "about"), Bullets(tuple(about), cls="about")]
    warnings = _warning_items(report)
    if warnings:
        blocks += [Heading(2, "Warnings", "warnings"), Bullets(tuple(warnings), cls="warnings")]
    if not tables.comparisons:
        blocks.append(Para("No evaluation results yet: no comparison tables."))
    for table in tables.comparisons:
        blocks += _comparison_blocks(table)
    blocks += _params_blocks(tables.params)
    if report.heatmaps:
        blocks += [Heading(2, "Heatmaps", "heatmaps"),
                   Para("Source language (rows) × target language (columns). Hatched = no result. Dashed lines: "
                        "seen | unseen by XLM-R. F1 heatmaps share one colour scale. Differences are MAD-X minus the "
                        "baseline in F1 points (the paper's \"relative F1 improvement\" figures are such "
                        "differences).")]
        for h in report.heatmaps:
            if h.path is not None:
                blocks.append(Image(f"{PLOTS_DIR}/{h.filename}", h.title.replace("\n", " ")))
    blocks += _cost_blocks(tables)
    blocks += _provenance_blocks(report)
    return blocks


def _first(mapping: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _single(counter: Mapping[str, int]) -> str | None:
    return next(iter(counter)) if len(counter) == 1 else None


# ---------------------------------------------------------------------------------------------
# Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(table: Table) -> list[str]:
    header = [_md_escape(c.text) for c in table.header]
    rule = "|" + "|".join(":---" if table.alignment(i) == "l" else "---:" for i in range(len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    for row in table.rows:
        lines.append("| " + " | ".join(_md_escape(c.text) for c in row) + " |")
    return lines


def _md_blocks(blocks: Iterable[Block]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += _md_table(block) + [""]
        elif isinstance(block, Image):
            out += [f"![{block.alt}]({block.path})", ""]
        elif isinstance(block, Details):
            out += ["<details>", f"<summary>{html.escape(block.summary)}</summary>", ""]
            out += _md_blocks(block.blocks)
            out += ["</details>", ""]
    return out


def render_markdown(report: Report) -> str:
    lines = _md_blocks(report_blocks(report))
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

CSS = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --soft: #f6f8fa; --pos: #1a7f37; --neg: #cf222e; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       max-width: 1680px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 8px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p.lead { color: var(--muted); margin: 2px 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
code { background: var(--soft); padding: 1px 4px; border-radius: 4px; }
nav.toc { margin: 14px 0 0; font-size: 13px; }
nav.toc a { margin-right: 14px; color: #0969da; text-decoration: none; }
ul.notes, ul.about { color: var(--muted); font-size: 13px; padding-left: 20px; }
ul.about { color: var(--ink); font-size: 14px; }
ul.warnings { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 6px; padding: 10px 12px 10px 30px; }
.scroll { overflow-x: auto; margin: 10px 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 12.5px; }
th, td { padding: 3px 7px; border-bottom: 1px solid #eaeef2; text-align: right; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; border-bottom: 1px solid var(--line); }
th.group { text-align: center; font-weight: 500; color: var(--muted); font-size: 11.5px; }
td.label, th.label, td.l, th.l { text-align: left; }
td.method { font-weight: 600; }
td.meta, th.meta { color: var(--muted); }
td.paper { color: var(--muted); }
span.sd { font-size: 10.5px; font-weight: 400; color: var(--muted); }
td.missing { color: #8c959f; }
td.diff.pos { color: var(--pos); }
td.diff.neg { color: var(--neg); }
.unseen-start { border-left: 2px dashed #8c959f; }
.summary-start { border-left: 1px solid var(--line); }
td.summary, th.summary { background: #fbfbfc; }
tr.last td { border-bottom: 1px solid var(--line); }
tr.ours-row td.ours { font-weight: 600; }
table.kv td.mono { white-space: normal; word-break: break-all; }
details { margin: 6px 0 14px; }
details summary { cursor: pointer; color: #0969da; font-size: 13px; }
.gallery { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; margin: 12px 0; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; border-radius: 6px; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _html_table(table: Table) -> list[str]:
    out = [f'<div class="scroll"><table class="{table.cls}">', "<thead>"]

    def cell(tag: str, c: TCell, column: int | None) -> str:
        classes = _join(c.cls, "l" if column is not None and table.alignment(column) == "l" else "")
        attrs = (f' class="{classes}"' if classes else "") + (f' colspan="{c.colspan}"' if c.colspan > 1 else "")
        text = _inline(c.text)
        if " ± " in c.text and tag == "td":  # the std in a smaller, muted font keeps wide tables narrow
            mean, std = text.split(" ± ", 1)
            mark = "‡" if std.endswith("‡") else ""
            text = f'{mean}<span class="sd"> ±{std.rstrip("‡")}</span>{mark}'
        return f"<{tag}{attrs}>{text}</{tag}>"

    if table.group_header:
        out.append("<tr>" + "".join(cell("th", c, None) for c in table.group_header) + "</tr>")
    out.append("<tr>" + "".join(cell("th", c, j) for j, c in enumerate(table.header)) + "</tr>")
    out.append("</thead><tbody>")
    for i, row in enumerate(table.rows):
        cls = f' class="{table.row_cls[i]}"' if i < len(table.row_cls) and table.row_cls[i] else ""
        out.append(f"<tr{cls}>" + "".join(cell("td", c, j) for j, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _html_blocks(blocks: Iterable[Block], images: Mapping[str, bytes]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{block.anchor}"' if block.anchor else ""
            out.append(f"<h{block.level}{anchor}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            cls = f' class="{block.cls}"' if block.cls else ""
            out.append(f"<p{cls}>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            cls = f' class="{block.cls}"' if block.cls else ""
            out.append(f"<ul{cls}>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            out += _html_table(block)
        elif isinstance(block, Image):
            data = images.get(block.path)
            src = f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}" if data else html.escape(block.path)
            caption = f"<figcaption>{_inline(block.caption)}</figcaption>" if block.caption else ""
            figure = f'<figure><img src="{src}" alt="{html.escape(block.alt)}">{caption}</figure>'
            if out and out[-1].startswith('<div class="gallery">'):  # consecutive images share one grid
                out[-1] = out[-1][: -len("</div>")] + figure + "</div>"
            else:
                out.append(f'<div class="gallery">{figure}</div>')
        elif isinstance(block, Details):
            out.append(f"<details><summary>{_inline(block.summary)}</summary>")
            out += _html_blocks(block.blocks, images)
            out.append("</details>")
    return out


def render_html(report: Report) -> str:
    """One self-contained page: the heatmap PNGs are embedded as base64 data URIs."""
    blocks = report_blocks(report)
    images = {}
    for block in blocks:
        if isinstance(block, Image):
            path = report.out_dir / block.path
            if path.is_file():
                images[block.path] = path.read_bytes()
    toc = [(b.anchor, b.short or b.text.split(" — ")[0]) for b in blocks
           if isinstance(b, Heading) and b.level == 2 and b.anchor]
    body = _html_blocks(blocks[:1], images)
    body += _html_blocks(blocks[1:3], images)
    body.append('<nav class="toc">' + "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in toc) + "</nav>")
    body += _html_blocks(blocks[3:], images)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(report.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# ---------------------------------------------------------------------------------------------
# JSON


def _value_json(v: Value) -> dict[str, Any]:
    return {
        "mean": v.mean, "std": v.std, "n_seeds_min": v.n_seeds_min, "n_seeds_max": v.n_seeds_max,
        "n_parts": v.n_parts, "parts": list(v.parts),
        "per_seed": None if v.per_seed is None else {str(k): x for k, x in v.per_seed.items()},
    }


def _nan_to_none(array) -> list[list[float | None]]:
    return [[None if not math.isfinite(x) else float(x) for x in row] for row in array.tolist()]


def report_json(report: Report) -> dict[str, Any]:
    t = report.tables
    comparisons = {}
    for table in t.comparisons:
        comparisons[table.id] = {
            "title": table.title, "paper_table": table.paper_table, "metric": table.metric,
            "columns": list(table.columns), "summary_columns": list(table.summary_columns),
            "seen": sorted(table.seen), "parts": table.parts_label, "notes": list(table.notes),
            "rows": [{
                "method": r.method, "name": r.name, "paper_missing": r.paper_missing,
                "cells": {c: {**_value_json(r.cell(c).ours), "paper": r.cell(c).paper, "paper_note": r.cell(c).paper_note,
                              "diff": r.cell(c).diff} for c in table.all_columns},
            } for r in table.rows],
        }
    cells = []
    for name, ec in (("f1", t.ner_f1), ("f1", t.qa_f1), ("exact_match", t.qa_em)):
        for key in ec.keys():
            task, method, source, target = key
            cells.append({"task": task, "method": method, "source": source, "target": target, "metric": name,
                          **_value_json(ec.cells[key])})
    params = t.params

    def spread(s):
        return {"min": s.low, "max": s.high, "n_jobs": s.n_jobs}

    return {
        "schema": JSON_SCHEMA,
        "title": report.title,
        "run_dir": report.run_dir.name,
        "paper_setting": paper.PAPER_SETTING,
        "notes": list(t.notes),
        "status": {"finished": report.store.status.finished,
                   "failed": [{"id": j.id, "name": j.name, "error": j.error} for j in report.store.status.failed],
                   "claimed": list(report.store.status.claimed),
                   "by_kind": dict(sorted(Counter(r.kind for r in report.store.results).items()))},
        "problems": [{"path": p.path, "reason": p.reason} for p in report.store.problems],
        "warnings": _warning_items(report),
        "tables": comparisons,
        "cells": cells,
        "table4": {
            "arch": params.arch, "arch_source": params.arch_source, "computed": params.computed,
            "base_params": params.base_params, "notes": list(params.notes),
            "rows": [{"method": r.method, "name": r.name, "computed_added": r.computed_added,
                      "computed_added_with_bias": r.computed_added_with_bias,
                      "computed_pct_of_paper_base": r.computed_pct_of_paper_base, "computed_pct_of_base": r.computed_pct_of_base,
                      "paper_params": r.paper_params, "paper_params_count": r.paper_params_count, "paper_pct": r.paper_pct,
                      "added_diff": r.added_diff} for r in params.rows],
            "recorded": [{"method": r.method, "task": r.task, "added": r.added, "mlm_trainable": spread(r.mlm_trainable),
                          "task_trainable": spread(r.task_trainable), "total_params": spread(r.total_params)}
                         for r in params.recorded],
        },
        "cost": {key: [{"label": r.label, "n_jobs": r.n_jobs, "tokens": r.tokens, "wall_s": r.wall_s,
                        "device_hours": r.device_hours, "tokens_per_s": r.tokens_per_s,
                        "peak_memory_bytes": r.peak_memory_bytes, "devices": list(r.devices),
                        "n_without_cost": r.n_without_cost, "n_deps_missing": r.n_deps_missing} for r in rows]
                 for key, rows in (("by_kind", t.cost_by_kind), ("by_table", t.cost_by_table))},
        "provenance": {
            "run": t.provenance.run_info, "git_revisions": t.provenance.git_revisions, "hardware": t.provenance.hardware,
            "devices": t.provenance.devices, "workers": t.provenance.workers, "versions": t.provenance.versions, "mixed": t.provenance.mixed,
            "finished_first": t.provenance.finished_first, "finished_last": t.provenance.finished_last,
        },
        "heatmaps": [{"kind": h.kind, "method": h.method, "baseline": h.baseline, "title": h.title,
                      "paper_figure": h.paper_figure, "file": f"{PLOTS_DIR}/{h.filename}" if h.path else None,
                      "sources": list(h.sources), "targets": list(h.targets), "values": _nan_to_none(h.array)}
                     for h in report.heatmaps],
    }


# ---------------------------------------------------------------------------------------------
# Terminal summary and writing


def terminal_summary(report: Report, written: Mapping[str, Path] | None = None) -> str:
    t = report.tables
    lines = [report.title, f"  {_status_line(report.store)}"]
    for problem in report.store.problems:
        lines.append(f"  skipped {problem.path}: {problem.reason}")
    for table in t.comparisons:
        lines.append(f"  {table.title}")
        for row in table.rows:
            cell = row.cell(SUMMARY_ALL)
            v = cell.ours
            targets = _plural(len(v.parts), "target")
            paper_text = f"paper {fmt(cell.paper, 1)}, Δ {fmt_diff(cell.diff)}" if cell.paper is not None else "paper n/a"
            lines.append(f"    {row.name:<17} avg {fmt_value(v):>13} over {targets:<10} ({paper_text})")
    total = t.cost_by_kind[-1] if t.cost_by_kind else None
    if total and total.n_jobs:
        lines.append(f"  cost: {fmt_int(total.tokens)} tokens, {fmt_seconds(total.wall_s)}, "
                     f"{fmt(total.device_hours, 4)} device-hours")
    for fmt_name, path in sorted((written or {}).items()):
        lines.append(f"  wrote {path}")
    return "\n".join(lines)


def write_report(report: Report, formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Write the requested formats into ``report.out_dir`` (atomically); return format -> path."""
    written: dict[str, Path] = {}
    for name in sorted(set(formats), key=FORMATS.index):
        path = report.out_dir / FILENAMES[name]
        if name == "md":
            atomic_write_text(path, render_markdown(report))
        elif name == "html":
            atomic_write_text(path, render_html(report))
        elif name == "json":
            atomic_write_json(path, report_json(report))
        else:
            raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
        _readable(path)
        written[name] = path
    return written


def _readable(path: Path) -> None:
    """atomic_write's temp files are created 0600; a report is for sharing, so give it the usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


__all__ = [
    "FILENAMES",
    "FORMATS",
    "Report",
    "build_report",
    "render_html",
    "render_markdown",
    "report_blocks",
    "report_json",
    "terminal_summary",
    "write_report",
]
