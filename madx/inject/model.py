"""Attach MAD-X adapters to a Hugging Face encoder — no forked modeling code, no hooks.

``attach(model)`` turns the modules MAD-X changes into adapted modules, in place
(``madx.inject.wrappers``): each layer's FFN output module, the embeddings, the MLM decoder and the task
heads. Each owns its adapters (a layer's bottleneck adapters, the invertible adapters, one head per task
adapter) and reads the active setup from its own attributes. ``model.madx`` (a module with no
parameters) records which adapters are loaded, by name and kind, and the active setup.

An adapter *set* (``AdapterSet``: the per-layer adapters of one name, and a language's invertible
adapter) is held by the adapted modules between them; ``get_store(model).get(name)`` shows it as one
module (the same parameters, not copies), with the names the adapter files use.

A layer where no active adapter sits (an adapter set's ``leave_out``, MAD-X 2.0: the last layer) is
computed by the base module's own forward. Each adapter of a Stack applies in the layers it has, as in
AdapterHub, so a set with ``leave_out`` may be stacked with one without.

With no active setup every adapted module runs the base module's forward, and ``detach(model)``
restores the original classes and drops everything madx added: the model is then the original, bit
for bit. The active setup only changes through ``set_active`` / ``madx.active``.

``model.save_pretrained`` writes the base model only: the adapters' keys are listed in the model's
``_keys_to_ignore_on_save`` while they are attached (save them with ``madx.save_adapter``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from madx.adapters.config import AdapterConfig
from madx.adapters.sets import AdapterSet
from madx.compose.stack import Stack
from madx.inject.spec import ArchitectureSpec, find_path, get_path, spec_for_model_type
from madx.inject.wrappers import (ADDED_CHILDREN, Adapted, AdaptedDecoder, AdaptedEmbeddings, AdaptedFFNOutput,
                                  AdaptedHead, plain_copy, wrap)

ROOT_ATTRIBUTE = "madx"


class MadxRoot(nn.Module):
    """What is loaded (name -> kind, in load order) and active on one model; no parameters."""

    def __init__(self, spec: ArchitectureSpec, num_layers: int, hidden_size: int, save_ignore: set[str] | None) -> None:
        super().__init__()
        self.spec = spec
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.kinds: dict[str, str] = {}
        self.active: Stack | None = None
        self.save_ignore = save_ignore  # the model's own _keys_to_ignore_on_save, restored by detach

    def extra_repr(self) -> str:
        return f"adapters={self.kinds}, active={self.active}"


class AdapterStore(nn.Module):
    """The adapter sets loaded on a model, by kind and name: a view made of the model's own modules."""

    def __init__(self) -> None:
        super().__init__()
        self.language = nn.ModuleDict()
        self.task = nn.ModuleDict()

    def names(self) -> list[str]:
        return [*self.language.keys(), *self.task.keys()]

    def get(self, name: str) -> AdapterSet:
        for group in (self.language, self.task):
            if name in group:
                return group[name]
        raise UnknownAdapterError(_unknown_adapter_message(name, self.names()))


class UnknownAdapterError(KeyError):
    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def _unknown_adapter_message(name: str, known: list[str]) -> str:
    nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
    loaded = ", ".join(sorted(known)) or "none"
    return f"no adapter named {name!r} is loaded on this model (loaded: {loaded}).{hint}"


def _unwrap_ddp(model: nn.Module) -> nn.Module:
    return model.module if isinstance(getattr(model, "module", None), nn.Module) and hasattr(model.module, "config") else model


def get_state(model: nn.Module) -> MadxRoot:
    root = getattr(_unwrap_ddp(model), ROOT_ATTRIBUTE, None)
    if not isinstance(root, MadxRoot):
        raise RuntimeError("this model has no MAD-X adapters attached; call madx.attach(model) first")
    return root


