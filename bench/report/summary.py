"""The report in a few terminal lines: status, each table's average per method (and MAD-X's difference to
each baseline with its interval), cost, files written."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bench.report import paper
from bench.report.build import Report
from bench.report.format import (NOT_SIGNIFICANT, fmt, fmt_diff, fmt_diff_value, fmt_int, fmt_interval, fmt_seconds,
                                 fmt_value, plural)
from bench.report.layout import reference_only_reason, status_line
from bench.report.tables import SUMMARY_ALL


def terminal_summary(report: Report, written: Mapping[str, Path] | None = None) -> str:
    t = report.tables
    lines = [report.title, f"  {status_line(report.store)}"]
    old = [p for p in report.store.upgraded if p.startswith("jobs/")]
    if old:
        lines.append(f"  read {plural(len(old), 'result file')} in result schema 1 through bench.results.upgrade_v1 "
                     "(they record no per-job code version)")
    for problem in report.store.problems:
        lines.append(f"  skipped {problem.path}: {problem.reason}")
    if not t.paper_comparable:
        lines.append(f"  paper numbers for reference only, no difference to them: {reference_only_reason(t.base_model)}"
                     .replace("`", ""))
    for table in t.comparisons:
        lines.append(f"  {table.title}")
        for row in table.rows:
            cell = row.cell(SUMMARY_ALL)
            v = cell.ours
            targets = plural(len(v.parts), "target")
            if cell.paper is None:
                paper_text = "paper n/a"
            elif table.paper_reference_only:
                paper_text = f"paper {fmt(cell.paper, 1)}, reference only"
            else:
                paper_text = f"paper {fmt(cell.paper, 1)}, Δ {fmt_diff(cell.diff)}"
            lines.append(f"    {row.name:<17} avg {fmt_value(v):>13} over {targets:<10} ({paper_text})")
        significance = t.significance_table(table.id)
        for row in significance.rows if significance is not None else ():
            c = row.cell(SUMMARY_ALL)
            if c is None:
                continue
            if c.interval is None:
                tested = "no interval: " + (c.unavailable or "")
            else:
                tested = f"95 % CI {fmt_interval(c.interval.low, c.interval.high)}" + ("" if c.significant else f" {NOT_SIGNIFICANT}")
            name = f"{paper.method_display_name(significance.method)} − {row.name}"
            lines.append(f"    {name:<28} avg {fmt_diff_value(c.diff):>13} ({tested})")
    total = t.cost_by_kind[-1] if t.cost_by_kind else None
    if total and total.n_jobs:
        lines.append(f"  cost: {fmt_int(total.tokens)} tokens, {fmt_seconds(total.wall_s)}, "
                     f"{fmt(total.device_hours, 4)} device-hours")
    for _, path in sorted((written or {}).items()):
        lines.append(f"  wrote {path}")
    return "\n".join(lines)


__all__ = ["terminal_summary"]
