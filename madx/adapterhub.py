"""Import adapters saved by AdapterHub (``adapters`` 1.x, or the older ``adapter-transformers``),
and export madx adapters in that layout.

``model.save_adapter(dir, name)`` in that library writes ``adapter_config.json`` and the weights
(``adapter.safetensors``; ``pytorch_adapter.bin`` is a pickle and is refused here — convert it
with safetensors first). Keys are full model paths, e.g.::

    roberta.encoder.layer.3.output.adapters.en.adapter_down.0.weight   -> layers.3.down.weight
    roberta.encoder.layer.3.output.adapters.en.adapter_up.bias         -> layers.3.up.bias
    roberta.invertible_adapters.en.F.0.weight                          -> invertible.F.down.weight
    roberta.invertible_adapters.en.G.2.bias                            -> invertible.G.up.bias

(``layer_text_lang_adapters`` / ``layer_text_task_adapters`` / ``invertible_lang_adapters`` in
adapter-transformers v1.) ``config.leave_out`` (MAD-X 2.0: the last layer) is read: those layers get no
adapter, and their weights must be absent. Only the Pfeiffer ("seq_bn") placement is importable — it is the one
MAD-X uses; any other setting is refused by name. Stacks of imported adapters reproduce
AdapterHub's outputs with ``Stack(..., mode="adapterhub")`` (see ``madx.inject.layer``).

Files are read and checked as ``madx.io`` does (every error names the file and the field or the
tensor, by the key the file uses; NaN, inf and non-float weights are refused; nothing is attached
unless everything fits). Only the fields madx uses are checked: AdapterHub's config has many
more, and other versions of that library add their own. A task adapter's prediction head is
imported too when the directory has one (``model_head.safetensors``, the static-head layout that
``save_adapter`` writes from a plain HF model: ``classifier.weight``, ``qa_outputs.bias``, ...).

``export_adapterhub`` writes the reverse: what ``adapters`` 1.x ``model.save_adapter(dir, name,
use_safetensors=True)`` writes from a plain HF model with a Pfeiffer (``SeqBnConfig``, or
``SeqBnInvConfig`` with the invertible adapter) adapter, so that library loads it with
``adapters.init(model); model.load_adapter(dir, use_safetensors=True)``. Weights only as
safetensors: madx writes no pickles, so that library's default ``use_safetensors=False`` (which
looks for ``pytorch_adapter.bin``) does not find them. What AdapterHub then computes is its own
stacking, not MAD-X eq. 2; see ``madx.inject.layer``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from madx.adapters.config import resolve_layers
from madx.adapters.sets import ADAPTER_KINDS
from madx.atomic import atomic_write_json
from madx.compose.stack import Stack
from madx.inject.model import adapter_names, get_store, head_state, task_heads
from madx.inject.spec import spec_for_model_type
from madx.io import (
    _save_tensors,
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

logger = logging.getLogger(__name__)

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
PICKLE_NAME = "pytorch_adapter.bin"
HEAD_CONFIG_NAME = "head_config.json"
HEAD_WEIGHTS_NAME = "model_head.safetensors"
HEAD_PICKLE_NAME = "pytorch_model_head.bin"

# The ``adapters`` release whose ``save_adapter`` layout the export reproduces (and whose
# ``load_adapter`` was checked against it). Written as the config's "version": that loader reads it
# to choose its backward-compatibility fixes, and a config without one takes adapter-transformers'
# legacy path.
EXPORT_VERSION = "adapters.1.3.0"

# ``SeqBnConfig().to_dict()`` of that release: the Pfeiffer placement, every field as it writes it.
# ``reduction_factor`` (and, with an invertible adapter, ``inv_adapter`` / ``inv_adapter_reduction_factor``)
# are filled in per adapter.
PFEIFFER_CONFIG = {
    "adapter_residual_before_ln": False,
    "cross_adapter": False,
    "dropout": 0.0,
    "factorized_phm_W": True,
    "factorized_phm_rule": False,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "init_weights": "bert",
    "init_weights_seed": None,
    "inv_adapter": None,
    "inv_adapter_reduction_factor": None,
    "is_parallel": False,
    "learn_phm": True,
    "leave_out": [],
    "ln_after": False,
    "ln_before": False,
    "mh_adapter": False,
    "non_linearity": "relu",
    "original_ln_after": True,
    "original_ln_before": True,
    "output_adapter": True,
    "phm_bias": True,
    "phm_c_init": "normal",
    "phm_dim": 4,
    "phm_init_range": 0.0001,
    "phm_layer": False,
    "phm_rank": 1,
    "reduction_factor": None,
    "residual_before_ln": True,
    "scaling": 1.0,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "stochastic_depth": 0.0,
    "use_gating": False,
}

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


def import_adapterhub(model: nn.Module, directory: str | Path, kind: str, name: str | None = None, load_head: bool = True) -> str:
    """Load an AdapterHub-saved adapter directory into ``model`` as a madx ``kind`` adapter. Returns its name.

    AdapterHub does not record whether an adapter is a language or a task adapter, so ``kind`` says
    it. A task adapter saved with its prediction head (``model_head.safetensors``) brings the head
    along unless ``load_head=False``. Activate stacks of imported adapters with
    ``Stack(..., mode="adapterhub")`` to compute what AdapterHub computes.

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
    leave_out = _leave_out(saved["config"], config_path, model)
    first = next(i for i in range(model.config.num_hidden_layers) if i not in leave_out)
    kept = f" (config.leave_out is {list(leave_out)})" if leave_out else ""
    bottleneck_size = _bottleneck_size(layer_tensors, f"layers.{first}.down.weight", f"layer-{first} adapter_down", shown, weights_path, kept)
    invertible_size = None
    if invertible_tensors:
        if kind != "language":
            raise file_error(weights_path, "has an invertible adapter, so it must be imported as kind='language'")
        invertible_size = _bottleneck_size(invertible_tensors, "invertible.F.down.weight", "invertible F.0", shown, weights_path)
    tensors = {**layer_tensors, **invertible_tensors}
    expected = expected_adapter_state(model, kind, bottleneck_size, invertible_size, leave_out)
    check_tensors(tensors, expected, weights_path, f"AdapterHub adapter {saved_name!r}", shown)

    if name is None:
        name = saved.get("name") or saved_name
        if not _valid_name(name):
            raise file_error(config_path, f"adapter name {name!r} is not a madx name (letters, digits, '_' or '-'); pass name=... to import it")
    if name in adapter_names(model):
        raise file_error(directory, f"an adapter named {name!r} is already loaded on this model; delete it first or pass another name")
    heads = _read_heads(model, directory) if kind == "task" and load_head else []
    install_adapter(model, name, kind, bottleneck_size, invertible_size, tensors, heads, leave_out=leave_out)
    return name


