"""The ``madx`` command line. Each subcommand lives in its own module with ``add_arguments`` and
``run``; this file only wires them up. Packages add subcommands through the ``madx.commands``
entry-point group (the benchmark suite adds ``madx bench`` that way), so ``madx`` never imports
them by name. Command modules import torch, transformers and the rest inside ``run``, on purpose:
building the parser (``--help``, a typo) must not pay for them."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

ENTRY_POINT_GROUP = "madx.commands"

# subcommand name -> module providing add_arguments(parser) and run(args) -> int
SUBCOMMANDS: dict[str, str] = {
    "params": "madx.commands.params",
    "info": "madx.commands.info",
    "train-lang": "madx.commands.train_lang",
    "train-task": "madx.commands.train_task",
    "evaluate": "madx.commands.evaluate",
    "models": "madx.commands.models",
}


def subcommands() -> dict[str, str]:
    """The built-in subcommands, then those installed packages register (never overriding one)."""
    found = dict(SUBCOMMANDS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="madx", description="MAD-X adapters and the madx-bench suite")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in subcommands().items():
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
