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

Files are read and checked as ``madx.io`` does (every error names the file and the field or the
tensor, by the key the file uses; NaN, inf and non-float weights are refused; nothing is attached
unless everything fits). Only the fields madx uses are checked: AdapterHub's config has many
more, and other versions of that library add their own.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from madx.adapters.sets import ADAPTER_KINDS
from madx.compose.stack import Stack
from madx.inject.model import adapter_names
from madx.io import (
    check_directory,
    check_tensors,
    describe,
    expected_adapter_state,
    file_error,
    install_adapter,
    is_positive_int,
    read_json_object,
    read_tensors,
)

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
PICKLE_NAME = "pytorch_adapter.bin"

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
    "is_parallel": False,
}
BOTTLENECK_ARCHITECTURES = (None, "bottleneck")  # config.architecture of AdapterHub's bottleneck adapters
_LAYER_KEY = re.compile(
    r"(?:^|\.)layer\.(\d+)\.output\.(?:adapters|layer_text_lang_adapters|layer_text_task_adapters)\.([^.]+)\."
    r"adapter_(down\.0|up)\.(weight|bias)$"
)
_INVERTIBLE_KEY = re.compile(r"(?:^|\.)(?:invertible_adapters|invertible_lang_adapters)\.([^.]+)\.([FG])\.([02])\.(weight|bias)$")


def import_adapterhub(model: nn.Module, directory: str | Path, kind: str, name: str | None = None) -> str:
    """Load an AdapterHub-saved adapter directory into ``model`` as a madx ``kind`` adapter.

    Everything is read and checked first; on any error the model is left exactly as it was."""
    if kind not in ADAPTER_KINDS:
        raise ValueError(f"kind must be one of {ADAPTER_KINDS}, got {kind!r}")
    directory = Path(directory)
    check_directory(directory, "an AdapterHub adapter directory")
    config_path = directory / CONFIG_NAME
    saved = read_json_object(config_path, "AdapterHub adapter config", missing=f"not found; is {directory} an AdapterHub adapter directory?")
    _check_config(saved, config_path, model)

    weights_path = directory / WEIGHTS_NAME
    if not (weights_path.exists() or weights_path.is_symlink()) and (directory / PICKLE_NAME).exists():
        raise file_error(
            directory, f"only {PICKLE_NAME} (a pickle) is there; madx never unpickles. Re-save it with safetensors "
            "(adapters: model.save_adapter(..., use_safetensors=True)) and import that.",
        )
    layer_tensors, invertible_tensors, saved_names, shown = _map_keys(read_tensors(weights_path, "AdapterHub weights"), weights_path)
    if len(saved_names) != 1:
        raise file_error(weights_path, f"expected the weights of one adapter, found {sorted(saved_names)}")
    saved_name = saved_names.pop()
    bottleneck_size = _bottleneck_size(layer_tensors, "layers.0.down.weight", "layer-0 adapter_down", shown, weights_path)
    invertible_size = None
    if invertible_tensors:
        if kind != "language":
            raise file_error(weights_path, "has an invertible adapter, so it must be imported as kind='language'")
        invertible_size = _bottleneck_size(invertible_tensors, "invertible.F.down.weight", "invertible F.0", shown, weights_path)
    tensors = {**layer_tensors, **invertible_tensors}
    expected = expected_adapter_state(model, kind, bottleneck_size, invertible_size)
    check_tensors(tensors, expected, weights_path, f"AdapterHub adapter {saved_name!r}", shown)

    if name is None:
        name = saved.get("name") or saved_name
        if not _valid_name(name):
            raise file_error(config_path, f"adapter name {name!r} is not a madx name (letters, digits, '_' or '-'); pass name=... to import it")
    if name in adapter_names(model):
        raise file_error(directory, f"an adapter named {name!r} is already loaded on this model; delete it first or pass another name")
    install_adapter(model, name, kind, bottleneck_size, invertible_size, tensors)
    return name


def _check_config(saved: dict, path: Path, model: nn.Module) -> None:
    if "kind" in saved and "format_version" in saved:
        raise file_error(path, "this is a madx adapter config, not an AdapterHub one; load it with madx.load_adapter(model, directory)")
    settings = saved.get("config")
    if not isinstance(settings, dict):
        raise file_error(path, f"expected a 'config' object with the adapter settings, got {describe(settings)}")
    for key, expected in REQUIRED_SETTINGS.items():
        if key in settings and settings[key] != expected:
            raise file_error(path, f"config.{key} is {settings[key]!r}; madx imports only the Pfeiffer (seq_bn) placement with {key}={expected!r}")
    architecture = settings.get("architecture")
    if architecture not in BOTTLENECK_ARCHITECTURES:
        raise file_error(path, f"config.architecture is {describe(architecture)}; madx imports only bottleneck adapters (seq_bn)")
    legacy = settings.get("invertible_adapter")  # adapter-transformers v1: {"block_type": "nice", ...}
    for key, block in (("inv_adapter", settings.get("inv_adapter")), ("invertible_adapter.block_type", legacy.get("block_type") if isinstance(legacy, dict) else None)):
        if block not in (None, "nice"):
            raise file_error(path, f"config.{key} is {describe(block)}; madx's invertible adapter is NICE ('nice')")
    for key in ("name", "model_type"):
        if saved.get(key) is not None and not isinstance(saved[key], str):
            raise file_error(path, f"field {key!r} must be a string or null, got {describe(saved[key])}")
    hidden = saved.get("hidden_size")
    if hidden is not None and not is_positive_int(hidden):
        raise file_error(path, f"field 'hidden_size' must be a positive integer, got {describe(hidden)}")
    if hidden is not None and hidden != model.config.hidden_size:
        raise file_error(path, f"adapter was trained for hidden size {hidden}, this model has {model.config.hidden_size}")
    model_type = saved.get("model_type")
    if model_type and model_type != model.config.model_type:
        raise file_error(path, f"adapter was trained with model_type {model_type!r}, this model is {model.config.model_type!r}")


def _bottleneck_size(tensors: dict[str, torch.Tensor], key: str, what: str, shown: dict[str, str], path: Path) -> int:
    down = tensors.get(key)
    if down is None:
        raise file_error(path, f"no {what} weight found")
    if down.dim() != 2 or down.shape[0] < 1:
        raise file_error(path, f"tensor {shown[key]!r} has shape {tuple(down.shape)}, expected a (bottleneck, input) matrix")
    return down.shape[0]


def _valid_name(name) -> bool:
    try:
        Stack(name)
    except ValueError:
        return False
    return True


def _map_keys(tensors: dict[str, torch.Tensor], path: Path) -> tuple[dict, dict, set[str], dict[str, str]]:
    layer_tensors, invertible_tensors, names, shown = {}, {}, set(), {}
    for key, tensor in tensors.items():
        if match := _LAYER_KEY.search(key):
            layer, adapter_name, part, param = match.groups()
            target, mapped = layer_tensors, f"layers.{layer}.{'down' if part == 'down.0' else 'up'}.{param}"
        elif match := _INVERTIBLE_KEY.search(key):
            adapter_name, net, index, param = match.groups()
            target, mapped = invertible_tensors, f"invertible.{net}.{'down' if index == '0' else 'up'}.{param}"
        else:
            raise file_error(path, f"key {key!r} is not a Pfeiffer bottleneck or NICE invertible adapter weight")
        if mapped in shown:
            raise file_error(path, f"keys {shown[mapped]!r} and {key!r} are the same adapter weight")
        target[mapped], shown[mapped] = tensor, key
        names.add(adapter_name)
    return layer_tensors, invertible_tensors, names, shown
