"""The ``madx`` command line. Each subcommand lives in its own module with ``add_arguments`` and
``run``; this file only wires them up. Packages add subcommands through the ``madx.commands``
entry-point group (the benchmark suite adds ``madx bench`` that way), so ``madx`` never imports
them by name. Command modules import torch, transformers and the rest inside ``run``, on purpose:
building the parser (``--help``, a typo) must not pay for them."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys

from madx.commands.common import UsageError

ENTRY_POINT_GROUP = "madx.commands"

# subcommand name -> module providing add_arguments(parser) and run(args) -> int
SUBCOMMANDS: dict[str, str] = {
    "params": "madx.commands.params",
    "info": "madx.commands.info",
    "train-lang": "madx.commands.train_lang",
    "train-task": "madx.commands.train_task",
    "evaluate": "madx.commands.evaluate",
    "models": "madx.commands.models",
    "export": "madx.commands.export",
    "data": "madx.commands.data",
}


def subcommands() -> dict[str, str]:
    """The built-in subcommands, then those installed packages register (never overriding one)."""
    found = dict(SUBCOMMANDS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


# What a user can cause (a bad file, a wrong name, a missing path): one line and exit 2. Anything
# else is a bug in madx and keeps its traceback.
USER_ERRORS = (ValueError, LookupError, OSError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's default in its help line (``(default: 250000)``)
    unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not _shown(default) or "default" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".strip().replace("%", "%%")


class Parser(argparse.ArgumentParser):
    """Every parser of ``madx`` (and its subparsers, which argparse builds with the parent's class) shows
    defaults, and records its own ``prog`` (``madx bench run``) for the messages of its command."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)
        self.set_defaults(command_prog=self.prog)

    def error(self, message: str):
        """argparse's own errors (a missing or unknown argument) as one line too, like every user error."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if not action.help and action.option_strings and _shown(action.default):  # no help text: the default alone
            action.help = "(default: %(default)s)"
        return action


def _shown(default) -> bool:
    return not (default is None or default is False or default == [] or default is argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="madx", description="MAD-X adapters and the madx-bench suite")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in subcommands().items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = f"madx {args.command}"  # the subcommand, as the README and scripts know it
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `madx … | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except USER_ERRORS as error:
        if args.debug:
            raise
        if isinstance(error, UsageError):  # about the command line itself: a traceback would not help
            print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
            return 2
        print(f"{prog}: error: {one_line(error)} (--debug for the traceback)", file=sys.stderr)
        return 2


def one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, KeyError) and error.args:  # KeyError's str() is the repr of its key
        text = str(error.args[0])
    return text if len(text) <= limit else text[: limit - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
