"""Adapted sub-modules: each module MAD-X changes owns its adapters and reads the active setup from itself.

``madx.attach`` turns four kinds of modules of a Hugging Face encoder into adapted ones, in place:

* each layer's FFN output module (``layer.output``: ``LN(dropout(dense(i)) + x)``) owns that layer's
  bottleneck adapters, ``madx_adapters.{name}``, and computes the adapted output
  (``madx.inject.layer``) when one of them is active;
* the embeddings own the invertible adapters, ``madx_invertible.{name}``, and run the active
  language's forward on their output;
* the MLM decoder (the tied output projection), where the model has one, runs the same invertible
  adapter's inverse before projecting. It holds the same ``NICECoupling`` modules (registered under
  both, as tied weights are), so a copy or a replica keeps one module for both;
* each task head (``classifier``, ``qa_outputs``) owns one head per task adapter, ``madx_heads.{name}``,
  and runs the active task adapter's head (its own weights when no task adapter with a head is active).

"In place": the module's class is swapped for a subclass ``Madx<Class>(Mixin, Class)``, so the module
keeps its identity, children, hooks and attributes, and the base model's parameter names and
state-dict keys do not change (tied weights, ``save_pretrained`` and ``from_pretrained`` see the keys
they know). ``unwrap`` swaps the class back and drops what madx added.

Each adapted module reads what is active from its own attributes (``madx_active``, ``madx_mode``), which
``madx.set_active`` writes on every adapted module of the model. Nothing is shared between modules and
nothing outside the model is referenced, so ``copy.deepcopy``, ``nn.DataParallel`` replicas, gradient
checkpointing (the recomputed forward reads the same attributes), ``torch.compile`` (the attributes are
guarded constants) and ``state_dict`` round trips compute what the original computes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from madx.inject.layer import adapted_layer_output
from madx.inject.spec import get_path

ADDED_CHILDREN = ("madx_adapters", "madx_invertible", "madx_heads")  # the state-dict segments madx adds
_CLASSES: dict[tuple[type, type], type] = {}


class Adapted(nn.Module):
    """What every adapted module has; a mixin, placed before the wrapped class."""

    madx_children: tuple[str, ...] = ()
    madx_base_class: type

    def madx_unwrap(self) -> None:
        for name in self.madx_children:
            delattr(self, name)
        for name in ("madx_active", "madx_mode", "madx_paths"):
            self.__dict__.pop(name, None)
        self.__class__ = type(self).madx_base_class


class AdaptedFFNOutput(Adapted):
    madx_children = ("madx_adapters",)

    def madx_init(self, paths: tuple[str, str, str]) -> None:
        self.madx_paths = paths  # (dense, dropout, layer norm), relative to this module
        self.madx_active: tuple[str, ...] = ()
        self.madx_mode = "paper"
        self.madx_adapters = nn.ModuleDict()

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        names = self.madx_active
        if not names:
            return super().forward(hidden_states, input_tensor, *args, **kwargs)
        dense, dropout, layer_norm = (get_path(self, path) for path in self.madx_paths)
        ffn_output = dropout(dense(hidden_states))  # r, (B, T, h)
        normalised = layer_norm(ffn_output + input_tensor)  # LN(r + x): what the base module returns
        adapters = [self.madx_adapters[name] for name in names]
        return adapted_layer_output(adapters, self.madx_mode, normalised, ffn_output, input_tensor, layer_norm)


class AdaptedEmbeddings(Adapted):
    madx_children = ("madx_invertible",)

    def madx_init(self) -> None:
        self.madx_active: str | None = None
        self.madx_invertible = nn.ModuleDict()

    def forward(self, *args, **kwargs) -> torch.Tensor:
        output = super().forward(*args, **kwargs)
        name = self.madx_active
        return output if name is None else self.madx_invertible[name](output)


class AdaptedDecoder(Adapted):
    madx_children = ("madx_invertible",)

    def madx_init(self) -> None:
        self.madx_active: str | None = None
        self.madx_invertible = nn.ModuleDict()

    def madx_decoder_input(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """What the projection is applied to: the active invertible adapter's inverse of ``hidden``."""
        name = self.madx_active
        return hidden if name is None else self.madx_invertible[name].inverse(hidden)

    def forward(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return super().forward(self.madx_decoder_input(hidden), *args, **kwargs)


class AdaptedHead(Adapted):
    madx_children = ("madx_heads",)

    def madx_init(self) -> None:
        self.madx_active: str | None = None
        self.madx_heads = nn.ModuleDict()

    def forward(self, *args, **kwargs) -> torch.Tensor:
        name = self.madx_active
        if name is None:
            return super().forward(*args, **kwargs)
        return self.madx_heads[name](*args, **kwargs)


def adapted_class(mixin: type, base: type) -> type:
    """``Madx<base>(mixin, base)``, one class per pair."""
    key = (mixin, base)
    if key not in _CLASSES:
        name = f"Madx{base.__name__}"
        _CLASSES[key] = type(name, (mixin, base), {"__module__": __name__, "__qualname__": name, "madx_base_class": base})
    return _CLASSES[key]


def wrap(module: nn.Module, mixin: type, *args) -> nn.Module:
    """Make ``module`` an adapted module in place (idempotent). Returns it."""
    if not isinstance(module, mixin):
        if isinstance(module, Adapted):
            raise TypeError(f"{type(module).__name__} is already adapted by madx as a {type(module).__mro__[1].__name__}")
        module.__class__ = adapted_class(mixin, type(module))
        module.madx_init(*args)
    return module


def plain_copy(module: nn.Module) -> nn.Module:
    """A deep copy of an adapted module as the plain module it wraps (without what madx added)."""
    memo = {id(getattr(module, name)): None for name in getattr(module, "madx_children", ())}
    duplicate = copy.deepcopy(module, memo)
    if isinstance(duplicate, Adapted):
        for name in duplicate.madx_children:
            duplicate._modules.pop(name, None)
        for name in ("madx_active", "madx_mode", "madx_paths"):
            duplicate.__dict__.pop(name, None)
        duplicate.__class__ = type(duplicate).madx_base_class
    return duplicate
