"""Save and load one adapter set on its own: safetensors weights + a JSON config.

A directory per adapter::

    adapter_config.json     kind, name, dims, architecture, base model, format version
    adapter.safetensors     the adapter set's tensors (``layers.{i}.down.weight``, ``invertible.F.up.bias``, ...)
    head.safetensors        task adapters only, when saved with their prediction head

Nothing is ever unpickled. Loading checks the file against the model at hand and names what
does not fit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from madx.atomic import atomic_write, atomic_write_json
from madx.inject.model import add_adapter, attach, get_store, task_heads

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
HEAD_NAME = "head.safetensors"


@dataclass(frozen=True)
class AdapterFileConfig:
    name: str
    kind: str
    architecture: str  # config.model_type of the model it was trained with
    base_model: str  # name or path of that model
    hidden_size: int
    num_layers: int
    bottleneck_size: int
    invertible_bottleneck_size: int | None
    head: list[str] | None  # task heads saved beside the adapter (e.g. ["classifier"])
    format_version: int = FORMAT_VERSION

    @classmethod
    def read(cls, path: Path) -> "AdapterFileConfig":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no adapter config here; is this a madx adapter directory?") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in data and n != "format_version")
        if missing:
            raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version!r} is newer than this madx reads ({FORMAT_VERSION}); upgrade madx-bench")
        return cls(**{k: v for k, v in data.items() if k in names})


def save_adapter(model: nn.Module, name: str, directory: str | Path, with_head: bool | None = None) -> Path:
    """Write adapter ``name`` (and, for a task adapter, the task head unless ``with_head=False``)."""
    directory = Path(directory)
    adapter_set = get_store(model).get(name)
    heads = task_heads(model) if adapter_set.kind == "task" and with_head is not False else {}
    if with_head and not heads:
        raise ValueError(f"{type(model).__name__} has no task head to save with {name!r}")
    config = AdapterFileConfig(
        name=name,
        kind=adapter_set.kind,
        architecture=model.config.model_type,
        base_model=str(getattr(model.config, "_name_or_path", "") or ""),
        hidden_size=adapter_set.hidden_size,
        num_layers=adapter_set.num_layers,
        bottleneck_size=adapter_set.bottleneck_size,
        invertible_bottleneck_size=adapter_set.invertible_bottleneck_size,
        head=sorted(heads) or None,
    )
    metadata = {"format": "pt", "madx_format_version": str(FORMAT_VERSION)}
    _save_tensors(adapter_set.state_dict(), directory / WEIGHTS_NAME, metadata)
    if heads:
        head_tensors = {f"{head}.{key}": t for head, module in heads.items() for key, t in module.state_dict().items()}
        _save_tensors(head_tensors, directory / HEAD_NAME, metadata)
    atomic_write_json(directory / CONFIG_NAME, asdict(config))  # written last: its presence means complete
    return directory


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def load_adapter(model: nn.Module, directory: str | Path, name: str | None = None, load_head: bool = True) -> str:
    """Load a saved adapter into ``model`` under ``name`` (default: its saved name). Returns the name."""
    directory = Path(directory)
    config = AdapterFileConfig.read(directory / CONFIG_NAME)
    name = name or config.name
    check_compatible(model, config, directory)
    attach(model)
    adapter_set = add_adapter(model, name, config.kind, config.bottleneck_size, config.invertible_bottleneck_size)
    try:
        _load_into(adapter_set, directory / WEIGHTS_NAME, f"{config.kind} adapter {config.name!r}")
        if config.head and load_head:
            heads = task_heads(model)
            missing = [h for h in config.head if h not in heads]
            if missing:
                raise ValueError(f"{directory}: task adapter {config.name!r} was saved with head(s) {missing}, which {type(model).__name__} lacks")
            _load_into(nn.ModuleDict({h: heads[h] for h in config.head}), directory / HEAD_NAME, f"head of {config.name!r}")
    except Exception:
        del getattr(get_store(model), config.kind)[name]
        raise
    return name


def check_compatible(model: nn.Module, config: AdapterFileConfig, directory: Path) -> None:
    what = f"{config.kind} adapter {config.name!r} ({directory})"
    model_config = model.config
    if config.hidden_size != model_config.hidden_size:
        raise ValueError(f"{what} was trained for hidden size {config.hidden_size}, this model has {model_config.hidden_size}")
    if config.num_layers != model_config.num_hidden_layers:
        raise ValueError(f"{what} has {config.num_layers} layers, this model has {model_config.num_hidden_layers}")
    if config.architecture != model_config.model_type:
        raise ValueError(f"{what} was trained with architecture {config.architecture!r}, this model is {model_config.model_type!r}")
    base = str(getattr(model_config, "_name_or_path", "") or "")
    if config.base_model and base and config.base_model != base:
        logger.warning("%s was trained on base model %r, loading into %r", what, config.base_model, base)


def _load_into(module: nn.Module, path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: weights of {what} are missing")
    tensors = load_file(str(path))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: tensors of {what} do not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"{path}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
    module.load_state_dict(tensors)
