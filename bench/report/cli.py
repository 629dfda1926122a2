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
import sys
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


def run(args: argparse.Namespace) -> int:
    from bench.report import FORMATS, build_report, terminal_summary, write_report
    from bench.report.load import UnreadableResultWarning

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        print(f"error: run directory {run_dir} does not exist", file=sys.stderr)
        return 2
    if not (run_dir / "jobs").is_dir():
        print(f"error: {run_dir} has no jobs/ directory; is it a run directory?", file=sys.stderr)
        return 2
    out = getattr(args, "out", None)
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
