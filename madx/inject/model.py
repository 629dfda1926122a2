"""Attach MAD-X adapters to a Hugging Face encoder with hooks — no forked modeling code.

``attach(model)`` registers one submodule, ``model.madx_adapters`` (so adapters move with
``model.to()``, appear in ``model.parameters()`` and are wrapped by DDP/DeepSpeed), and three kinds
of hooks:

* on each layer's FFN dropout: remember ``r``, the FFN output;
* on each layer's FFN output module: replace ``LN(r + x)`` by the adapted output
  (``madx.inject.layer``) when a setup is active;
* on the embeddings: the active language's invertible adapter, forward;
* before the MLM decoder (the tied output embeddings): the same invertible adapter, inverse.

A layer where no active adapter sits (an adapter set's ``leave_out``, MAD-X 2.0: the last layer)
is left as the base computes it: its hooks return ``None`` there. Each adapter of a Stack applies in
the layers it has, as in AdapterHub, so a set with ``leave_out`` may be stacked with one without.

With no active setup every hook returns ``None``, so the base computation is untouched, and
``detach(model)`` removes the hooks and the submodule: the model is then the original, bit for bit.
The active setup is per model and only changes through ``set_active`` / ``madx.active``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from madx.adapters.config import AdapterConfig
from madx.adapters.sets import AdapterSet
from madx.compose.stack import Stack
from madx.inject.layer import adapted_layer_output
from madx.inject.spec import ArchitectureSpec, find_path, get_path, spec_for_model_type

STORE_ATTRIBUTE = "madx_adapters"


class AdapterStore(nn.Module):
    """All adapter sets loaded on a model, by kind and name."""

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


@dataclass
class _ResolvedSetup:
    stack: Stack
    language: AdapterSet | None
    task: AdapterSet | None

    def layer_adapters(self, index: int) -> list[nn.Module]:
        """The active adapters in layer ``index``, language first; none where the sets leave the layer out."""
        return [s.layers[index] for s in (self.language, self.task) if s is not None and s.layers[index] is not None]

    @property
    def invertible(self) -> nn.Module | None:
        return None if self.language is None else self.language.invertible


@dataclass
class MadxState:
    spec: ArchitectureSpec
    num_layers: int
    hidden_size: int
    active: _ResolvedSetup | None = None
    ffn_outputs: list[torch.Tensor | None] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)


def _unknown_adapter_message(name: str, known: list[str]) -> str:
    nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
    loaded = ", ".join(sorted(known)) or "none"
    return f"no adapter named {name!r} is loaded on this model (loaded: {loaded}).{hint}"


def get_state(model: nn.Module) -> MadxState:
    state = getattr(model, "_madx_state", None)
    if state is None:
        raise RuntimeError("this model has no MAD-X adapters attached; call madx.attach(model) first")
    return state


def get_store(model: nn.Module) -> AdapterStore:
    get_state(model)
    return getattr(model, STORE_ATTRIBUTE)


def is_attached(model: nn.Module) -> bool:
    return getattr(model, "_madx_state", None) is not None


def attach(model: nn.Module) -> MadxState:
    """Prepare ``model`` for adapters (idempotent). Base weights are not touched."""
    if is_attached(model):
        return get_state(model)
    config = model.config
    spec = spec_for_model_type(config.model_type)
    base = model.base_model
    layers = get_path(base, spec.layers)
    state = MadxState(spec=spec, num_layers=len(layers), hidden_size=config.hidden_size)
    state.ffn_outputs = [None] * len(layers)
    model.add_module(STORE_ATTRIBUTE, AdapterStore())
    object.__setattr__(model, "_madx_state", state)  # plain attribute, not a submodule

    for index, layer in enumerate(layers):
        ffn_output = get_path(layer, spec.ffn_output)
        dropout = get_path(ffn_output, spec.ffn_dropout)
        layer_norm = get_path(ffn_output, spec.ffn_layer_norm)
        state.handles.append(dropout.register_forward_hook(_capture_ffn_output(state, index)))
        state.handles.append(
            ffn_output.register_forward_hook(_adapt_layer_output(state, index, layer_norm), with_kwargs=True)
        )
    embeddings = get_path(base, spec.embeddings)
    state.handles.append(embeddings.register_forward_hook(_invertible_forward(state)))
    decoder = find_path(model, spec.mlm_decoder)
    if decoder is not None:
        state.handles.append(decoder.register_forward_pre_hook(_invertible_inverse(state)))
    return state


def detach(model: nn.Module) -> None:
    """Remove every hook and adapter: the model computes exactly what it did before ``attach``."""
    state = get_state(model)
    for handle in state.handles:
        handle.remove()
    delattr(model, STORE_ATTRIBUTE)
    object.__delattr__(model, "_madx_state")


def _capture_ffn_output(state: MadxState, index: int):
    def hook(module, args, output):
        if state.active is not None and state.active.layer_adapters(index):
            state.ffn_outputs[index] = output  # r = dropout(dense(intermediate))

    return hook


def _adapt_layer_output(state: MadxState, index: int, layer_norm: nn.Module):
    def hook(module, args, kwargs, output):
        setup = state.active
        if setup is None:
            return None
        adapters = setup.layer_adapters(index)
        if not adapters:
            return None
        ffn_output, state.ffn_outputs[index] = state.ffn_outputs[index], None
        if ffn_output is None:
            raise RuntimeError(
                f"layer {index}: the FFN output was not captured before the output LayerNorm; "
                f"the {state.spec.ffn_dropout!r} module of this architecture is not called as madx expects"
            )
        attention_output = args[1] if len(args) > 1 else kwargs["input_tensor"]
        return adapted_layer_output(adapters, setup.stack.mode, output, ffn_output, attention_output, layer_norm)

    return hook


def _invertible_forward(state: MadxState):
    def hook(module, args, output):
        invertible = None if state.active is None else state.active.invertible
        return None if invertible is None else invertible(output)

    return hook


def _invertible_inverse(state: MadxState):
    def hook(module, args):
        invertible = None if state.active is None else state.active.invertible
        if invertible is None:
            return None
        return (invertible.inverse(args[0]), *args[1:])

    return hook


def add_adapter(
    model: nn.Module,
    name: str,
    kind: str,
    bottleneck_size: int,
    invertible_bottleneck_size: int | None = None,
    leave_out: Sequence[int] = (),
) -> AdapterSet:
    """Add a freshly initialised adapter set (identity at init) named ``name``, with no adapter in the
    layers ``leave_out`` names (negative indices count from the last layer)."""
    Stack(name)  # validates the name
    state = attach(model)
    store = get_store(model)
    if name in store.names():
        raise ValueError(f"an adapter named {name!r} is already loaded; delete it first or pick another name")
    adapter_set = AdapterSet(kind, state.num_layers, state.hidden_size, bottleneck_size, invertible_bottleneck_size, leave_out)
    reference = next(model.parameters())
    adapter_set.to(device=reference.device, dtype=reference.dtype)
    getattr(store, kind)[name] = adapter_set
    return adapter_set


def add_language_adapter(
    model: nn.Module, name: str, config: AdapterConfig = AdapterConfig(), invertible: bool = True
) -> AdapterSet:
    """A language adapter (MAD-X: 384 for h=768) in every layer but ``config.leave_out`` and, with
    ``invertible``, an invertible adapter whose F and G are h/2 -> k -> h/2 (MAD-X: 384 -> 192 -> 384)
    on the embeddings; sizes from ``config``."""
    hidden = model.config.hidden_size
    invertible_size = config.invertible_size(hidden) if invertible else None
    return add_adapter(model, name, "language", config.language_size(hidden), invertible_size, config.leave_out)


def add_task_adapter(model: nn.Module, name: str, config: AdapterConfig = AdapterConfig()) -> AdapterSet:
    """A task adapter (MAD-X: 48 for h=768) in every layer but ``config.leave_out``; size from ``config``."""
    return add_adapter(model, name, "task", config.task_size(model.config.hidden_size), leave_out=config.leave_out)


def delete_adapter(model: nn.Module, name: str) -> None:
    store = get_store(model)
    active = get_state(model).active
    if active is not None and name in active.stack.names:
        raise RuntimeError(f"adapter {name!r} is part of the active setup {active.stack}; deactivate it first")
    adapter_set = store.get(name)
    del getattr(store, adapter_set.kind)[name]


def adapter_names(model: nn.Module, kind: str | None = None) -> list[str]:
    if not is_attached(model):
        return []
    store = get_store(model)
    if kind is None:
        return store.names()
    return list(getattr(store, kind).keys())


def resolve(model: nn.Module, setup: Stack) -> _ResolvedSetup:
    """Check ``setup`` against the adapters loaded on ``model``: known names, language before task."""
    store = get_store(model)
    language = task = None
    for name in setup.names:
        adapter_set = store.get(name)
        if adapter_set.kind == "language":
            if task is not None:
                raise ValueError(f"{setup}: language adapter {name!r} must come before task adapter(s); write the language first")
            if language is not None:
                raise ValueError(f"{setup}: at most one language adapter can be active")
            language = adapter_set
        else:
            if task is not None:
                raise ValueError(f"{setup}: at most one task adapter can be active")
            task = adapter_set
    return _ResolvedSetup(setup, language, task)


def set_active(model: nn.Module, setup: Stack | None) -> None:
    """Make ``setup`` the adapters this model runs (``None``: plain base model)."""
    state = attach(model) if setup is not None else get_state(model) if is_attached(model) else None
    if state is None:
        return
    state.active = None if setup is None else resolve(model, setup)
    state.ffn_outputs = [None] * state.num_layers


def get_active(model: nn.Module) -> Stack | None:
    if not is_attached(model):
        return None
    active = get_state(model).active
    return None if active is None else active.stack


def task_heads(model: nn.Module) -> dict[str, nn.Module]:
    """The task prediction heads present on the top-level model (e.g. ``classifier``)."""
    spec = spec_for_model_type(model.config.model_type)
    return {name: getattr(model, name) for name in spec.task_heads if isinstance(getattr(model, name, None), nn.Module)}


def reset_task_heads(model: nn.Module, seed: int) -> None:
    """Re-initialise the task heads with ``seed``, as the model initialises them at creation. HF's
    per-module initialiser (``_init_weights``) is the only way to get each architecture's scheme."""
    torch.manual_seed(seed)
    for head in task_heads(model).values():
        head.apply(model._init_weights)


def set_trainable(
    model: nn.Module, adapters: tuple[str, ...] | list[str] = (), task_head: bool = False, base: bool = False
) -> list[str]:
    """Freeze everything, then unfreeze the named adapters, the task head and/or the whole base.

    Returns the names of the parameters that now require grad.
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if base:
        store = getattr(model, STORE_ATTRIBUTE, None)
        adapter_params = set() if store is None else {id(p) for p in store.parameters()}
        for parameter in model.parameters():
            if id(parameter) not in adapter_params:
                parameter.requires_grad_(True)
    if adapters:
        store = get_store(model)
        for name in adapters:
            store.get(name).requires_grad_(True)
    if task_head:
        heads = task_heads(model)
        if not heads:
            raise ValueError(f"{type(model).__name__} has no task head ({', '.join(spec_for_model_type(model.config.model_type).task_heads)})")
        for head in heads.values():
            head.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]
