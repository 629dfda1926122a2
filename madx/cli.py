"""The ``madx`` command line. Each subcommand lives in its own module with ``add_parser`` and
``run``; this file only wires them up."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module providing add_arguments(parser) and run(args) -> int
SUBCOMMANDS: dict[str, str] = {
    "params": "madx.commands.params",
    "info": "madx.commands.info",
    "train-lang": "madx.commands.train_lang",
    "train-task": "madx.commands.train_task",
    "evaluate": "madx.commands.evaluate",
    "models": "madx.commands.models",
    "bench": "bench.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="madx", description="MAD-X adapters and the madx-bench suite")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
