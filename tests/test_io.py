"""Bad adapter directories, written here case by case: every refusal names the file and the field or
tensor, on one bounded line, and leaves the model exactly as it was (not even attached)."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load, save_file

import madx
from madx.io import CONFIG_NAME, HEAD_NAME, WEIGHTS_NAME
from tests.conftest import randomise, tiny_batch, tiny_model

MAX_MESSAGE = 300  # characters, not counting the paths in it


@pytest.fixture
def task_dir(tmp_path):
    """A task adapter saved with its NER head."""
    model = tiny_model("xlm-roberta", "ner")
    madx.add_task_adapter(model, "ner")
    randomise(madx.get_store(model), seed=1)
    randomise(madx.task_heads(model, "ner")["classifier"], seed=2)
    return madx.save_adapter(model, "ner", tmp_path / "ner")


@pytest.fixture
def language_dir(tmp_path):
    """A language adapter with its invertible adapter."""
    model = tiny_model("xlm-roberta", "ner")
    madx.add_language_adapter(model, "qu")
    randomise(madx.get_store(model), seed=3)
    return madx.save_adapter(model, "qu", tmp_path / "qu")


def snapshot(model):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return madx.is_attached(model), madx.adapter_names(model), madx.get_active(model), hooks, state


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after[:4] == before[:4]
    assert after[4].keys() == before[4].keys() and all(torch.equal(after[4][k], v) for k, v in before[4].items())


def refused(directory, error, *fragments, model=None, path=None, **kwargs):
    """Load ``directory`` into ``model``; check the error names ``path`` and each fragment, on one short line,
    and that the model is untouched. Returns the message."""
    model = model if model is not None else tiny_model("xlm-roberta", "ner")
    before = snapshot(model)
    with pytest.raises(error) as info:
        madx.load_adapter(model, directory, **kwargs)
    message = str(info.value)
    assert str(path if path is not None else directory) in message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    assert len(message.replace(str(path or directory), "").replace(str(directory), "")) <= MAX_MESSAGE, message
    assert_unchanged(model, before)
    return message


def edit_config(directory, **changes):
    path = directory / CONFIG_NAME
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            del config[key]
        else:
            config[key] = value
    path.write_text(json.dumps(config))
    return path


def read_weights(path):
    return load(path.read_bytes())  # a copy: load_file's tensors may map the file we are about to overwrite


def edit_weights(directory, edit, name=WEIGHTS_NAME):
    path = directory / name
    tensors = read_weights(path)
    edit(tensors)
    save_file(tensors, str(path))
    return path


# ---- the directory and its files ----


def test_missing_directory(tmp_path):
    refused(tmp_path / "nowhere", FileNotFoundError, "the directory does not exist")


def test_file_instead_of_directory(task_dir):
    refused(task_dir / WEIGHTS_NAME, NotADirectoryError, "is a file, not a madx adapter directory", CONFIG_NAME)


def test_missing_config(task_dir):
    (task_dir / CONFIG_NAME).unlink()
    refused(task_dir, FileNotFoundError, "no adapter config here", path=task_dir / CONFIG_NAME)


def test_config_is_a_directory(task_dir):
    (task_dir / CONFIG_NAME).unlink()
    (task_dir / CONFIG_NAME).mkdir()
    refused(task_dir, IsADirectoryError, "is a directory", path=task_dir / CONFIG_NAME)


def test_missing_weights(task_dir):
    (task_dir / WEIGHTS_NAME).unlink()
    refused(task_dir, FileNotFoundError, "no such file", "task adapter 'ner'", path=task_dir / WEIGHTS_NAME)


def test_weights_are_a_directory(task_dir):
    (task_dir / WEIGHTS_NAME).unlink()
    (task_dir / WEIGHTS_NAME).mkdir()
    refused(task_dir, IsADirectoryError, "is a directory", path=task_dir / WEIGHTS_NAME)


def test_weights_symlink_loop(task_dir):
    weights = task_dir / WEIGHTS_NAME
    weights.unlink()
    os.symlink(task_dir / "other.safetensors", weights)
    os.symlink(weights, task_dir / "other.safetensors")
    refused(task_dir, OSError, "cannot read", "symbolic links", path=weights)


# ---- adapter_config.json ----


def test_config_invalid_json_names_line_and_column(task_dir):
    (task_dir / CONFIG_NAME).write_text('{\n  "name": "ner",\n  "kind": task\n}')
    refused(task_dir, ValueError, "not valid JSON", "line 3, column 11", path=task_dir / CONFIG_NAME)


def test_config_not_utf8(task_dir):
    (task_dir / CONFIG_NAME).write_bytes(b"\xff\xfe\x00garbage")
    refused(task_dir, ValueError, "not UTF-8", path=task_dir / CONFIG_NAME)


def test_config_as_a_list(task_dir):
    (task_dir / CONFIG_NAME).write_text('[{"name": "ner"}]')
    refused(task_dir, ValueError, "must be a JSON object", "(a list)", path=task_dir / CONFIG_NAME)


@pytest.mark.parametrize("field,value,expected", [
    ("hidden_size", "32", "a positive integer, got '32' (a string)"),
    ("bottleneck_size", -2, "a positive integer, got -2 (an integer)"),
    ("num_layers", 0, "a positive integer, got 0"),
    ("num_layers", True, "a positive integer, got True (a boolean)"),
    ("hidden_size", 32.0, "a positive integer, got 32.0 (a number)"),
    ("invertible_bottleneck_size", 0, "a positive integer or null, got 0"),
    ("name", "ner/wiki", "an adapter name (letters, digits, '_' or '-')"),
    ("name", 7, "an adapter name"),
    ("kind", "lang", "one of 'language', 'task', got 'lang'"),
    ("architecture", "", "a model_type"),
    ("base_model", None, "a string (name or path of the base model), got null"),
    ("head", "classifier", "a list of distinct task head names"),
    ("head", [], "a list of distinct task head names, e.g. ['classifier'], got []"),
    ("head", ["classifier", "classifier"], "distinct"),
    ("format_version", "1", "a positive integer, got '1' (a string)"),
    ("leave_out", [-1], "a list of distinct layer indices (0 = the first layer), e.g. [11], got [-1] (a list)"),
    ("leave_out", 1, "a list of distinct layer indices"),
    ("leave_out", [1, 1], "a list of distinct layer indices"),
    ("leave_out", None, "a list of distinct layer indices"),
    ("leave_out", [2], "some of layers 0..1, not all (num_layers is 2), got [2]"),
    ("leave_out", [0, 1], "some of layers 0..1, not all (num_layers is 2), got [0, 1]"),
])
def test_config_field_types_and_ranges(task_dir, field, value, expected):
    path = edit_config(task_dir, **{field: value})
    refused(task_dir, ValueError, f"field {field!r} must be", expected, path=path)


def test_config_invertible_only_on_language_adapters(task_dir):
    path = edit_config(task_dir, invertible_bottleneck_size=4)
    refused(task_dir, ValueError, "field 'invertible_bottleneck_size' must be null for a task adapter", path=path)


def test_config_head_only_on_task_adapters(language_dir):
    path = edit_config(language_dir, head=["classifier"])
    refused(language_dir, ValueError, "field 'head' must be null for a language adapter", path=path)


def test_config_odd_hidden_size_with_invertible_adapter(language_dir):
    path = edit_config(language_dir, hidden_size=33)
    refused(language_dir, ValueError, "field 'hidden_size' must be even", path=path)


def test_config_unknown_field_suggests_the_nearest(task_dir):
    config = json.loads((task_dir / CONFIG_NAME).read_text())
    config["hiden_size"] = config.pop("hidden_size")
    (task_dir / CONFIG_NAME).write_text(json.dumps(config))
    refused(task_dir, ValueError, "unknown field(s) 'hiden_size' (did you mean 'hidden_size'?)", path=task_dir / CONFIG_NAME)


def test_config_unknown_field_without_a_near_one_lists_the_known(task_dir):
    path = edit_config(task_dir, colour="blue")
    message = refused(task_dir, ValueError, "unknown field(s) 'colour'; known fields: name, kind", path=path)
    assert "did you mean" not in message


def test_config_from_a_newer_madx(task_dir):
    path = edit_config(task_dir, format_version=3, colour="blue")  # a newer format may have new fields
    message = refused(task_dir, ValueError, "format_version 3 is newer", "written by a newer madx", path=path)
    assert "unknown" not in message


def test_config_missing_field(task_dir):
    path = edit_config(task_dir, bottleneck_size=...)
    refused(task_dir, ValueError, "missing field(s) bottleneck_size", path=path)


def test_adapterhub_config_is_pointed_to_the_importer(task_dir):
    (task_dir / CONFIG_NAME).write_text(json.dumps({"config": {}, "hidden_size": 32, "name": "ner"}))
    refused(task_dir, ValueError, "AdapterHub adapter config", "import_adapterhub", path=task_dir / CONFIG_NAME)


def test_messages_stay_short(task_dir):
    path = edit_config(task_dir, **{"x" * 5000: 1, "y" * 5000: 2})
    refused(task_dir, ValueError, "unknown field(s) 'xxxx", "xxx...xxx", "xxx', 'yyy", path=path)


def test_long_tensor_names_are_cut(task_dir):
    path = edit_weights(task_dir, lambda t: t.update({c * 400: torch.zeros(1) for c in "abcd"}))
    refused(task_dir, ValueError, "do not match this model: unexpected ['aaaa", "…", path=path)


# ---- adapter.safetensors ----


def test_zero_byte_weights(task_dir):
    (task_dir / WEIGHTS_NAME).write_bytes(b"")
    refused(task_dir, ValueError, "not a readable safetensors file (0 bytes", "header too small", path=task_dir / WEIGHTS_NAME)


def test_truncated_weights(task_dir):
    data = (task_dir / WEIGHTS_NAME).read_bytes()
    (task_dir / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    refused(task_dir, ValueError, f"not a readable safetensors file ({len(data) // 2} bytes", path=task_dir / WEIGHTS_NAME)


def test_truncated_header(task_dir):
    data = (task_dir / WEIGHTS_NAME).read_bytes()
    (task_dir / WEIGHTS_NAME).write_bytes(data[:40])
    refused(task_dir, ValueError, "not a readable safetensors file (40 bytes", path=task_dir / WEIGHTS_NAME)


def test_random_bytes_as_weights(task_dir):
    (task_dir / WEIGHTS_NAME).write_bytes(torch.randint(0, 256, (512,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes())
    refused(task_dir, ValueError, "not a readable safetensors file (512 bytes", path=task_dir / WEIGHTS_NAME)


def test_pickle_renamed_to_safetensors(task_dir):
    (task_dir / WEIGHTS_NAME).write_bytes(pickle.dumps({"layers.0.down.weight": [0.0]}, protocol=4))
    refused(task_dir, ValueError, "looks like a PyTorch pickle (a pickle stream)", "never unpickles", "save_file(", path=task_dir / WEIGHTS_NAME)


def test_torch_save_zip_renamed_to_safetensors(task_dir):
    torch.save(read_weights(task_dir / WEIGHTS_NAME), task_dir / WEIGHTS_NAME)
    refused(task_dir, ValueError, "looks like a PyTorch pickle (a torch.save zip archive)", "never unpickles", path=task_dir / WEIGHTS_NAME)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool])
def test_non_floating_weights(task_dir, dtype):
    path = edit_weights(task_dir, lambda t: t.update({"layers.1.down.weight": t["layers.1.down.weight"].to(dtype)}))
    refused(task_dir, ValueError, "tensor 'layers.1.down.weight' of task adapter 'ner'", f"dtype {dtype}", "floating", path=path)


@pytest.mark.parametrize("value,fragment", [(float("nan"), "1 NaN and 0 infinite"), (float("inf"), "0 NaN and 1 infinite"), (float("-inf"), "0 NaN and 1 infinite")])
def test_non_finite_weights(task_dir, value, fragment):
    def poison(tensors):
        tensors["layers.0.up.weight"][3, 1] = value

    path = edit_weights(task_dir, poison)
    refused(task_dir, ValueError, "tensor 'layers.0.up.weight'", fragment, path=path)


def test_missing_tensor(task_dir):
    path = edit_weights(task_dir, lambda t: t.pop("layers.1.up.bias"))
    refused(task_dir, ValueError, "missing ['layers.1.up.bias']", path=path)


def test_extra_tensor(task_dir):
    path = edit_weights(task_dir, lambda t: t.update({"layers.2.down.weight": torch.zeros(2, 32)}))
    refused(task_dir, ValueError, "unexpected ['layers.2.down.weight']", path=path)


def test_wrong_shape_names_tensor_and_both_shapes(task_dir):
    path = edit_weights(task_dir, lambda t: t.update({"layers.0.down.weight": torch.zeros(3, 32)}))
    refused(task_dir, ValueError, "tensor 'layers.0.down.weight'", "shape (3, 32), expected (2, 32)", path=path)


def test_config_sizes_must_match_the_weights(task_dir):
    path = edit_config(task_dir, bottleneck_size=10**9)  # checked on the meta device: nothing that size is allocated
    refused(task_dir, ValueError, "tensor 'layers.0.down.weight'", "shape (2, 32), expected (1000000000, 32)", path=task_dir / WEIGHTS_NAME)
    assert path.exists()


def test_half_precision_weights_are_cast_to_the_model_dtype(task_dir):
    """Decision: any floating dtype loads, cast to the model's dtype (as load_state_dict casts)."""
    saved = read_weights(task_dir / WEIGHTS_NAME)
    edit_weights(task_dir, lambda t: t.update({k: v.half() for k, v in t.items()}))
    model = tiny_model("xlm-roberta", "ner")
    madx.load_adapter(model, task_dir)
    loaded = madx.get_store(model).get("ner").state_dict()
    assert all(v.dtype == torch.float32 and torch.equal(v, saved[k].half().float()) for k, v in loaded.items())


