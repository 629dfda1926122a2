"""Lay a report out as a document (``document.py``): what each section says, in which order.

Every renderer reads the same document: markdown and HTML say the same thing, and the JSON and
terminal summary share the status line and the warnings defined here. Deterministic: no "now"
timestamps, sorted rows, fixed number formats (``format.py``).
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from bench.report import paper
from bench.report.build import PLOTS_DIR, Report
from bench.report.document import (Block, Details, Document, Figure, Figures, Notes, Paragraph, Section, Table,
                                   TableCell)
from bench.report.format import (MISSING_TEXT, fmt, fmt_bytes, fmt_count, fmt_diff, fmt_int, fmt_paper, fmt_rate,
                                 fmt_seconds, fmt_value, plural)
from bench.report.load import JOB_KINDS, ResultStore
from bench.report.tables import (SUMMARY_ALL, SUMMARY_SEEN, SUMMARY_UNSEEN, Cell, ComparisonTable, CostRow,
                                 ParamsTable, Tables)
from bench.results import RunInfo


# ---------------------------------------------------------------------------------------------
# Comparison tables (2, 3, 5) and Table 4


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
    header = [TableCell("method", "label"), TableCell("", "label")]
    header += [TableCell(_header_label(table, c), _col_cls(table, c)) for c in columns]
    header += [TableCell("seeds", "meta")]
    if table.parts_label:
        header += [TableCell(table.parts_label, "meta")]
    group: list[TableCell] = []
    if table.seen:
        n_seen = sum(c in table.seen for c in table.columns)
        n_unseen = len(table.columns) - n_seen
        group = [TableCell("", colspan=2)]
        if n_seen:
            group.append(TableCell("seen by XLM-R", "group", n_seen))
        if n_unseen:
            group.append(TableCell("unseen", "group unseen-start", n_unseen))
        group.append(TableCell("averages over the targets present", "group summary-start", len(table.summary_columns)))
        group.append(TableCell("", colspan=2 if table.parts_label else 1))
    rows, row_cls = [], []
    for row in table.rows:
        leaf = [row.cell(c).ours for c in table.columns if not row.cell(c).ours.missing]
        seeds = _range_label([v.n_seeds_min for v in leaf] + [v.n_seeds_max for v in leaf])
        parts = _range_label([v.n_parts for v in leaf])
        ours = [TableCell(row.name, "label method"), TableCell("ours", "label")]
        ours += [TableCell(fmt_value(row.cell(c).ours) + ("‡" if c in table.summary_columns and table.incomplete(row, c) else ""),
                       _join("ours", _col_cls(table, c), _missing(row.cell(c).ours.mean)))
                 for c in columns]
        ours += [TableCell(seeds, "meta")] + ([TableCell(parts, "meta")] if table.parts_label else [])
        ref = [TableCell("", "label method"), TableCell("paper", "label")]
        ref += [TableCell(_paper_text(table, row, c),
                      _join("paper", _col_cls(table, c), "missing" if row.cell(c).paper is None else ""))
                for c in columns]
        ref += [TableCell("", "meta")] + ([TableCell("", "meta")] if table.parts_label else [])
        diff = [TableCell("", "label method"), TableCell("Δ", "label")]
        diff += [TableCell(fmt_diff(row.cell(c).diff), _join(_diff_cls(row.cell(c).diff), _col_cls(table, c))) for c in columns]
        diff += [TableCell("", "meta")] + ([TableCell("", "meta")] if table.parts_label else [])
        rows += [tuple(ours), tuple(ref), tuple(diff)]
        row_cls += ["ours-row first", "paper-row", "diff-row last"]
    return Table(tuple(header), tuple(rows), tuple(group), tuple(row_cls), cls="overview", align="ll")


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
    header = [TableCell(h) for h in ("method", "column", "group", "mean", "std", "seeds",
                                 table.parts_label or "cells", "paper", "Δ", "over", "paper note")]
    rows = []
    for row in table.rows:
        for column in table.all_columns:
            cell: Cell = row.cell(column)
            v = cell.ours
            if column in table.summary_columns:
                group = {SUMMARY_SEEN: "seen", SUMMARY_UNSEEN: "unseen", SUMMARY_ALL: "all"}[column]
                over = ", ".join(v.parts)
                parts = plural(len(v.parts), "target") if not v.missing else MISSING_TEXT
            else:
                group = ("seen" if column in table.seen else "unseen") if table.seen else ""
                over = ", ".join(v.parts) if table.parts_label else ""
                parts = str(v.n_parts) if not v.missing else MISSING_TEXT
            rows.append(tuple(TableCell(t) for t in (
                row.name, column, group, fmt(v.mean, 2), fmt(v.std, 2) if v.std is not None else ("n/a" if not v.missing else MISSING_TEXT),
                v.seeds_label() if not v.missing else "0", parts,
                fmt(cell.paper, 2) if column in table.summary_columns else fmt_paper(cell.paper), fmt_diff(cell.diff, 2),
                over, cell.paper_note or "",
            )))
    return Table(tuple(header), tuple(rows), cls="detail", align="lll" + "r" * 7 + "ll")


def _comparison_section(table: ComparisonTable) -> Section:
    short = table.title.split(" — ")[0] + {"table3-f1": " F1", "table3-em": " EM"}.get(table.id, "")
    blocks: list[Block] = [Paragraph(table.caption), _overview(table)]
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
    blocks.append(Notes(tuple(legend + list(table.notes))))
    blocks.append(Details(f"{table.title.split(' — ')[0]}: every cell (mean, std, seeds, paper, Δ)", (_detail(table),)))
    return Section(table.title, table.id, tuple(blocks), short)


def _params_section(params: ParamsTable) -> Section:
    blocks: list[Block] = []
    base_text = f"base model: `{params.arch}` ({params.arch_source})" if params.arch else "base model: not named in the run"
    blocks.append(Paragraph(base_text + (f"; base parameters: {fmt_int(params.base_params)}" if params.base_params else "") + "."))
    if params.computed:
        rows = []
        for r in params.rows:
            if r.computed_added is None:
                continue
            ours_pct = math.floor(r.computed_pct_of_paper_base * 100) / 100
            rows.append((
                TableCell(r.name, "label method"), TableCell(fmt_count(r.computed_added), "ours"), TableCell(fmt_int(r.computed_added), "ours"),
                TableCell(f"{ours_pct:.2f}", "ours"), TableCell(r.paper_params or MISSING_TEXT, "paper"),
                TableCell(f"{r.paper_pct:.2f}" if r.paper_pct is not None else MISSING_TEXT, "paper"),
                TableCell(fmt_diff(ours_pct - r.paper_pct, 2) if r.paper_pct is not None else MISSING_TEXT,
                      _diff_cls(None if r.paper_pct is None else ours_pct - r.paper_pct)),
                TableCell(fmt_int(r.computed_added_with_bias)), TableCell(fmt(r.computed_pct_of_base, 2)),
            ))
        header = tuple(TableCell(h) for h in ("method", "added", "added (exact)", "% of 270M", "paper", "paper %", "Δ %",
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
            rows.append((TableCell(r.name, "label method"), TableCell(r.task or MISSING_TEXT), TableCell(spread(r.mlm_trainable)),
                         TableCell(spread(r.task_trainable)), TableCell(fmt_int(r.added), "ours"), TableCell(spread(r.total_params)),
                         TableCell(pct, "ours"), TableCell(p["params"] if p else MISSING_TEXT, "paper"),
                         TableCell(f"{p['pct']:.2f}" if p else MISSING_TEXT, "paper")))
        header = tuple(TableCell(h) for h in ("method", "task", "trainable, MLM job", "trainable, task job", "added",
                                          "total (task model)", "% of total", "paper", "paper %"))
        blocks.append(Paragraph("Recorded by the runs:"))
        blocks.append(Table(header, tuple(rows), cls="params", align="ll"))
    blocks.append(Notes(params.notes))
    return Section("Table 4 — parameters added per method", "table4", tuple(blocks))


def _cost_table(rows: Sequence[CostRow], with_missing: bool) -> Table:
    header = ["jobs", "n", "tokens", "wall time", "device-hours", "tokens/s", "peak memory", "devices"]
    if with_missing:
        header.append("deps without result")
    body = []
    for r in rows:
        cells = [TableCell(r.label, "label"), TableCell(str(r.n_jobs)), TableCell(fmt_int(r.tokens)), TableCell(fmt_seconds(r.wall_s)),
                 TableCell(fmt(r.device_hours, 4)), TableCell(fmt_rate(r.tokens_per_s)), TableCell(fmt_bytes(r.peak_memory_bytes)),
                 TableCell(", ".join(r.devices) or MISSING_TEXT)]
        if with_missing:
            cells.append(TableCell(str(r.n_deps_missing)))
        body.append(tuple(cells))
    return Table(tuple(TableCell(h) for h in header), tuple(body), cls="cost", align="l" + "r" * 6 + "lr")


# ---------------------------------------------------------------------------------------------
# Cost and provenance


def _cost_section(tables: Tables) -> Section:
    blocks: list[Block] = [Paragraph("Per job kind (sums over finished jobs; peak memory is the maximum):"),
                           _cost_table(tables.cost_by_kind, False)]
    if tables.cost_by_table:
        blocks += [Paragraph("Per table: its eval jobs and every job they depend on (MLM and task jobs shared by several "
                             "tables are counted in each):"), _cost_table(tables.cost_by_table, True)]
    incomplete = sum(r.n_without_cost for r in tables.cost_by_kind[-1:])
    notes = ["tokens/s = total tokens / total wall time."]
    if incomplete:
        notes.append(f"{incomplete} job(s) lack some cost fields; their share is missing from those sums.")
    blocks.append(Notes(tuple(notes)))
    return Section("Cost", "cost", tuple(blocks))


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, text) rows of a nested mapping, sorted by key; None and empty values left out."""
    out = []
    for key in sorted(mapping, key=str):
        value = mapping[key]
        name = f"{prefix}{key}"
        if value is None or (isinstance(value, (Mapping, list, tuple, str)) and not value):
            continue
        if isinstance(value, Mapping):
            out += _flatten(value, name + ".")
        elif isinstance(value, (list, tuple)):
            out.append((name, "; ".join(str(v) for v in value)))
        else:
            out.append((name, str(value)))
    return out


