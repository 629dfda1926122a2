"""A user error on the command line is one clear line and exit status 2; --debug shows the traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from madx import cli


def test_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.tsv"
    status = cli.main(["evaluate", "--model", str(tmp_path / "no-model"), "--task", "ner", "--test", str(missing),
                       "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("madx evaluate: error: --model ") and err.endswith("no-model: no such folder\n")


def test_an_error_of_a_file_offers_the_traceback(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "test.tsv").write_text("a\tO\n", encoding="utf-8")
    status = cli.main(["evaluate", "--model", str(tmp_path / "model"), "--task", "ner", "--test", str(tmp_path / "test.tsv"),
                       "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("madx evaluate: error: ") and "(--debug for the traceback)" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(cli.UsageError):
        cli.main(["--debug", "evaluate", "--model", str(tmp_path / "no-model"), "--task", "ner", "--test", "x",
                  "--out", str(tmp_path / "out")])


def test_plan_on_an_invalid_suite_is_a_message(tmp_path, capsys):
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: x\nmodel: m\nnot_a_field: 1\n", encoding="utf-8")
    assert cli.main(["bench", "plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "unknown top-level field 'not_a_field'" in err and "Traceback" not in err


def test_long_messages_are_cut():
    assert len(cli.one_line(ValueError("x" * 10_000))) == 500
    assert cli.one_line(KeyError("a key")) == "a key"


def test_argparse_errors_are_one_line_too():
    """A missing required argument or an unknown option: one line naming the command, exit 2."""
    for argv, prefix, expected in ((["train-task", "--task", "ner"], "madx train-task", "the following arguments are required"),
                                   (["params", "--no-such-flag"], "madx", "unrecognized arguments: --no-such-flag")):
        process = subprocess.run([sys.executable, "-m", "madx", *argv], capture_output=True, text=True)
        lines = process.stderr.strip().splitlines()
        assert process.returncode == 2 and len(lines) == 1, process.stderr
        assert lines[0].startswith(f"{prefix}: error: ") and expected in lines[0], lines[0]