def test_values_that_overflow_the_model_dtype(task_dir):
    path = edit_weights(task_dir, lambda t: t["layers.0.up.bias"].fill_(1e6))
    model = tiny_model("xlm-roberta", "ner").half()
    refused(task_dir, ValueError, "tensor 'layers.0.up.bias'", "overflows this model's torch.float16", "1e+06", model=model, path=path)


# ---- head.safetensors ----


def test_bad_head_leaves_head_and_adapters_untouched(task_dir):
    def poison(tensors):
        tensors["classifier.weight"][0, 0] = float("nan")

    path = edit_weights(task_dir, poison, name=HEAD_NAME)
    refused(task_dir, ValueError, "tensor 'classifier.weight' of the head of 'ner'", "1 NaN", path=path)


def test_head_missing_from_the_model(task_dir):
    refused(task_dir, ValueError, "saved with head(s) ['classifier']", "XLMRobertaForMaskedLM lacks", model=tiny_model("xlm-roberta", "mlm"))


def test_head_skipped_when_not_loaded(task_dir):
    (task_dir / HEAD_NAME).write_bytes(b"")
    model = tiny_model("xlm-roberta", "ner")
    classifier = model.classifier.weight.clone()
    assert madx.load_adapter(model, task_dir, load_head=False) == "ner"
    assert torch.equal(model.classifier.weight, classifier)
    assert torch.equal(madx.task_heads(model, "ner")["classifier"].weight, classifier), "without the saved head: a copy of the model's"


