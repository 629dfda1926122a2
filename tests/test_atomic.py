"""Files madx writes get the user's file mode (0o666 less the umask), whatever wrote them:
safetensors' save_file and tempfile.mkstemp both make -rw------- files."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from madx.atomic import atomic_save_file, atomic_save_pretrained, atomic_write, atomic_write_json


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_safetensors_file_gets_the_users_mode(tmp_path, umask):
    from safetensors.torch import save_file

    path = atomic_write(tmp_path / "a.safetensors", lambda tmp: save_file({"x": torch.zeros(2)}, tmp))
    assert mode(path) == 0o666 & ~umask
    assert mode(atomic_save_file({"x": torch.zeros(2)}, tmp_path / "b.safetensors")) == 0o666 & ~umask


def test_json_gets_the_users_mode_and_the_umask_is_unchanged(tmp_path, umask):
    assert mode(atomic_write_json(tmp_path / "a.json", {"a": 1})) == 0o666 & ~umask
    assert os.umask(umask) == umask


def test_save_pretrained_writes_every_file_with_the_users_mode(tmp_path, umask):
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16))
    out = atomic_save_pretrained(tmp_path / "model", model)
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert {p.name: mode(p) for p in out.iterdir()} == {name: 0o666 & ~umask for name in files}
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no temporary folder left behind"


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(tmp):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.bin", fail)
    assert list(tmp_path.iterdir()) == []