def run_rows(run: RunInfo) -> list[tuple[str, str]]:
    """run.json as (field, value) rows; the creating worker's provenance without a prefix."""
    fields = {"suite": run.suite, "suite_file": run.suite_file, "suite_sha256": run.suite_sha256, "created": run.created,
              "command": shlex.join(run.command), "model": run.model, **asdict(run.provenance)}
    return _flatten(fields)


def _provenance_section(report: Report) -> Section:
    store, prov = report.store, report.tables.provenance
    blocks: list[Block] = []
    if prov.run is not None:
        upgraded = "run.json" in store.upgraded
        note = " (result schema 1, read through `bench.results.upgrade_run_v1`)" if upgraded else ""
        blocks.append(Paragraph(f"`run.json`{note}:"))
        blocks.append(Table((TableCell("field"), TableCell("value")),
                            tuple((TableCell(k, "label"), TableCell(v, "mono")) for k, v in run_rows(prov.run)),
                            cls="kv", align="ll"))
    else:
        blocks.append(Paragraph("No readable `run.json` in the run directory."))
    rows = []
    for label, counter in (("git revision", prov.code_versions), ("madx version", prov.madx_versions),
                           ("hardware", prov.hardware), ("device", prov.devices), ("worker", prov.workers)):
        for value, n in counter.items():
            rows.append((TableCell(label, "label"), TableCell(value, "mono"), TableCell(str(n))))
    for pkg, versions in prov.versions.items():
        for version, n in versions.items():
            rows.append((TableCell(pkg, "label"), TableCell(version, "mono"), TableCell(str(n))))
    if rows:
        blocks.append(Paragraph("Recorded by the results (value, number of jobs):"))
        blocks.append(Table((TableCell("what"), TableCell("value"), TableCell("jobs")), tuple(rows), cls="kv", align="llr"))
    old = [p for p in store.upgraded if p.startswith("jobs/")]
    if old:
        blocks.append(Paragraph(f"{plural(len(old), 'result file')} in result schema 1 (written before results recorded "
                                "their provenance) were read through `bench.results.upgrade_v1`: they record no code "
                                "version, package versions or hardware."))
    if prov.unrecorded and store.results:
        if prov.code_versions:
            blocks.append(Paragraph(f"The check for mixed code versions covers the {len(store.results) - prov.unrecorded} "
                                    f"job(s) that record a git revision, not the other {prov.unrecorded}."))
        else:
            blocks.append(Paragraph("No result records a git revision: mixed code versions cannot be detected."))
    if prov.finished_first:
        blocks.append(Paragraph(f"Jobs finished between {prov.finished_first} and {prov.finished_last}."))
    return Section("Provenance", "provenance", tuple(blocks))


