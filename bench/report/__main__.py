"""``python -m bench.report DIR [--out OUT] [--format md|html|json|all]`` (same as ``madx bench report``)."""

from __future__ import annotations

import argparse
import sys

from bench.report.cli import HELP, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    from madx.commands.common import UsageError

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=HELP)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
