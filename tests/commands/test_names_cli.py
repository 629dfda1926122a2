"""Local paths are checked before any hub lookup, and names get a did-you-mean: a mistyped folder is
"no such folder" at once (not half a minute of hub retries), a near preset or language is suggested."""

from __future__ import annotations

import pytest

from madx import cli
from tests.commands.tiny import make_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    make_tiny(root)
    (root / "models").mkdir()
    (root / "model").rename(root / "models" / "tiny")
    return root


@pytest.fixture
def no_hub(monkeypatch):
    """Any hub lookup fails the test."""
    import huggingface_hub
    import transformers

    def hub(*args, **kwargs):
        raise AssertionError(f"the hub was asked: {args}")

    monkeypatch.setattr(huggingface_hub, "file_exists", hub)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)


@pytest.mark.parametrize("command", [
    ["evaluate", "--task", "ner", "--test", "test-qu.tsv", "--out", "x"],
    ["train-lang", "--language", "qu", "--text", "en.txt", "--out", "x"],
    ["train-task", "--task", "ner", "--train", "train-en.tsv", "--dev", "train-en.tsv", "--method", "madx-lad-inv", "--out", "x"],
])
def test_a_mistyped_model_folder_is_no_such_folder_at_once(tiny, monkeypatch, capsys, no_hub, command):
    monkeypatch.chdir(tiny)
    assert cli.main([*command, "--model", "models/tinyy"]) == 2
    assert capsys.readouterr().err == f"madx {command[0]}: error: --model models/tinyy: no such folder (did you mean models/tiny?)\n"


def test_params_suggests_the_preset(tiny, monkeypatch, capsys, no_hub):
    monkeypatch.chdir(tiny)
    assert cli.main(["params", "--arch", "xlm-roberta-bas"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("madx params: error: --arch xlm-roberta-bas: ") and err.endswith("(did you mean xlm-roberta-base?)\n")
    assert cli.main(["params", "--arch", "xlm-roberta-base"]) == 0


def test_an_unknown_language_gets_the_nearest_from_the_table(tiny, monkeypatch, capsys, no_hub):
    monkeypatch.chdir(tiny)
    assert cli.main(["train-lang", "--model", "models/tiny", "--language", "quu", "--text", "en.txt", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("madx train-lang: error: --language quu: unknown language code 'quu'. Did you mean 'qu' (Quechua)?")
    assert err.rstrip().endswith("for a language outside the table add --unlisted-language") and not (tiny / "x").exists()


def test_a_missing_data_file_gets_the_nearest_file(tiny, monkeypatch, capsys, no_hub):
    monkeypatch.chdir(tiny)
    assert cli.main(["evaluate", "--model", "models/tiny", "--task", "ner", "--test", "test-qux.tsv", "--out", "x"]) == 2
    assert capsys.readouterr().err == "madx evaluate: error: --test test-qux.tsv: no such file (did you mean test-qu.tsv?)\n"


def test_the_output_folder_of_train_lang_points_to_its_adapter(tiny, monkeypatch, capsys, no_hub):
    monkeypatch.chdir(tiny)
    (tiny / "adapters" / "en" / "adapter").mkdir(parents=True)
    (tiny / "adapters" / "en" / "adapter" / "adapter_config.json").write_text("{}")
    assert cli.main(["evaluate", "--model", "models/tiny", "--task", "ner", "--test", "test-qu.tsv", "--out", "x",
                     "--language-adapter", "adapters/en", "--task-adapter", "adapters/en"]) == 2
    assert capsys.readouterr().err == ("madx evaluate: error: --language-adapter adapters/en: no adapter_config.json here, "
                                       "so not a madx adapter folder; it holds adapters/en/adapter: did you mean "
                                       "adapters/en/adapter?\n")


def test_calibrating_a_preset_model_needs_no_hub(no_hub):
    from bench.calibrate import model_config

    config = model_config({"name_or_path": "xlm-roberta-base"})
    assert (config.model_type, config.hidden_size, config.num_hidden_layers, config.vocab_size) == ("xlm-roberta", 768, 12, 250002)


def test_the_presets_here_are_madx_params_presets():
    from madx.commands.params import PRESETS
    from madx.params import ARCH_PRESETS

    assert PRESETS == tuple(ARCH_PRESETS)
