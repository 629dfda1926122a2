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
from bench.report.comparisons import Comparison, SignificanceTable
from bench.report.format import (MISSING_TEXT, NOT_SIGNIFICANT, fmt, fmt_bytes, fmt_count, fmt_diff, fmt_diff_value, fmt_int,
                                 fmt_interval, fmt_paper, fmt_rate, fmt_seconds, fmt_value, plural)
from bench.report.load import JOB_KINDS, ResultStore
from bench.report.tables import (SUMMARY_ALL, SUMMARY_SEEN, SUMMARY_UNSEEN, Cell, ComparisonTable, CostRow,
                                 ParamsTable, Tables)
from bench.results import RunInfo


# ---------------------------------------------------------------------------------------------
# Comparison tables (2, 3, 5) and Table 4


def _header_label(table: ComparisonTable, column: str) -> str:
    return paper.language_label(column) if column in table.columns else column


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
            group.append(TableCell(f"unseen by XLM-R ({paper.UNSEEN_MARK})", "group unseen-start", n_unseen))
        group.append(TableCell("averages over the targets present", "group summary-start", len(table.summary_columns)))
        group.append(TableCell("", colspan=2 if table.parts_label else 1))
    rows, row_cls = [], []
    meta = [TableCell("", "meta")] + ([TableCell("", "meta")] if table.parts_label else [])
    for row in table.rows:
        leaf = [row.cell(c).ours for c in table.columns if not row.cell(c).ours.missing]
        seeds = _range_label([v.n_seeds_min for v in leaf] + [v.n_seeds_max for v in leaf])
        parts = _range_label([v.n_parts for v in leaf])
        ours = [TableCell(row.name, "label method"), TableCell("ours", "label")]
        ours += [TableCell(fmt_value(row.cell(c).ours) + ("‡" if c in table.summary_columns and table.incomplete(row, c) else ""),
                       _join("ours", _col_cls(table, c), _missing(row.cell(c).ours.mean)))
                 for c in columns]
        ours += [TableCell(seeds, "meta")] + ([TableCell(parts, "meta")] if table.parts_label else [])
        ref = [TableCell("", "label method"), TableCell("paper (reference)" if table.paper_reference_only else "paper", "label")]
        ref += [TableCell(_paper_text(table, row, c),
                      _join("paper", _col_cls(table, c), "missing" if row.cell(c).paper is None else ""))
                for c in columns]
        rows += [tuple(ours), tuple(ref + meta)]
        if table.paper_reference_only:
            row_cls += ["ours-row first", "paper-row last"]
            continue
        diff = [TableCell("", "label method"), TableCell("Δ", "label")]
        diff += [TableCell(fmt_diff(row.cell(c).diff), _join(_diff_cls(row.cell(c).diff), _col_cls(table, c))) for c in columns]
        rows.append(tuple(diff + meta))
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


def _std_text(v) -> str:
    if v.missing:
        return MISSING_TEXT
    if v.std is not None:
        return fmt(v.std, 2)
    return "" if v.n_seeds_max <= 1 else "n/a"  # a single seed has no spread to show


def _detail(table: ComparisonTable) -> Table:
    names = ["method", "column", "group", "mean", "std", "seeds", table.parts_label or "cells", "paper", "Δ", "over",
             "paper note"]
    if table.paper_reference_only:
        names.remove("Δ")
    rows = []
    for row in table.rows:
        for column in table.all_columns:
            cell: Cell = row.cell(column)
            v = cell.ours
            if column in table.summary_columns:
                group = {SUMMARY_SEEN: "seen", SUMMARY_UNSEEN: "unseen", SUMMARY_ALL: "all"}[column]
                over = ", ".join(paper.language_label(c) for c in v.parts)
                parts = plural(len(v.parts), "target") if not v.missing else MISSING_TEXT
            else:
                group = ("seen" if column in table.seen else "unseen") if table.seen else ""
                over = ", ".join(paper.language_label(c) for c in v.parts) if table.parts_label else ""
                parts = str(v.n_parts) if not v.missing else MISSING_TEXT
            texts = [row.name, _header_label(table, column), group, fmt(v.mean, 2), _std_text(v),
                     v.seeds_label() if not v.missing else "0", parts,
                     fmt(cell.paper, 2) if column in table.summary_columns else fmt_paper(cell.paper)]
            texts += [] if table.paper_reference_only else [fmt_diff(cell.diff, 2)]
            texts += [over, cell.paper_note or ""]
            rows.append(tuple(TableCell(t) for t in texts))
    align = "lll" + "r" * (len(names) - 5) + "ll"
    return Table(tuple(TableCell(h) for h in names), tuple(rows), cls="detail", align=align)