# ---------------------------------------------------------------------------------------------
# Status and warnings (shared with the JSON and the terminal summary)


def status_line(store: ResultStore) -> str:
    kinds = Counter(r.job.kind for r in store.results)
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


def warning_items(report: Report) -> list[str]:
    store, tables = report.store, report.tables
    items = [f"Skipped `{p.path}`: {p.reason}" for p in store.problems]
    items += [f"Job `{j.name}` failed (`jobs/{j.id}/error.json`)" + (f": {j.error}" if j.error else "")
              for j in store.status.failed]
    items += [f"Job `{j}` is claimed but has no result yet (running, or its worker died)" for j in store.status.claimed]
    mixed = tables.provenance.mixed
    if mixed:
        items.append("Results differ in " + ", ".join(mixed)
                     + ": they were not all produced by the same code / environment.")
    items += [f"Cell {'/'.join(w.key)}: {w.message}" for w in tables.cell_warnings]
    scores = [v.mean for ec in (tables.ner_f1, tables.qa_f1) for v in ec.cells.values() if v.mean is not None]
    if scores and max(scores) <= 1.0:
        items.append("Every F1 is at most 1: the results look like fractions, but the report (and the paper) "
                     "use percent (0–100).")
    return items


# ---------------------------------------------------------------------------------------------
# The document


