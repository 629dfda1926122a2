"""``python -m bench.perf [options]`` (same as ``madx bench perf``)."""

from __future__ import annotations

import argparse
import shlex
import sys

from bench.perf.cli import HELP, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "bench.perf", *argv])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