def reference_only_reason(base_model: str | None) -> str:
    if base_model:
        return (f"this run's base model is `{base_model}`, not XLM-R base (the paper's), and the base model moves "
                "every number")
    return "this run does not name its base model, so it cannot be taken for XLM-R base (the paper's)"


def _comparison_section(table: ComparisonTable, tables: Tables) -> Section:
    short = table.title.split(" — ")[0] + {"table3-f1": " F1", "table3-em": " EM"}.get(table.id, "")
    blocks: list[Block] = [Paragraph(table.caption), _overview(table)]
    if table.paper_reference_only:
        legend = ["Cells: ours = mean ± sample std over seeds (a single seed: the mean alone; n/a: unequal seeds); "
                  "paper (reference) = the paper's number, for XLM-R base. No difference to the paper is shown: "
                  f"{reference_only_reason(tables.base_model)}. — = no result (missing, not 0)."]
    else:
        legend = ["Cells: ours = mean ± sample std over seeds (a single seed: the mean alone; n/a: unequal seeds), "
                  "paper = the paper's number, Δ = ours − paper in points. — = no result (missing, not 0)."]
    if any(paper.is_unseen(c) for c in table.columns):
        legend.append(f"{paper.UNSEEN_MARK} unseen by XLM-R"
                      + (" (right of Table 2's dashed line)." if table.seen else "."))
    if any(table.incomplete(r, c) for r in table.rows for c in table.summary_columns):
        legend.append("‡ average over fewer targets than the table's columns (some have no result for this method): "
                      "not comparable with the other rows' averages"
                      + ("." if table.paper_reference_only else "; Δ is still like for like."))
    missing_rows = [f"{r.name}: {r.paper_missing}" for r in table.rows if r.paper_missing]
    if missing_rows:
        legend.append("Paper rows without numbers (n/a): " + "; ".join(missing_rows) + ".")
    summary_notes = [f"`{c}`" for c in table.summary_columns]
    if summary_notes:
        legend.append(f"{', '.join(summary_notes)}: mean over the target columns this method has; the paper column is "
                      "the paper's mean over the same targets (its own avg when all of its columns are present).")
    blocks.append(Notes(tuple(legend + list(table.notes))))
    significance = tables.significance_table(table.id)
    if significance is not None:
        blocks += _significance_blocks(significance)
    what = "mean, std, seeds, paper" + ("" if table.paper_reference_only else ", Δ")
    blocks.append(Details(f"{table.title.split(' — ')[0]}: every cell ({what})", (_detail(table),)))
    return Section(table.title, table.id, tuple(blocks), short)


# ---------------------------------------------------------------------------------------------
# MAD-X against each baseline: differences with their paired bootstrap


_RECOMPUTED = {
    "sentences": "micro-F1 recomputed from the resampled sentences' entity counts (tp, fp, fn)",
    "questions": "the score averaged over the resampled questions",
}


def _ci_label(confidence: float) -> str:
    return f"{confidence * 100:g} % CI"


def _significance_cells(c: Comparison | None) -> tuple[TableCell, TableCell]:
    """(Δ cell, interval cell) of one comparison."""
    if c is None:
        return TableCell(MISSING_TEXT, "missing"), TableCell(MISSING_TEXT, "missing")
    diff_cls = _diff_cls(c.diff.mean) if c.significant else ("diff" if c.significant is False else "")
    delta = TableCell(fmt_diff_value(c.diff), diff_cls)
    if c.interval is None:
        return delta, TableCell("n/a", "missing")
    text = fmt_interval(c.interval.low, c.interval.high)
    return delta, TableCell(text if c.significant else f"{text} {NOT_SIGNIFICANT}", "ci" if c.significant else "ci ns")


