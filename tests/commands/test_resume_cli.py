"""A stopped ``train-lang`` / ``train-task`` resumes from its checkpoint when the same command runs
again, and ends where an uninterrupted run ends; another command line on an unfinished output is
refused (naming what differs), and ``--overwrite`` starts over."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import madx.checkpoint
from madx import cli
from tests.commands.tiny import make_tiny


pytestmark = pytest.mark.slow  # real training runs, stopped and resumed


class Stopped(Exception):
    """The run was stopped right after a checkpoint (as a killed job would be)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    make_tiny(root)
    return root


@pytest.fixture
def stop_after(monkeypatch):
    """Stop the next run right after it wrote the checkpoint of ``step``."""
    def arm(step: int):
        real = madx.checkpoint.save

        def save(directory, at, *args, **kwargs):
            folder = real(directory, at, *args, **kwargs)
            if at == step:
                monkeypatch.setattr(madx.checkpoint, "save", real)
                raise Stopped(f"stopped after the checkpoint of step {at}")
            return folder

        monkeypatch.setattr(madx.checkpoint, "save", save)
    return arm


def train_lang(tiny, out, *extra):
    return cli.main(["train-lang", "--model", str(tiny / "model"), "--language", "qu", "--text", str(tiny / "en.txt"),
                     "--steps", "6", "--batch-size", "4", "--max-seq-length", "32", "--lr", "0.01",
                     "--checkpoint-every", "2", "--out", str(out), *map(str, extra)])


def train_task(tiny, out, *extra):
    return cli.main(["train-task", "--model", str(tiny / "model"), "--task", "ner", "--method", "madx-lad-inv",
                     "--train", str(tiny / "train-en.tsv"), "--dev", str(tiny / "test-en.tsv"), "--epochs", "2",
                     "--batch-size", "4", "--lr", "0.01", "--reduction-factor", "2", "--checkpoint-every", "2",
                     "--out", str(out), *map(str, extra)])


COMMANDS = {"train-lang": (train_lang, "adapter"), "train-task": (train_task, "task_adapter")}


def weights(folder):
    return load_file(folder / "adapter.safetensors")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_stopped_run_resumes_and_ends_as_an_uninterrupted_run(tiny, tmp_path, stop_after, capsys, command):
    run, adapter = COMMANDS[command]
    assert run(tiny, tmp_path / "whole") == 0
    stop_after(4)
    with pytest.raises(Stopped):
        run(tiny, tmp_path / "stopped")
    assert not (tmp_path / "stopped" / "metrics.json").exists()
    assert (tmp_path / "stopped" / "checkpoints" / "step-00000004" / "manifest.json").is_file()
    capsys.readouterr()
    assert run(tiny, tmp_path / "stopped") == 0
    assert f"resuming from {tmp_path / 'stopped' / 'checkpoints'}" in capsys.readouterr().out
    whole, resumed = weights(tmp_path / "whole" / adapter), weights(tmp_path / "stopped" / adapter)
    assert sorted(whole) == sorted(resumed) and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not (tmp_path / "stopped" / "checkpoints").exists(), "a finished run keeps no checkpoint"
    assert run(tiny, tmp_path / "stopped") == 2  # finished now: refused without --overwrite


def test_resuming_with_other_arguments_is_refused_and_overwrite_starts_over(tiny, tmp_path, stop_after, capsys):
    stop_after(2)
    with pytest.raises(Stopped):
        train_lang(tiny, tmp_path / "run")
    capsys.readouterr()
    assert cli.main(["train-lang", "--model", str(tiny / "model"), "--language", "qu", "--text", str(tiny / "en.txt"),
                     "--steps", "6", "--batch-size", "4", "--max-seq-length", "32", "--lr", "0.02",
                     "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (f"madx train-lang: error: --out {tmp_path / 'run'} holds an unfinished run with other arguments "
                   "(--lr 0.01 then, 0.02 now); run the same command to resume it, or pass --overwrite to start over\n")
    assert train_lang(tiny, tmp_path / "run", "--overwrite") == 0
    assert "resuming from" not in capsys.readouterr().out