def _leave_out(settings: dict, path: Path, model: nn.Module) -> tuple[int, ...]:
    """``config.leave_out`` (MAD-X 2.0 and any AdapterHub adapter without some layers) as sorted layer indices."""
    value = settings.get("leave_out") or []
    if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in value):
        raise file_error(path, f"config.leave_out must be a list of layer indices, got {describe(value)}")
    try:
        return resolve_layers(value, model.config.num_hidden_layers)
    except ValueError as error:
        raise file_error(path, f"config.{error}") from None


def _read_heads(model: nn.Module, directory: Path) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The checked states of the task heads saved beside a task adapter (none if it was saved without one)."""
    weights_path = directory / HEAD_WEIGHTS_NAME
    if not (weights_path.exists() or weights_path.is_symlink()):
        if (directory / HEAD_PICKLE_NAME).exists():
            raise file_error(
                directory, f"the head is only in {HEAD_PICKLE_NAME} (a pickle); madx never unpickles. Re-save it with "
                "use_safetensors=True, or pass load_head=False to import the adapter without its head",
            )
        return []
    config_path = directory / HEAD_CONFIG_NAME
    saved = read_json_object(config_path, "AdapterHub head config", missing="not found beside the head weights") if config_path.exists() else {}
    tensors = read_tensors(weights_path, "AdapterHub head weights")
    modules = task_heads(model)
    saved_heads = sorted({key.split(".", 1)[0] for key in tensors})
    foreign = [h for h in saved_heads if h not in modules]
    if foreign:  # e.g. a flex head of an AdapterModel ("heads.ner.0.weight"), or a head class this model lacks
        example = next(key for key in sorted(tensors) if key.split(".", 1)[0] in foreign)
        has = f"its task heads are {sorted(modules)}" if modules else "it has no task head"
        raise file_error(
            weights_path, f"holds weights of {foreign} (e.g. {example!r}), which {type(model).__name__} lacks ({has}); only the "
            "heads of plain HF models import. Pass load_head=False to import the adapter alone",
        )
    expected = {f"{h}.{key}": t for h in saved_heads for key, t in head_state(modules[h]).items()}
    check_tensors(tensors, expected, weights_path, "the AdapterHub head")
    labels = saved.get("label2id")
    if isinstance(labels, dict) and labels != dict(getattr(model.config, "label2id", None) or {}):
        logger.warning("%s: the head was saved with labels %s; this model's are %s (its predictions use the model's names)",
                       config_path, labels, getattr(model.config, "label2id", None))
    return [(h, {key[len(h) + 1:]: t for key, t in tensors.items() if key.startswith(h + ".")}) for h in saved_heads]


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


def _bottleneck_size(tensors: dict[str, torch.Tensor], key: str, what: str, shown: dict[str, str], path: Path, note: str = "") -> int:
    down = tensors.get(key)
    if down is None:
        raise file_error(path, f"no {what} weight found{note}")
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


# ---- export ----


def export_adapterhub(model: nn.Module, name: str, directory: str | Path, with_head: bool | None = None) -> Path:
    """Write madx adapter ``name`` in the layout ``adapters`` 1.x loads with ``load_adapter``. Returns ``directory``.

    A language adapter is written with its invertible adapter (``inv_adapter="nice"``) if it has one;
    a task adapter with the model's task head (``head_config.json`` + ``model_head.safetensors``)
    unless ``with_head=False``. Key names are the full model paths AdapterHub uses, e.g.
    ``roberta.encoder.layer.3.output.adapters.{name}.adapter_down.0.weight``. The config is
    written last: an interrupted export leaves no ``adapter_config.json`` that points at missing
    weights. A directory holding a madx adapter, or AdapterHub files this export would not
    replace (a pickle, a stale head), is refused rather than mixed with."""
    directory = Path(directory)
    adapter_set = get_store(model).get(name)
    if with_head and adapter_set.kind != "task":
        raise ValueError(f"{name!r} is a {adapter_set.kind} adapter; only task adapters are exported with a head")
    heads = task_heads(model, name) if adapter_set.kind == "task" and with_head is not False else {}
    if with_head and not heads:
        raise ValueError(f"task adapter {name!r} on {type(model).__name__} has no task head to export with it")
    _check_export_directory(directory, bool(heads))

    hidden = adapter_set.hidden_size
    settings = dict(PFEIFFER_CONFIG, leave_out=list(adapter_set.leave_out),  # MAD-X 2.0: no adapter in the last layer
                    reduction_factor=_reduction_factor(hidden, adapter_set.bottleneck_size, f"adapter {name!r}"))
    if adapter_set.invertible is not None:
        half = hidden // 2  # NICE's F and G each map one half: h/2 -> int(h/2 // factor) -> h/2
        settings.update(inv_adapter="nice", inv_adapter_reduction_factor=_reduction_factor(
            half, adapter_set.invertible_bottleneck_size, f"the invertible adapter of {name!r}"))
    described = {
        "hidden_size": hidden,
        "model_class": type(model).__name__,
        "model_name": str(getattr(model.config, "_name_or_path", "") or ""),
        "model_type": model.config.model_type,
        "version": EXPORT_VERSION,
        "exported_by": f"madx-bench {_madx_version()}",
    }
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""
    spec = spec_for_model_type(model.config.model_type)
    layer = f"{prefix}{spec.layers}.{{index}}.{spec.ffn_output}.adapters.{name}."  # AdapterHub's path to a layer's output adapter
    tensors = {_hub_key(key, layer, f"{prefix}invertible_adapters.{name}."): t for key, t in adapter_set.state_dict().items()}
    metadata = {"format": "pt"}
    _save_tensors(tensors, directory / WEIGHTS_NAME, metadata)
    if heads:  # a plain HF model's head, as AdapterHub saves it: keys from the top-level model, no config
        _save_tensors({f"{h}.{key}": t for h, module in heads.items() for key, t in head_state(module).items()}, directory / HEAD_WEIGHTS_NAME, metadata)
        atomic_write_json(directory / HEAD_CONFIG_NAME, {
            **described, "config": None, "name": None,
            "label2id": dict(getattr(model.config, "label2id", None) or {}), "num_labels": model.config.num_labels,
        })
    atomic_write_json(directory / CONFIG_NAME, {**described, "config": settings, "name": name})
    return directory


def _hub_key(key: str, layer: str, invertible: str) -> str:
    """A madx adapter-set key -> AdapterHub's: ``layers.3.down.weight`` -> ``...layer.3.output.adapters.en.adapter_down.0.weight``,
    ``invertible.F.up.bias`` -> ``...invertible_adapters.en.F.2.bias`` (the inverse of ``_map_keys``)."""
    parts = key.split(".")
    if parts[0] == "layers":
        _, index, projection, param = parts
        return layer.format(index=index) + f"adapter_{'down.0' if projection == 'down' else 'up'}.{param}"
    _, net, projection, param = parts  # invertible.{F,G}.{down,up}.{weight,bias}: nn.Sequential(Linear, ReLU, Linear)
    return invertible + f"{net}.{'0' if projection == 'down' else '2'}.{param}"


def _reduction_factor(size: int, bottleneck: int, what: str) -> int | float:
    """The ``reduction_factor`` for which AdapterHub builds this bottleneck: it takes ``int(size // factor)``."""
    if size % bottleneck == 0:
        return size // bottleneck
    for factor in (size / bottleneck, size / (bottleneck + 0.5)):  # the second survives float rounding of the first
        if int(size // factor) == bottleneck:
            return factor
    raise ValueError(f"{what}: no reduction factor gives a bottleneck of {bottleneck} from size {size} the way AdapterHub computes it")


def _check_export_directory(directory: Path, writes_head: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise file_error(directory, "is a file; pass a directory to export into", NotADirectoryError)
    config_path = directory / CONFIG_NAME
    if config_path.exists():
        saved = read_json_object(config_path, "adapter config", missing="")
        if "kind" in saved and "format_version" in saved:
            raise file_error(config_path, "holds a madx adapter, which the export would overwrite; export into another directory")
    stale = [PICKLE_NAME, HEAD_PICKLE_NAME] + ([] if writes_head else [HEAD_CONFIG_NAME, HEAD_WEIGHTS_NAME])
    present = [f for f in stale if (directory / f).exists()]
    if present:
        raise file_error(directory, f"already holds {', '.join(present)}, which the export would not replace and AdapterHub's "
                         "load_adapter would read with it; remove them or export into another directory")


def _madx_version() -> str:
    from madx import __version__  # at call time: madx/__init__ imports this module

    return __version__