# ---- a model that already has adapters ----


def test_failure_on_an_attached_model_with_an_active_setup(task_dir, language_dir):
    model = tiny_model("xlm-roberta", "ner")
    madx.load_adapter(model, language_dir)
    madx.add_task_adapter(model, "pos")
    madx.set_active(model, madx.Stack("qu", "pos"))
    with torch.no_grad():
        expected = model(**tiny_batch()).logits
    edit_weights(task_dir, lambda t: t["layers.1.up.weight"].fill_(float("nan")))
    refused(task_dir, ValueError, "tensor 'layers.1.up.weight'", model=model, path=task_dir / WEIGHTS_NAME)
    with torch.no_grad():
        assert torch.equal(model(**tiny_batch()).logits, expected)


def test_name_already_loaded(task_dir):
    model = tiny_model("xlm-roberta", "ner")
    madx.load_adapter(model, task_dir)
    refused(task_dir, ValueError, "an adapter named 'ner' is already loaded", model=model)
    assert madx.load_adapter(model, task_dir, name="ner2", load_head=False) == "ner2"


def test_good_directory_still_loads(task_dir, language_dir):
    model = tiny_model("xlm-roberta", "ner")
    assert madx.load_adapter(model, language_dir) == "qu"
    assert madx.load_adapter(model, task_dir) == "ner"
    assert madx.adapter_names(model) == ["qu", "ner"]


