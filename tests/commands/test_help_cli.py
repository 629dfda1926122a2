"""``--help`` shows every default: each option with a default names it in its help line."""

from __future__ import annotations

import argparse

import pytest

from madx import cli


def parsers(parser: argparse.ArgumentParser, prog: str = "madx"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{prog} {name}")


def shown(default) -> bool:
    return not (default is None or default is False or default == [] or default is argparse.SUPPRESS)


def missing_defaults(parser: argparse.ArgumentParser) -> list[str]:
    """Options whose help lines show neither their default value nor a default said in words ("default: all")."""
    missing = []
    for action in parser._actions:
        if action.option_strings and shown(action.default) and not isinstance(action, argparse._HelpAction):
            value = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else str(action.default)
            text = " ".join(parser._get_formatter()._format_action(action).split())
            if value not in text and "default" not in text:
                missing.append(f"{action.option_strings[-1]} {value}")
    return missing


def test_every_default_is_in_the_help():
    problems = {prog: gaps for prog, parser in parsers(cli.build_parser()) if (gaps := missing_defaults(parser))}
    assert problems == {}


@pytest.mark.parametrize("argv, lines", [
    (["train-lang"], ["--steps STEPS optimizer steps (the paper's 250k) (default: 250000)",
                      "(default: 0.0001)", "(default: 64)", "(default: 256)"]),
    (["train-task"], ["passes over the training set (default: the paper's, adapter methods: ner 100, qa 3; full-ft: ner 100, qa 3)",
                      "learning rate (default: the paper's, adapter methods: ner 0.0001, qa 0.0001; full-ft: ner 5e-05, qa 3e-05)",
                      "--max-dev MAX_DEV evaluate only the first N dev examples at each dev evaluation (default: all)"]),
    (["models", "make-tiny"], ["--vocab-size VOCAB_SIZE at most this many WordPiece tokens (default: 8000)",
                               "--hidden-size HIDDEN_SIZE hidden size h (the FFN is 4h) (default: 64)",
                               "--layers LAYERS transformer layers (default: 2)", "--heads HEADS attention heads (default: 4)",
                               "--arch {xlm-roberta,bert} the architecture (default: xlm-roberta)"]),
])
def test_the_defaults_a_user_asks_about(argv, lines, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([*argv, "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for line in lines:
        assert line in text