def _significance_blocks(table: SignificanceTable) -> list[Block]:
    method = paper.method_display_name(table.method)
    metric = {"f1": "F1", "exact_match": "EM"}.get(table.metric, table.metric)
    columns = table.all_columns
    header = [TableCell(f"{method} −", "label"), TableCell("", "label")]
    header += [TableCell(paper.language_label(c) if c in table.columns else c) for c in columns]
    rows, row_cls = [], []
    for row in table.rows:
        cells = [_significance_cells(row.cell(c)) for c in columns]
        rows.append(tuple([TableCell(row.name, "label method"), TableCell("Δ", "label")] + [d for d, _ in cells]))
        rows.append(tuple([TableCell("", "label method"), TableCell(_ci_label(table.confidence), "label")]
                          + [ci for _, ci in cells]))
        row_cls += ["ours-row first", "ci-row last"]
    notes = [
        f"Δ = {method} − the baseline in {metric} points: the mean over seeds, ± the sample std across seeds of the "
        "per-seed differences where both methods ran the same seeds (n/a: different seeds; a single seed: Δ alone). "
        "Only the (source, target) evaluations both methods have are compared, so Δ can differ from the difference "
        "of the two rows above where one of them misses a pair. — = no evaluation in common.",
        f"{_ci_label(table.confidence)} = paired bootstrap over the test {table.unit} ({table.n_resamples} resamples, seed "
        f"{table.seed}): each resample of a target's test {table.unit} scores both methods, every seed and every source "
        f"on the same {table.unit}, {_RECOMPUTED.get(table.unit, 'the metric recomputed on the resample')}; an average "
        "over targets resamples each target's test set on its own. It measures how much Δ depends on which "
        f"{table.unit} were tested, not on the training seed. {NOT_SIGNIFICANT} = the interval includes 0.",
    ]
    without: dict[tuple[str, str], list[str]] = {}
    for row in table.rows:
        for column in columns:
            c = row.cell(column)
            if c is not None and c.interval is None:
                without.setdefault((row.name, c.unavailable or ""), []).append(
                    paper.language_label(column) if column in table.columns else column)
    if without:
        notes.append("n/a = no interval — " + "; ".join(f"{name} ({', '.join(cols)}): {reason}"
                                                        for (name, reason), cols in without.items())
                     + ". The differences are still shown.")
    return [Paragraph(f"{method} against each baseline, with a paired bootstrap over the test {table.unit}:"),
            Table(tuple(header), tuple(rows), (), tuple(row_cls), cls="overview significance", align="ll"),
            Notes(tuple(notes)),
            Details(f"{table.title.split(' — ')[0]}: every comparison ({method} − baseline, bootstrap)",
                    (_significance_detail(table),))]


def _pairs_text(pairs: Sequence[str]) -> str:
    """"en→qu" pairs with each language as the report shows it ("en→qu†")."""
    return ", ".join("→".join(paper.language_label(code) for code in pair.split("→")) for pair in pairs)


def _significance_detail(table: SignificanceTable) -> Table:
    header = ("baseline", "column", "compared", "seeds", "Δ", "std", "Δ (predictions)", "CI low", "CI high",
              "excludes 0", f"test {table.unit}", "note")
    rows = []
    for row in table.rows:
        for column in table.all_columns:
            c = row.cell(column)
            if c is None:
                continue
            iv = c.interval
            note = "" if iv is not None else (f"{c.unavailable} ({c.n_without} of {c.n_results} results)"
                                              if c.n_without else c.unavailable or "")
            rows.append(tuple(TableCell(t) for t in (
                row.name, paper.language_label(column) if column in table.columns else column, _pairs_text(c.pairs),
                c.diff.seeds_label(), fmt_diff(c.diff.mean, 2), _std_text(c.diff),
                fmt_diff(iv.observed if iv else None, 2), fmt_diff(iv.low if iv else None, 2),
                fmt_diff(iv.high if iv else None, 2), MISSING_TEXT if iv is None else ("yes" if iv.excludes_zero else "no"),
                "+".join(str(n) for n in iv.n_examples) if iv else MISSING_TEXT, note,
            )))
    return Table(tuple(TableCell(h) for h in header), tuple(rows), cls="detail", align="lll" + "r" * 8 + "l")