# ---- leave_out (MAD-X 2.0: no adapters in the last layer) ----


@pytest.fixture
def madx2_dir(tmp_path):
    """A MAD-X 2.0 language adapter: no adapter in the last of the tiny model's 2 layers."""
    model = tiny_model("xlm-roberta", "ner")
    madx.add_language_adapter(model, "qu", madx.get_variant("madx2").adapter_config())
    randomise(madx.get_store(model), seed=3)
    return madx.save_adapter(model, "qu", tmp_path / "qu2")


def test_leave_out_is_saved_and_loaded(madx2_dir):
    assert json.loads((madx2_dir / CONFIG_NAME).read_text())["leave_out"] == [1]  # resolved: -1 is layer 1 of 2
    assert not any(key.startswith("layers.1.") for key in read_weights(madx2_dir / WEIGHTS_NAME))
    model = tiny_model("xlm-roberta", "ner")
    assert madx.load_adapter(model, madx2_dir) == "qu"
    adapter_set = madx.get_store(model).get("qu")
    assert adapter_set.leave_out == (1,) and adapter_set.layers[1] is None and adapter_set.invertible is not None
    assert madx.load_adapter(model, madx2_dir, name="qu_again", leave_out=(-1,)) == "qu_again"  # what it expects


def test_files_without_leave_out_are_written_and_read_as_before(language_dir):
    """Format compatibility: adapters in every layer write no leave_out field (so earlier madx reads them), and a
    file without the field, as every earlier madx wrote, loads with no layer left out."""
    config = json.loads((language_dir / CONFIG_NAME).read_text())
    assert "leave_out" not in config
    assert sorted(config) == ["architecture", "base_model", "bottleneck_size", "format_version", "head", "hidden_size",
                              "invertible_bottleneck_size", "kind", "library", "name", "num_layers"]
    assert config["library"] == "madx" and config["format_version"] == 2
    del config["library"]
    (language_dir / CONFIG_NAME).write_text(json.dumps({**config, "format_version": 1}))  # as madx wrote it before "library"
    model = tiny_model("xlm-roberta", "ner")
    madx.load_adapter(model, language_dir, leave_out=())
    assert madx.get_store(model).get("qu").leave_out == ()