def is_attached(model: nn.Module) -> bool:
    return isinstance(getattr(_unwrap_ddp(model), ROOT_ATTRIBUTE, None), MadxRoot)


# ---- the adapted modules of a model ----


def ffn_outputs(model: nn.Module) -> list[nn.Module]:
    spec = spec_for_model_type(model.config.model_type)
    return [get_path(layer, spec.ffn_output) for layer in get_path(model.base_model, spec.layers)]


def embeddings(model: nn.Module) -> nn.Module:
    return get_path(model.base_model, spec_for_model_type(model.config.model_type).embeddings)


def mlm_decoder(model: nn.Module) -> nn.Module | None:
    return find_path(model, spec_for_model_type(model.config.model_type).mlm_decoder)


def _invertible_holders(model: nn.Module) -> list[nn.Module]:
    decoder = mlm_decoder(model)
    return [embeddings(model)] + ([decoder] if isinstance(decoder, AdaptedDecoder) else [])


def attach(model: nn.Module) -> MadxRoot:
    """Prepare ``model`` for adapters (idempotent). Base weights and their names are not touched."""
    model = _unwrap_ddp(model)
    if is_attached(model):
        return get_state(model)
    spec = spec_for_model_type(model.config.model_type)
    outputs = ffn_outputs(model)
    save_ignore = getattr(model, "_keys_to_ignore_on_save", None)
    root = MadxRoot(spec, len(outputs), model.config.hidden_size, None if save_ignore is None else set(save_ignore))
    for module in outputs:
        wrap(module, AdaptedFFNOutput, (spec.ffn_dense, spec.ffn_dropout, spec.ffn_layer_norm))
    wrap(embeddings(model), AdaptedEmbeddings)
    decoder = mlm_decoder(model)
    if decoder is not None:
        wrap(decoder, AdaptedDecoder)
    for head in task_heads(model).values():
        wrap(head, AdaptedHead)
    model.add_module(ROOT_ATTRIBUTE, root)
    return root


def detach(model: nn.Module) -> None:
    """Remove every adapter: the model computes exactly what it did before ``attach``, with its own classes."""
    model = _unwrap_ddp(model)
    root = get_state(model)
    for module in list(model.modules()):
        if isinstance(module, Adapted):
            module.madx_unwrap()
    delattr(model, ROOT_ATTRIBUTE)
    if root.save_ignore is not None:
        model._keys_to_ignore_on_save = root.save_ignore


def _sync_save_ignore(model: nn.Module) -> None:
    """``save_pretrained`` leaves out what madx added: the base checkpoint stays what ``from_pretrained`` reads."""
    root = get_state(model)
    if root.save_ignore is None:
        return
    added = {key for key in model.state_dict() if any(f".{child}." in f".{key}" for child in ADDED_CHILDREN)}
    model._keys_to_ignore_on_save = root.save_ignore | added


# ---- adding and removing adapters ----


def add_adapter(
    model: nn.Module,
    name: str,
    kind: str,
    bottleneck_size: int,
    invertible_bottleneck_size: int | None = None,
    leave_out: Sequence[int] = (),
    init: str = "identity",
) -> AdapterSet:
    """Add a freshly initialised adapter set named ``name`` (``init``: see ``madx.adapters.bottleneck``), with no
    adapter in the layers ``leave_out`` names (negative indices count from the last layer). A task adapter gets its
    own copy of each task head the model has. Returns the set (a view of the modules now in the model)."""
    Stack(name)  # validates the name
    model = _unwrap_ddp(model)
    root = attach(model)
    if name in root.kinds:
        raise ValueError(f"an adapter named {name!r} is already loaded; delete it first or pick another name")
    adapter_set = AdapterSet(kind, root.num_layers, root.hidden_size, bottleneck_size, invertible_bottleneck_size, leave_out, init)
    reference = next(p for n, p in model.named_parameters() if not _is_added(n))
    adapter_set.to(device=reference.device, dtype=reference.dtype)
    for module, adapter in zip(ffn_outputs(model), adapter_set.layers):
        if adapter is not None:
            module.madx_adapters[name] = adapter
    if adapter_set.invertible is not None:
        for holder in _invertible_holders(model):
            holder.madx_invertible[name] = adapter_set.invertible
    if kind == "task":
        for head in task_heads(model).values():
            head.madx_heads[name] = plain_copy(head)  # starts as the model's head is now
    root.kinds[name] = kind
    _sync_save_ignore(model)
    return adapter_set