def _params_section(params: ParamsTable) -> Section:
    blocks: list[Block] = []
    base_text = f"base model: `{params.arch}` ({params.arch_source})" if params.arch else "base model: not named in the run"
    if params.base_params is not None:
        base_text += f"; its parameters: {fmt_int(params.base_params)}, {params.base_params_source}"
    else:
        base_text += "; its size is not known here (not a built-in preset, and no adapter task job records it)"
    blocks.append(Paragraph(base_text + "."))
    paper_label = "paper" if params.paper_comparable else "paper (XLM-R base)"
    if params.computed:
        rows = []
        for r in params.rows:
            if r.computed_added is None:
                continue
            ours_pct = math.floor(r.computed_pct_of_paper_base * 100) / 100
            row = [TableCell(r.name, "label method"), TableCell(fmt_count(r.computed_added), "ours"),
                   TableCell(fmt_int(r.computed_added), "ours"), TableCell(f"{ours_pct:.2f}", "ours"),
                   TableCell(r.paper_params or MISSING_TEXT, "paper"),
                   TableCell(f"{r.paper_pct:.2f}" if r.paper_pct is not None else MISSING_TEXT, "paper")]
            if params.paper_comparable:
                row.append(TableCell(fmt_diff(ours_pct - r.paper_pct, 2) if r.paper_pct is not None else MISSING_TEXT,
                                     _diff_cls(None if r.paper_pct is None else ours_pct - r.paper_pct)))
            row += [TableCell(fmt_int(r.computed_added_with_bias)), TableCell(fmt(r.computed_pct_of_base, 2))]
            rows.append(tuple(row))
        names = ["method", "added", "added (exact)", "% of 270M", paper_label, "paper %", "Δ %", "added + biases",
                 "% of counted base"]
        if not params.paper_comparable:
            names.remove("Δ %")
        blocks.append(Table(tuple(TableCell(h) for h in names), tuple(rows), cls="params"))
    if params.recorded:
        def spread(sp) -> str:
            if sp.low is None:
                return MISSING_TEXT
            return fmt_int(sp.low) if sp.low == sp.high else f"{fmt_int(sp.low)}–{fmt_int(sp.high)}"

        rows = []
        for r in params.recorded:
            pct = f"{r.added / params.base_params * 100:.2f}" if r.added is not None and params.base_params else MISSING_TEXT
            p = paper.added_parameters(r.method)
            rows.append((TableCell(r.name, "label method"), TableCell(r.task or MISSING_TEXT), TableCell(spread(r.mlm_trainable)),
                         TableCell(spread(r.task_trainable)), TableCell(fmt_int(r.added), "ours"), TableCell(spread(r.total_params)),
                         TableCell(pct, "ours"), TableCell(p["params"] if p else MISSING_TEXT, "paper"),
                         TableCell(f"{p['pct']:.2f}" if p else MISSING_TEXT, "paper")))
        header = tuple(TableCell(h) for h in ("method", "task", "trainable, MLM job", "trainable, task job", "added",
                                          "total (task model)", "% of base", paper_label, "paper %"))
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
    notes = ["tokens/s = total tokens / total wall time."]
    total = tables.cost_by_kind[-1] if tables.cost_by_kind else None
    if total is not None and total.missing_fields:
        kinds = tables.cost_by_kind[:-1]
        fields = []
        for name, n in total.missing_fields.items():
            by_kind = ", ".join(f"{r.label} {r.missing_fields[name]}" for r in kinds if r.missing_fields.get(name))
            fields.append(f"`cost.{name}` by {plural(n, 'job')} ({by_kind})")
        notes.append("Not recorded by every job: " + "; ".join(fields) + ". Those jobs are left out of that column's "
                     "sum (and of the peak memory's maximum), so it covers the jobs that record it.")
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