def test_leave_out_other_than_expected_names_the_field(tmp_path):
    model = tiny_model("xlm-roberta", "ner", num_hidden_layers=12)
    madx.add_task_adapter(model, "ner", madx.adapters.AdapterConfig(leave_out=(11,)))
    directory = madx.save_adapter(model, "ner", tmp_path / "ner")
    fresh = tiny_model("xlm-roberta", "ner", num_hidden_layers=12)
    refused(directory, ValueError, "field 'leave_out' is [11]", "has no adapter in layer(s) 11",
            "but leave_out=[] (adapters in every layer) was expected", model=fresh, path=directory / CONFIG_NAME, leave_out=())
    refused(directory, ValueError, "field 'leave_out' is [11]", "leave_out=[0, -1] (no adapter in layer(s) 0, 11) was expected",
            model=fresh, path=directory / CONFIG_NAME, leave_out=(0, -1))
    assert madx.load_adapter(fresh, directory, leave_out=(-1,)) == "ner"


def test_leave_out_of_a_madx_adapter_when_madx2_is_expected(language_dir):
    refused(language_dir, ValueError, "field 'leave_out' is []", "has adapters in every layer",
            "leave_out=[-1] (no adapter in layer(s) 1) was expected",
            path=language_dir / CONFIG_NAME, leave_out=(-1,))


def test_weights_must_match_leave_out(madx2_dir):
    path = edit_config(madx2_dir, leave_out=...)  # the field dropped: the file now claims every layer
    refused(madx2_dir, ValueError, "missing ['layers.1.down.weight', 'layers.1.down.bias', 'layers.1.up.weight'] and 1 more",
            path=madx2_dir / WEIGHTS_NAME)
    edit_config(madx2_dir, leave_out=[0])
    refused(madx2_dir, ValueError, "missing", "layers.1.", "unexpected", "layers.0.", path=madx2_dir / WEIGHTS_NAME)
    assert path.exists()


