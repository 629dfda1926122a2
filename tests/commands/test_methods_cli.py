"""``train-task`` checks ``--method`` against the adapter it is given and says what differs, takes its
defaults from the one table of the paper's settings (madx/recipes.py), and a missing flag is a
command-line error (``madx train-task: error: …``, exit 2)."""

from __future__ import annotations

import argparse

import pytest

from madx import cli
from madx.commands import train_task
from madx.recipes import recipe
from tests.commands.tiny import make_tiny, save_language_adapter


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    model = make_tiny(root)
    save_language_adapter(model, "en", root / "en-inv" / "adapter", invertible=True)
    save_language_adapter(model, "en", root / "en-noinv" / "adapter", invertible=False)
    save_language_adapter(model, "en", root / "en-2" / "adapter", invertible=True, leave_out=(-1,))
    return root


def train_task_cli(tiny, *extra):
    return cli.main(["train-task", "--model", str(tiny / "model"), "--task", "ner", "--train", str(tiny / "train-en.tsv"),
                     "--dev", str(tiny / "train-en.tsv"), "--out", str(tiny / "out"), "--epochs", "1", *map(str, extra)])


def test_madx_without_a_language_adapter_is_a_cli_error(tiny, capsys):
    assert train_task_cli(tiny) == 2
    assert capsys.readouterr().err == ("madx train-task: error: --method madx needs --language-adapter (the source "
                                       "language's adapter, stacked under the task adapter)\n")


@pytest.mark.parametrize("method, adapter, message", [
    ("madx-inv", "en-inv", "--method madx-inv trains without an invertible adapter, but --language-adapter {path} has one; "
                           "use --method madx, or a language adapter trained with --no-invertible"),
    ("madx", "en-noinv", "--method madx trains with an invertible adapter, but --language-adapter {path} has none "
                         "(train-lang --no-invertible made it); use --method madx-inv, or a language adapter trained "
                         "without --no-invertible"),
    ("madx2", "en-inv", "--method madx2 leaves layer 1 without adapters, but --language-adapter {path} has adapters in "
                        "every layer; train-lang --leave-out -1 makes MAD-X 2.0's language adapters"),
    ("madx", "en-2", "--method madx puts adapters in every layer, but --language-adapter {path} leaves out layer 1; "
                     "train-lang --leave-out -1 makes MAD-X 2.0's language adapters"),
    ("madx-lad-inv", "en-inv", "--method madx-lad-inv uses no language adapter, but --language-adapter {path} is given; "
                               "drop it, or pick a MAD-X method (madx, madx-inv, madx2, madx2-inv)"),
])
def test_the_method_is_checked_against_the_language_adapter(tiny, capsys, method, adapter, message):
    path = tiny / adapter / "adapter"
    assert train_task_cli(tiny, "--method", method, "--language-adapter", path) == 2
    assert capsys.readouterr().err == f"madx train-task: error: {message.format(path=path)}\n"
    assert not (tiny / "out").exists()


@pytest.mark.parametrize("method, task", [("full-ft", "ner"), ("madx", "ner"), ("full-ft", "qa"), ("madx-lad-inv", "qa")])
def test_defaults_are_the_papers(method, task):
    parser = cli.build_parser()
    args = parser.parse_args(["train-task", "--model", "m", "--task", task, "--train", "t", "--dev", "d", "--out", "o",
                              "--method", method])
    train_task.resolve_defaults(args)
    paper = recipe(method, "task", task)
    assert (args.lr, args.batch_size, args.epochs, args.max_length) == (
        paper.learning_rate, paper.batch_size, paper.epochs, paper.max_length)
    if (method, task) == ("full-ft", "ner"):
        assert args.lr == 5e-5  # not the adapters' 1e-4


def test_given_values_win_over_the_table():
    args = argparse.Namespace(method="full-ft", task="ner", lr=1e-3, batch_size=None, epochs=2, max_length=None)
    train_task.resolve_defaults(args)
    assert (args.lr, args.batch_size, args.epochs, args.max_length) == (1e-3, 16, 2, 128)
