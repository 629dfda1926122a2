"""Import of AdapterHub-format adapters: a directory written here in that library's layout
(key names and config as ``adapters`` 1.x ``save_adapter`` writes them), and AdapterHub's
forward written out independently (its pre_forward / forward / post_forward with the Pfeiffer config)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

import madx
from madx import Stack, active
from madx.adapterhub import import_adapterhub
from tests.conftest import tiny_batch, tiny_model

H, LAYERS = 32, 2


def write_adapterhub_dir(path, name, reduction, invertible, seed, prefix="roberta."):
    generator = torch.Generator().manual_seed(seed)
    d = H // reduction
    tensors = {}
    for layer in range(LAYERS):
        base = f"{prefix}encoder.layer.{layer}.output.adapters.{name}."
        tensors[base + "adapter_down.0.weight"] = torch.randn(d, H, generator=generator) * 0.2
        tensors[base + "adapter_down.0.bias"] = torch.randn(d, generator=generator) * 0.2
        tensors[base + "adapter_up.weight"] = torch.randn(H, d, generator=generator) * 0.2
        tensors[base + "adapter_up.bias"] = torch.randn(H, generator=generator) * 0.2
    if invertible:
        for net in "FG":
            base = f"{prefix}invertible_adapters.{name}.{net}."
            tensors[base + "0.weight"] = torch.randn(H // 4, H // 2, generator=generator) * 0.2
            tensors[base + "0.bias"] = torch.randn(H // 4, generator=generator) * 0.2
            tensors[base + "2.weight"] = torch.randn(H // 2, H // 4, generator=generator) * 0.2
            tensors[base + "2.bias"] = torch.randn(H // 2, generator=generator) * 0.2
    path.mkdir(parents=True)
    save_file(tensors, str(path / "adapter.safetensors"))
    config = {"original_ln_before": True, "original_ln_after": True, "residual_before_ln": True, "ln_before": False,
              "ln_after": False, "mh_adapter": False, "output_adapter": True, "non_linearity": "relu",
              "reduction_factor": reduction, "architecture": None}
    if invertible:
        config.update(inv_adapter="nice", inv_adapter_reduction_factor=2)
    (path / "adapter_config.json").write_text(json.dumps({
        "config": config, "hidden_size": H, "model_class": "XLMRobertaForTokenClassification",
        "model_name": "tiny", "model_type": "xlm-roberta", "name": name, "version": "adapters.1.3.0"}))
    return tensors


def adapterhub_layer_output(tensors, names, layer_index, r, x, ln, prefix="roberta."):
    """AdapterHub's Stack: pre_forward (LN(h + x), residual = h) before *every* adapter, post_forward at the end."""
    hidden = r
    for name in names:
        base = f"{prefix}encoder.layer.{layer_index}.output.adapters.{name}."
        residual = hidden
        normed = ln(hidden + x)
        down = F.relu(F.linear(normed, tensors[base + "adapter_down.0.weight"], tensors[base + "adapter_down.0.bias"]))
        hidden = F.linear(down, tensors[base + "adapter_up.weight"], tensors[base + "adapter_up.bias"]) + residual
    return ln(hidden + x)


def test_import_reproduces_adapterhub_stack_outputs(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    en = write_adapterhub_dir(tmp_path / "en", "en", reduction=2, invertible=True, seed=1)
    ner = write_adapterhub_dir(tmp_path / "ner", "ner", reduction=16, invertible=False, seed=2)
    assert import_adapterhub(model, tmp_path / "en", kind="language") == "en"
    assert import_adapterhub(model, tmp_path / "ner", kind="task") == "ner"

    layer = model.base_model.encoder.layer[1]
    x = torch.randn(2, 5, H)
    r = layer.output.dropout(layer.output.dense(layer.intermediate(x)))
    expected = adapterhub_layer_output({**en, **ner}, ["en", "ner"], 1, r, x, layer.output.LayerNorm)
    with active(model, Stack("en", "ner", mode="adapterhub")), torch.no_grad():
        got = layer.output(layer.intermediate(x), x)
    assert torch.allclose(got, expected.detach(), atol=1e-5)

    invertible = madx.get_store(model).get("en").invertible
    e = torch.randn(3, H)
    e1, e2 = e[:, : H // 2], e[:, H // 2 :]
    sub = lambda z, net: F.linear(F.relu(F.linear(z, en[f"roberta.invertible_adapters.en.{net}.0.weight"], en[f"roberta.invertible_adapters.en.{net}.0.bias"])),
                                  en[f"roberta.invertible_adapters.en.{net}.2.weight"], en[f"roberta.invertible_adapters.en.{net}.2.bias"])
    y1 = e1 + sub(e2, "F")
    y2 = e2 + sub(y1, "G")
    assert torch.allclose(invertible(e), torch.cat([y1, y2], -1), atol=1e-5)

    with active(model, Stack("en", "ner", mode="adapterhub")), torch.no_grad():
        model(**tiny_batch())  # the whole model runs with the imported adapters


def test_bare_model_keys_are_accepted(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    write_adapterhub_dir(tmp_path / "qu", "qu", reduction=2, invertible=False, seed=3, prefix="")
    assert import_adapterhub(model, tmp_path / "qu", kind="language") == "qu"


def test_unsupported_configs_and_pickles_are_refused(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    write_adapterhub_dir(tmp_path / "en", "en", reduction=2, invertible=False, seed=1)
    config_path = tmp_path / "en" / "adapter_config.json"
    saved = json.loads(config_path.read_text())
    saved["config"]["mh_adapter"] = True
    config_path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="config.mh_adapter is True"):
        import_adapterhub(model, tmp_path / "en", kind="language")
    saved["config"]["mh_adapter"] = False
    config_path.write_text(json.dumps(saved))
    (tmp_path / "en" / "adapter.safetensors").rename(tmp_path / "en" / "pytorch_adapter.bin")
    with pytest.raises(ValueError, match="never unpickles"):
        import_adapterhub(model, tmp_path / "en", kind="language")
    assert madx.adapter_names(model) == []