def add_language_adapter(
    model: nn.Module, name: str, config: AdapterConfig = AdapterConfig(), invertible: bool = True
) -> AdapterSet:
    """A language adapter (MAD-X: 384 for h=768) in every layer but ``config.leave_out`` and, with
    ``invertible``, an invertible adapter whose F and G are h/2 -> k -> h/2 (MAD-X: 384 -> 192 -> 384)
    on the embeddings; sizes and initialisation from ``config``."""
    hidden = model.config.hidden_size
    invertible_size = config.invertible_size(hidden) if invertible else None
    return add_adapter(model, name, "language", config.language_size(hidden), invertible_size, config.leave_out,
                       config.init_weights)


def add_task_adapter(model: nn.Module, name: str, config: AdapterConfig = AdapterConfig()) -> AdapterSet:
    """A task adapter (MAD-X: 48 for h=768) in every layer but ``config.leave_out``, with its own task head(s);
    size and initialisation from ``config``."""
    return add_adapter(model, name, "task", config.task_size(model.config.hidden_size), leave_out=config.leave_out,
                       init=config.init_weights)


def delete_adapter(model: nn.Module, name: str) -> None:
    model = _unwrap_ddp(model)
    root = get_state(model)
    if root.active is not None and name in root.active.names:
        raise RuntimeError(f"adapter {name!r} is part of the active setup {root.active}; deactivate it first")
    if name not in root.kinds:
        raise UnknownAdapterError(_unknown_adapter_message(name, list(root.kinds)))
    for module in model.modules():
        for child in ADDED_CHILDREN:
            holder = module._modules.get(child) if isinstance(module, Adapted) else None
            if holder is not None and name in holder:
                del holder[name]
    del root.kinds[name]
    _sync_save_ignore(model)


def _is_added(parameter_name: str) -> bool:
    return any(f".{child}." in f".{parameter_name}" for child in ADDED_CHILDREN)


def adapter_names(model: nn.Module, kind: str | None = None) -> list[str]:
    if not is_attached(model):
        return []
    return [name for name, k in get_state(model).kinds.items() if kind is None or k == kind]


def adapter_set(model: nn.Module, name: str) -> AdapterSet:
    """Adapter set ``name`` as one module made of the model's own adapter modules."""
    model = _unwrap_ddp(model)
    root = get_state(model)
    if name not in root.kinds:
        raise UnknownAdapterError(_unknown_adapter_message(name, list(root.kinds)))
    layers = [module.madx_adapters[name] if name in module.madx_adapters else None for module in ffn_outputs(model)]
    holder = embeddings(model).madx_invertible
    return AdapterSet.assemble(root.kinds[name], layers, holder[name] if name in holder else None)


def get_store(model: nn.Module) -> AdapterStore:
    """Every loaded adapter set, by kind and name (views: the same parameters as the model's)."""
    root = get_state(model)
    store = AdapterStore()
    for name, kind in root.kinds.items():
        getattr(store, kind)[name] = adapter_set(model, name)
    return store


# ---- the active setup ----


def as_stack(setup: Stack | str | Sequence[str] | None) -> Stack | None:
    """``"en"``, ``["en", "ner"]``, ``("en", "ner")`` or a Stack -> a Stack; None stays None."""
    if setup is None or isinstance(setup, Stack):
        return setup
    if isinstance(setup, str):
        return Stack(setup)
    if isinstance(setup, (list, tuple)) and all(isinstance(name, str) for name in setup):
        return Stack(*setup)
    raise TypeError(f"an adapter setup is a name, a list of names or a madx.Stack, got {type(setup).__name__}: {setup!r}")


