"""Import adapters saved by AdapterHub (``adapters`` 1.x, or the older ``adapter-transformers``).

``model.save_adapter(dir, name)`` in that library writes ``adapter_config.json`` and the weights
(``adapter.safetensors``; ``pytorch_adapter.bin`` is a pickle and is refused here — convert it
with safetensors first). Keys are full model paths, e.g.::

    roberta.encoder.layer.3.output.adapters.en.adapter_down.0.weight   -> layers.3.down.weight
    roberta.encoder.layer.3.output.adapters.en.adapter_up.bias         -> layers.3.up.bias
    roberta.invertible_adapters.en.F.0.weight                          -> invertible.F.down.weight
    roberta.invertible_adapters.en.G.2.bias                            -> invertible.G.up.bias

(``layer_text_lang_adapters`` / ``layer_text_task_adapters`` / ``invertible_lang_adapters`` in
adapter-transformers v1.) Only the Pfeiffer ("seq_bn") placement is importable — it is the one
MAD-X uses; any other setting is refused by name. Stacks of imported adapters reproduce
AdapterHub's outputs with ``Stack(..., mode="adapterhub")`` (see ``madx.inject.layer``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from madx.inject.model import add_adapter, get_store

# the Pfeiffer placement (SeqBnConfig / SeqBnInvConfig) that madx implements
REQUIRED_SETTINGS = {
    "original_ln_before": True,
    "original_ln_after": True,
    "residual_before_ln": True,
    "adapter_residual_before_ln": False,
    "ln_before": False,
    "ln_after": False,
    "mh_adapter": False,
    "output_adapter": True,
    "non_linearity": "relu",
    "scaling": 1.0,
    "use_gating": False,
}
_LAYER_KEY = re.compile(
    r"(?:^|\.)layer\.(\d+)\.output\.(?:adapters|layer_text_lang_adapters|layer_text_task_adapters)\.([^.]+)\."
    r"adapter_(down\.0|up)\.(weight|bias)$"
)
_INVERTIBLE_KEY = re.compile(r"(?:^|\.)(?:invertible_adapters|invertible_lang_adapters)\.([^.]+)\.([FG])\.([02])\.(weight|bias)$")


def import_adapterhub(model: nn.Module, directory: str | Path, kind: str, name: str | None = None) -> str:
    """Load an AdapterHub-saved adapter directory into ``model`` as a madx ``kind`` adapter."""
    directory = Path(directory)
    config_path = directory / "adapter_config.json"
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{config_path}: not found; is {directory} an AdapterHub adapter directory?") from None
    settings = saved.get("config")
    if not isinstance(settings, dict):
        raise ValueError(f"{config_path}: expected a 'config' object with the adapter settings")
    for key, expected in REQUIRED_SETTINGS.items():
        if key in settings and settings[key] != expected:
            raise ValueError(
                f"{config_path}: config.{key} is {settings[key]!r}; madx imports only the Pfeiffer (seq_bn) placement "
                f"with {key}={expected!r}"
            )
    hidden = saved.get("hidden_size") or model.config.hidden_size
    if hidden != model.config.hidden_size:
        raise ValueError(f"{config_path}: adapter was trained for hidden size {hidden}, this model has {model.config.hidden_size}")

    weights_path = directory / "adapter.safetensors"
    if not weights_path.exists():
        if (directory / "pytorch_adapter.bin").exists():
            raise ValueError(
                f"{directory}: only pytorch_adapter.bin (a pickle) is there; madx never unpickles. Re-save it with "
                "safetensors (adapters: model.save_adapter(..., use_safetensors=True)) and import that."
            )
        raise FileNotFoundError(f"{weights_path}: AdapterHub weights are missing")
    layer_tensors, invertible_tensors, saved_names = _map_keys(load_file(str(weights_path)), weights_path)
    if len(saved_names) != 1:
        raise ValueError(f"{weights_path}: expected the weights of one adapter, found {sorted(saved_names)}")
    saved_name = saved_names.pop()

    down = layer_tensors.get("layers.0.down.weight")
    if down is None:
        raise ValueError(f"{weights_path}: no layer-0 adapter_down weight found")
    invertible_size = invertible_tensors["invertible.F.down.weight"].shape[0] if invertible_tensors else None
    if invertible_size is not None and kind != "language":
        raise ValueError(f"{weights_path}: has an invertible adapter, so it must be imported as kind='language'")
    name = name or saved.get("name") or saved_name
    adapter_set = add_adapter(model, name, kind, down.shape[0], invertible_size)
    try:
        expected = adapter_set.state_dict()
        tensors = {**layer_tensors, **invertible_tensors}
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{weights_path}: tensors do not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        adapter_set.load_state_dict(tensors)
    except Exception:
        del getattr(get_store(model), kind)[name]
        raise
    return name


def _map_keys(tensors: dict[str, torch.Tensor], path: Path) -> tuple[dict, dict, set[str]]:
    layer_tensors, invertible_tensors, names = {}, {}, set()
    for key, tensor in tensors.items():
        if match := _LAYER_KEY.search(key):
            layer, adapter_name, part, param = match.groups()
            layer_tensors[f"layers.{layer}.{'down' if part == 'down.0' else 'up'}.{param}"] = tensor
            names.add(adapter_name)
        elif match := _INVERTIBLE_KEY.search(key):
            adapter_name, net, index, param = match.groups()
            invertible_tensors[f"invertible.{net}.{'down' if index == '0' else 'up'}.{param}"] = tensor
            names.add(adapter_name)
        else:
            raise ValueError(f"{path}: key {key!r} is not a Pfeiffer bottleneck or NICE invertible adapter weight")
    return layer_tensors, invertible_tensors, names