def _heatmap_section(heatmaps) -> Section:
    blocks: list[Block] = []
    for task, text in (
        ("ner", "NER: source language (rows) × target language (columns). Dashed lines: seen | unseen by XLM-R "
                f"({paper.UNSEEN_MARK}: unseen). F1 heatmaps share one colour scale. Differences are MAD-X minus the "
                "baseline in F1 points (the paper's \"relative F1 improvement\" figures are such differences)."),
        ("qa", "QA: XQuAD from English (Table 3's setting), method (rows) × target language (columns); F1 and EM share "
               "one colour scale. Differences are MAD-X minus each other method, in points."),
    ):
        maps = [h for h in heatmaps if h.task == task]
        figures = tuple(Figure(f"{PLOTS_DIR}/{h.filename}", h.title.replace("\n", " ")) for h in maps if h.path is not None)
        if not maps:
            continue
        blocks.append(Paragraph(text))
        if figures:
            blocks.append(Figures(figures))
    diffs = [h for h in heatmaps if h.kind == "diff"]
    notes = ["Hatched = no result (missing, not 0)."]
    if diffs:
        tested = sum(h.n_tested for h in diffs)
        cells = sum(h.n_cells for h in diffs)
        if tested:
            notes.append(f"In the differences, a dotted cell marked {NOT_SIGNIFICANT} has a 95 % paired-bootstrap "
                         "interval (over the target's test examples, as in the tables) that includes 0; unmarked cells "
                         f"exclude 0. {tested} of {cells} cells are tested"
                         + ("." if tested == cells else "; \"no test\": results without usable per-example predictions."))
        else:
            notes.append("Significance is not marked: no result behind the differences has per-example predictions.")
    blocks.append(Notes(tuple(notes)))
    return Section("Heatmaps", "heatmaps", tuple(blocks))


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
    items += [f"Per-example predictions `{path}` cannot be used ({reason}): the comparisons that need them have no "
              "interval" for path, reason in tables.prediction_problems.items()]
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
    if not tables.paper_comparable:
        about.append(f"The paper's numbers are shown for reference only: {reference_only_reason(tables.base_model)}. "
                     "No difference to the paper is computed (here or in the terminal summary); compare the methods "
                     "with each other, and trends with the paper.")
    if tables.significance:
        tested = [c for t in tables.significance for c in t.comparisons]
        with_interval = sum(c.interval is not None for c in tested)
        if with_interval == 0:
            about.append("Significance is not available: no evaluation result has per-example predictions (results "
                         "written before eval jobs stored them); the differences between methods are shown without "
                         "intervals.")
        elif with_interval < len(tested):
            about.append(f"Significance: {with_interval} of {len(tested)} comparisons between methods have a paired-"
                         "bootstrap interval; the others involve results without per-example predictions (n/a).")
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
    # the paper's tables in the paper's order (2, 3 F1, 3 EM, 4, 5), whatever order they were built in
    numbered = [_comparison_section(table, tables) for table in tables.comparisons] + [_params_section(tables.params)]
    sections += sorted(numbered, key=_paper_table_number)
    if report.heatmaps:
        sections.append(_heatmap_section(report.heatmaps))
    sections.append(_cost_section(tables))
    sections.append(_provenance_section(report))
    return Document(report.title, lead, tuple(sections))


def _paper_table_number(section: Section) -> int:
    """``table3-em`` -> 3: where a section stands among the paper's tables (a stable sort keeps F1 before EM)."""
    digits = "".join(ch for ch in section.anchor.split("-")[0] if ch.isdigit())
    return int(digits) if digits else 99


__all__ = ["reference_only_reason", "report_document", "run_rows", "status_line", "warning_items"]