def _single(counter: Mapping[str, int]) -> str | None:
    return next(iter(counter)) if len(counter) == 1 else None


def report_document(report: Report) -> Document:
    store, tables = report.store, report.tables
    run = store.run
    revision = (run.provenance.code_version if run is not None else None) or _single(tables.provenance.code_versions)
    facts = [f"run directory `{report.run_dir.name}`"]
    if revision:
        facts.append(f"git `{revision}`")
    if run is not None and run.created:
        facts.append(f"started {run.created}")
    lead = (Paragraph(" · ".join(facts), cls="lead"), Paragraph(status_line(store), cls="lead"))

    about = [paper.PAPER_SETTING]
    arch = tables.params.arch
    if arch and arch != "xlm-roberta-base":
        about.append(f"This run's base model is `{arch}`, not XLM-R base: compare trends and differences between "
                     "methods with the paper, not absolute numbers.")
    about += [f"Note from the run: {n}" for n in tables.notes]
    about.append("Missing numbers are shown as — (no result), never as 0. Seeds: how many seeds each mean is over "
                 "(a range when cells differ).")
    sections = [Section("Read this first", "about", (Notes(tuple(about), cls="about"),))]
    warnings = warning_items(report)
    if warnings:
        sections.append(Section("Warnings", "warnings", (Notes(tuple(warnings), cls="warnings"),)))
    if not tables.comparisons:
        last = sections[-1]
        empty = Paragraph("No evaluation results yet: no comparison tables.")
        sections[-1] = Section(last.title, last.anchor, last.blocks + (empty,), last.short)
    sections += [_comparison_section(table) for table in tables.comparisons]
    sections.append(_params_section(tables.params))
    if report.heatmaps:
        figures = tuple(Figure(f"{PLOTS_DIR}/{h.filename}", h.title.replace("\n", " "))
                        for h in report.heatmaps if h.path is not None)
        blocks: tuple[Block, ...] = (
            Paragraph("Source language (rows) × target language (columns). Hatched = no result. Dashed lines: "
                      "seen | unseen by XLM-R. F1 heatmaps share one colour scale. Differences are MAD-X minus the "
                      "baseline in F1 points (the paper's \"relative F1 improvement\" figures are such "
                      "differences)."),)
        sections.append(Section("Heatmaps", "heatmaps", blocks + ((Figures(figures),) if figures else ())))
    sections.append(_cost_section(tables))
    sections.append(_provenance_section(report))
    return Document(report.title, lead, tuple(sections))


__all__ = ["report_document", "run_rows", "status_line", "warning_items"]
