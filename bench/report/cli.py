"""Turn a run directory's result store into a comparative report.

Reads RUN_DIR/jobs/*/result.json and run.json (through bench.results) and writes, under --out
(default RUN_DIR/report): report.md, report.html (self-contained, heatmaps embedded),
report.json and plots/*.png. Tables 2, 3 and 5 show our mean ± std over seeds beside the paper's
number and the difference (the paper's number alone, as a reference, when the run's base model is not
XLM-R base), and MAD-X against each baseline with a 95 % paired-bootstrap interval over the test
examples; Table 4 the parameters each method adds; then heatmaps, cost and provenance.

    madx bench report runs/smoke
    madx bench report runs/smoke --out reports/smoke --format md
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

HELP = "comparative report of a run: tables beside the paper, heatmaps, cost, provenance"
FORMAT_CHOICES = ("md", "html", "json", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="run directory (the one holding jobs/)")
    parser.add_argument("--out", default=None, metavar="DIR", help="where to write the report (default: DIR/report)")
    parser.add_argument("--format", default="all", choices=FORMAT_CHOICES,
                        help="md, html, json, or all of them (default: all); the PNG heatmaps are written in every case")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a result file had to be skipped")
    parser.add_argument("--no-plots", action="store_true", help="skip the heatmaps (faster; the report links none)")
    parser.add_argument("--quiet", action="store_true", help="no terminal summary")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a report of another run in --out (a report of the same run is always redrawn)")


def run(args: argparse.Namespace) -> int:
    from bench.report import FORMATS, build_report, terminal_summary, write_report
    from bench.report.load import UnreadableResultWarning

    from madx.commands.common import UsageError

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist")
    if not (run_dir / "jobs").is_dir():
        raise UsageError(f"{run_dir} has no jobs/ directory; is it a run directory?")
    out = getattr(args, "out", None)
    other = report_of(Path(out) if out else run_dir / "report")
    if other is not None and other != run_dir.name and not getattr(args, "overwrite", False):
        raise UsageError(f"--out {out} holds the report of another run ({other!r}); pass --overwrite to replace it, "
                         "or choose another --out")
    fmt = getattr(args, "format", "all") or "all"
    formats = FORMATS if fmt == "all" else (fmt,)
    with warnings.catch_warnings():
        # skipped files are listed in the report and in the summary below; no duplicate warning lines
        warnings.simplefilter("ignore", UnreadableResultWarning)
        report = build_report(run_dir, out_dir=Path(out) if out else None, plots=not getattr(args, "no_plots", False))
    written = write_report(report, formats)
    if not getattr(args, "quiet", False):
        print(terminal_summary(report, written))
    if getattr(args, "strict", False) and report.store.problems:
        return 1
    return 0


def report_of(out: Path) -> str | None:
    """The run directory name a report in ``out`` was made from (report.json, else report.md's header), or None."""
    try:
        return str(json.loads((out / "report.json").read_text(encoding="utf-8"))["run_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        head = (out / "report.md").read_text(encoding="utf-8")[:2000]
    except OSError:
        return None
    found = re.search(r"^run directory `([^`]+)`", head, re.MULTILINE)
    return found.group(1) if found else None
