"""Every command that writes refuses to replace a finished output unless ``--overwrite``, and says how;
its files get the user's file mode."""

from __future__ import annotations

import json
import os
import stat

import pytest

from madx import cli
from tests.commands.tiny import make_tiny, tiny_with_adapters


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_with_adapters(tmp_path_factory.mktemp("outputs"))


def test_make_tiny_refuses_to_replace_a_model_and_writes_readable_files(tiny, capsys):
    before = (tiny / "model" / "model.safetensors").read_bytes()
    assert cli.main(["models", "make-tiny", "--out", str(tiny / "model"), "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert err == (f"madx models: error: --out {tiny / 'model'} already holds a finished model "
                   f"({tiny / 'model' / 'config.json'}); pass --overwrite to replace it, or choose another --out\n")
    assert (tiny / "model" / "model.safetensors").read_bytes() == before
    umask = os.umask(0o022)
    try:
        assert cli.main(["models", "make-tiny", "--out", str(tiny / "model2"), "--vocab-size", "600",
                         "--hidden-size", "32", "--text", str(tiny / "en.txt")]) == 0
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tiny / "model2").iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_evaluate_twice_into_one_folder_needs_overwrite(tiny, tmp_path, capsys):
    args = ["evaluate", "--model", str(tiny / "model"), "--task", "ner", "--test", str(tiny / "test-qu.tsv"),
            "--language-adapter", str(tiny / "lang-qu" / "adapter"), "--task-adapter", str(tiny / "ner-madx" / "task_adapter"),
            "--out", str(tmp_path / "eval")]
    assert cli.main(args) == 0
    first = json.loads((tmp_path / "eval" / "metrics.json").read_text())["finished_at"]
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "already holds a finished evaluation" in capsys.readouterr().err
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["finished_at"] == first
    assert cli.main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize("command", ["train-lang", "train-task"])
def test_training_into_a_finished_output_is_refused_before_any_work(tiny, tmp_path, capsys, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    (out / "adapter").mkdir()
    args = {"train-lang": ["--language", "qu", "--text", str(tiny / "en.txt")],
            "train-task": ["--task", "ner", "--train", str(tiny / "train-en.tsv"), "--dev", str(tiny / "train-en.tsv"),
                           "--method", "madx-lad-inv"]}[command]
    assert cli.main([command, "--model", str(tiny / "model"), *args, "--out", str(out), "--steps" if command == "train-lang"
                     else "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"madx {command}: error: --out {out} already holds a finished {command} run")
    assert "pass --overwrite to replace it" in err and err.count("\n") == 1


def test_export_refuses_to_replace_an_export(tiny, tmp_path, capsys):
    args = ["export", "--format", "adapterhub", "--model", str(tiny / "model"), "--adapter", str(tiny / "lang-qu" / "adapter"),
            "--out", str(tmp_path / "hub")]
    assert cli.main(args) == 0
    assert cli.main(args) == 2
    assert "already holds a finished AdapterHub export" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite"]) == 0