# ---- where adapters come from: local folders, the Hub's cache, other libraries' folders ----


def _hub_cache(root, repo_id, files_from, revision="main", subfolder=None):
    """A Hugging Face Hub cache holding ``repo_id`` at ``revision``, laid out as huggingface_hub writes it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit / (subfolder or "")
    snapshot.mkdir(parents=True)
    for path in files_from.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / revision).write_text(commit)
    return root


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the test never reaches the network
    monkeypatch.chdir(tmp_path)
    return tmp_path / "hub-cache"


def test_load_adapter_from_a_hub_repo_id(offline_hub, task_dir):
    _hub_cache(offline_hub, "someone/ner-adapter", task_dir)
    _hub_cache(offline_hub, "someone/two-adapters", task_dir, subfolder="ner")
    expected = tiny_model("xlm-roberta", "ner")
    madx.load_adapter(expected, task_dir)
    for repo, kwargs in (("someone/ner-adapter", {}), ("someone/two-adapters", {"subfolder": "ner"})):
        model = tiny_model("xlm-roberta", "ner")
        assert madx.load_adapter(model, repo, **kwargs) == "ner"
        for key, tensor in madx.get_store(expected).get("ner").state_dict().items():
            assert torch.equal(madx.get_store(model).get("ner").state_dict()[key], tensor)
        assert torch.equal(madx.task_heads(model, "ner")["classifier"].weight, madx.task_heads(expected, "ner")["classifier"].weight)
    with pytest.raises(FileNotFoundError, match="no local directory of that name, and the Hugging Face Hub repo 'someone/missing' could not be fetched"):
        madx.load_adapter(tiny_model("xlm-roberta", "ner"), "someone/missing")


def test_a_missing_local_path_is_not_looked_up_on_the_hub(offline_hub, tmp_path):
    (tmp_path / "adapters").mkdir()
    with pytest.raises(FileNotFoundError, match="adapters/qu: no adapter config here: the directory does not exist"):
        madx.load_adapter(tiny_model("xlm-roberta", "ner"), "adapters/qu")  # 'adapters/' is a local folder


def test_the_folder_above_an_adapter_names_the_adapter(tmp_path, language_dir):
    """``madx train-lang --out adapters/en`` writes adapters/en/adapter; loading adapters/en says so."""
    outer = tmp_path / "adapters" / "en"
    outer.mkdir(parents=True)
    language_dir.rename(outer / "adapter")
    with pytest.raises(FileNotFoundError, match=f"no adapter_config.json here, but {outer / 'adapter'} has one .*; pass {outer / 'adapter'}"):
        madx.load_adapter(tiny_model("xlm-roberta", "ner"), outer)


def test_a_peft_adapter_is_refused_with_the_library_that_reads_it(tmp_path):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / CONFIG_NAME).write_text(json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["query"]}))
    refused(tmp_path / "lora", ValueError, "this is a PEFT adapter config (peft_type 'LORA' (a string))", "peft",
            path=tmp_path / "lora" / CONFIG_NAME)


def test_the_base_model_warning_compares_the_model_not_the_path_string(tmp_path, monkeypatch, caplog, language_dir):
    base = tmp_path / "models" / "tiny"
    tiny_model("xlm-roberta", "ner").save_pretrained(base)
    config = json.loads((language_dir / CONFIG_NAME).read_text())
    (language_dir / CONFIG_NAME).write_text(json.dumps({**config, "base_model": "models/tiny"}))  # as train-lang run from tmp_path writes it
    monkeypatch.chdir(tmp_path)
    model = type(tiny_model("xlm-roberta", "ner")).from_pretrained(str(base.resolve()))
    with caplog.at_level("WARNING", logger="madx.io"):
        madx.load_adapter(model, language_dir)
    assert not [r for r in caplog.records if "trained on base model" in r.message]
    other = type(model).from_pretrained(str(base.resolve()))
    other.config._name_or_path = "xlm-roberta-base"
    with caplog.at_level("WARNING", logger="madx.io"):
        madx.load_adapter(other, language_dir)
    assert [r for r in caplog.records if "trained on base model 'models/tiny', loading into 'xlm-roberta-base'" in r.message]