def resolve(model: nn.Module, setup: Stack) -> tuple[str | None, str | None]:
    """Check ``setup`` against the adapters loaded on ``model``: known names, language before task.
    Returns (language adapter, task adapter), either None where the stack has none."""
    kinds = get_state(model).kinds
    language = task = None
    for name in setup.names:
        if name not in kinds:
            raise UnknownAdapterError(_unknown_adapter_message(name, list(kinds)))
        if kinds[name] == "language":
            if task is not None:
                raise ValueError(f"{setup}: language adapter {name!r} must come before task adapter(s); write the language first")
            if language is not None:
                raise ValueError(f"{setup}: at most one language adapter can be active")
            language = name
        else:
            if task is not None:
                raise ValueError(f"{setup}: at most one task adapter can be active")
            task = name
    return language, task


def set_active(model: nn.Module, setup: Stack | str | Sequence[str] | None) -> None:
    """Make ``setup`` the adapters this model runs: a Stack, one name, or a list of names (language first);
    ``None``: the plain base model. The task adapter's own head predicts while it is active."""
    model = _unwrap_ddp(model)
    setup = as_stack(setup)
    if setup is None and not is_attached(model):
        return
    root = attach(model)
    language, task = (None, None) if setup is None else resolve(model, setup)
    for module in model.modules():
        if isinstance(module, AdaptedFFNOutput):
            module.madx_active = () if setup is None else tuple(n for n in setup.names if n in module.madx_adapters)
            module.madx_mode = "paper" if setup is None else setup.mode
        elif isinstance(module, (AdaptedEmbeddings, AdaptedDecoder)):
            module.madx_active = language if language is not None and language in module.madx_invertible else None
        elif isinstance(module, AdaptedHead):
            module.madx_active = task if task is not None and task in module.madx_heads else None
        if isinstance(module, Adapted):
            module.madx_resolve()
    root.active = setup


def get_active(model: nn.Module) -> Stack | None:
    return get_state(model).active if is_attached(model) else None


# ---- task heads ----


def task_heads(model: nn.Module, adapter: str | None = None) -> dict[str, nn.Module]:
    """The model's task prediction heads (e.g. ``classifier``), or with ``adapter`` that task adapter's own."""
    model = _unwrap_ddp(model)
    spec = spec_for_model_type(model.config.model_type)
    heads = {name: getattr(model, name) for name in spec.task_heads if isinstance(getattr(model, name, None), nn.Module)}
    if adapter is None:
        return heads
    return {name: head.madx_heads[adapter] for name, head in heads.items()
            if isinstance(head, AdaptedHead) and adapter in head.madx_heads}


def head_state(head: nn.Module) -> dict[str, torch.Tensor]:
    """A head's own state, without the task adapters' heads an adapted head holds."""
    return {key: t for key, t in head.state_dict().items() if key.split(".")[0] not in ADDED_CHILDREN}


def reset_task_heads(model: nn.Module, seed: int) -> None:
    """Re-initialise the model's own task heads with ``seed``, as the model initialises them at creation (task
    adapters' heads are left alone). HF's per-module initialiser (``_init_weights``) is the only way to get each
    architecture's scheme; transformers 5 skips tensors marked ``_is_hf_initialized`` (every loaded or already
    initialised weight), so the mark is cleared first: the heads are reset for real."""
    model = _unwrap_ddp(model)
    torch.manual_seed(seed)
    for head in task_heads(model).values():
        for name, module in head.named_modules():
            if name.split(".")[0] in ADDED_CHILDREN:
                continue
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                tensor._is_hf_initialized = False
            model._init_weights(module)
