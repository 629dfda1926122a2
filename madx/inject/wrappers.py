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

Each adapted module reads what is active from its own attributes, which ``madx.set_active`` writes on
every adapted module of the model: the names (``madx_active``, ``madx_mode``) and, resolved from them,
the active modules themselves (``madx_resolved``), which is all ``forward`` reads. Nothing is shared
between modules and nothing outside the model is referenced, so ``copy.deepcopy`` (the resolved tuple is
copied with the modules it holds), ``nn.DataParallel`` replicas (a replica resolves again from the names,
among its own children), gradient checkpointing (the recomputed forward reads the same attributes) and
``state_dict`` round trips compute what the original computes. ``torch.compile`` guards on what forward
reads: modules by structure, not on adapter names, so a long-lived process that trains one language
adapter after another reuses one compiled graph instead of recompiling per language (and falling back
to eager past dynamo's recompile limit).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from madx.inject.layer import adapted_layer_output
from madx.inject.spec import get_path

ADDED_CHILDREN = ("madx_adapters", "madx_invertible", "madx_heads")  # the state-dict segments madx adds
MADX_ATTRIBUTES = ("madx_active", "madx_mode", "madx_paths", "madx_resolved", "madx_stale")  # plain attributes it adds
_CLASSES: dict[tuple[type, type], type] = {}


class Adapted(nn.Module):
    """What every adapted module has; a mixin, placed before the wrapped class."""

    madx_children: tuple[str, ...] = ()
    madx_base_class: type

    def madx_unwrap(self) -> None:
        for name in self.madx_children:
            delattr(self, name)
        for name in MADX_ATTRIBUTES:
            self.__dict__.pop(name, None)
        self.__class__ = type(self).madx_base_class

    def madx_resolve(self) -> None:
        """Resolve the active names to this module's own adapter modules (what forward reads): always a tuple,
        which nn.Module keeps as a plain attribute (a module assigned alone would become a child)."""
        self.madx_resolved = self._madx_lookup()
        self.madx_stale = False

    def _madx_lookup(self):
        raise NotImplementedError

    def _madx_current(self):
        if self.madx_stale:  # a DataParallel replica: its children were replaced after its attributes were copied
            self.madx_resolve()
        return self.madx_resolved

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()
        replica.madx_stale = True
        return replica


class AdaptedFFNOutput(Adapted):
    madx_children = ("madx_adapters",)

    def madx_init(self, paths: tuple[str, str, str]) -> None:
        self.madx_paths = paths  # (dense, dropout, layer norm), relative to this module
        self.madx_active: tuple[str, ...] = ()
        self.madx_mode = "paper"
        self.madx_adapters = nn.ModuleDict()
        self.madx_resolve()

    def _madx_lookup(self) -> tuple[nn.Module, ...]:
        return tuple(self.madx_adapters[name] for name in self.madx_active)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        adapters = self._madx_current()
        if not adapters:
            return super().forward(hidden_states, input_tensor, *args, **kwargs)
        dense, dropout, layer_norm = (get_path(self, path) for path in self.madx_paths)
        ffn_output = dropout(dense(hidden_states))  # r, (B, T, h)
        normalised = layer_norm(ffn_output + input_tensor)  # LN(r + x): what the base module returns
        return adapted_layer_output(list(adapters), self.madx_mode, normalised, ffn_output, input_tensor, layer_norm)


class AdaptedByName(Adapted):
    """An adapted module with one active entry, or none, of its one ModuleDict (``madx_children[0]``)."""

    def madx_init(self) -> None:
        self.madx_active: str | None = None
        setattr(self, self.madx_children[0], nn.ModuleDict())
        self.madx_resolve()

    def _madx_lookup(self) -> tuple[nn.Module, ...]:
        return () if self.madx_active is None else (getattr(self, self.madx_children[0])[self.madx_active],)


class AdaptedEmbeddings(AdaptedByName):
    madx_children = ("madx_invertible",)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        output = super().forward(*args, **kwargs)
        invertible = self._madx_current()  # () or (the active language's NICE coupling,)
        return invertible[0](output) if invertible else output


class AdaptedDecoder(AdaptedByName):
    madx_children = ("madx_invertible",)

    def madx_decoder_input(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """What the projection is applied to: the active invertible adapter's inverse of ``hidden``."""
        invertible = self._madx_current()
        return invertible[0].inverse(hidden) if invertible else hidden

    def forward(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return super().forward(self.madx_decoder_input(hidden), *args, **kwargs)


class AdaptedHead(AdaptedByName):
    madx_children = ("madx_heads",)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        head = self._madx_current()
        if not head:
            return super().forward(*args, **kwargs)
        return head[0](*args, **kwargs)


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
        for name in MADX_ATTRIBUTES:
            duplicate.__dict__.pop(name, None)
        duplicate.__class__ = type(duplicate).madx_base_class
    return duplicate
