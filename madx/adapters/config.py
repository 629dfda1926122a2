"""The sizes and placement of MAD-X's adapters, as one frozen config with the paper's defaults (§4, Table 4).

Sizes are given as reduction factors of the model's hidden size h, so one config fits any
encoder: at h = 768 (XLM-R base) the defaults give language adapters of 384, invertible
adapters whose F and G are 384 -> 192 -> 384, and task adapters of 48.

``leave_out`` names transformer layers that get no language or task adapter (MAD-X 2.0, AdapterHub's
``leave_out``: the last layer, ``(-1,)``); negative indices count from the end and are resolved
against the model's layer count when adapters are created (``resolve_layers``). The invertible
adapter sits on the embeddings and is not affected.

``init_weights`` says how new adapters start: ``"adapterhub"`` (the default, paper-faithful: AdapterHub
``adapters`` 1.x's "bert" init, every projection N(0, 0.02), biases 0, invertible adapters too) or
``"identity"`` (up-projections zero: an untrained adapter changes nothing). See ``madx.adapters.bottleneck``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

REDUCTION_FACTORS = ("language_reduction_factor", "invertible_reduction_factor", "task_reduction_factor")
INITS = ("adapterhub", "identity")  # the same as madx.adapters.bottleneck.INITS (this module does not import torch)


@dataclass(frozen=True)
class AdapterConfig:
    language_reduction_factor: int = field(default=2, metadata={
        "help": "h / language adapter bottleneck (MAD-X: 2, i.e. 384 for h=768)"})
    invertible_reduction_factor: int = field(default=2, metadata={
        "help": "(h/2) / invertible adapter bottleneck: F and G are h/2 -> h/2/r -> h/2 (MAD-X: 2, i.e. 384 -> 192 -> 384)"})
    task_reduction_factor: int = field(default=16, metadata={
        "help": "h / task adapter bottleneck (MAD-X: 16, i.e. 48 for h=768)"})
    leave_out: tuple[int, ...] = field(default=(), metadata={
        "help": "transformer layers without language and task adapters; -1 is the last layer (MAD-X: none; MAD-X 2.0: -1)"})
    init_weights: str = field(default="adapterhub", metadata={
        "help": "how new adapters start: 'adapterhub' (AdapterHub's 'bert' init: every projection N(0, 0.02), biases 0; "
                "what the paper's adapters were trained from) or 'identity' (up-projections 0: an untrained adapter changes nothing)"})

    def __post_init__(self) -> None:
        for name in REDUCTION_FACTORS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"AdapterConfig.{name} must be a positive integer, got {value!r}")
        leave_out = self.leave_out
        if isinstance(leave_out, int) and not isinstance(leave_out, bool):
            leave_out = (leave_out,)  # one layer, as a command-line flag gives it
        if not isinstance(leave_out, (tuple, list)) or any(isinstance(i, bool) or not isinstance(i, int) for i in leave_out):
            raise ValueError(f"AdapterConfig.leave_out must be a tuple of layer indices (integers, -1 = the last layer), got {self.leave_out!r}")
        if len(set(leave_out)) != len(leave_out):
            raise ValueError(f"AdapterConfig.leave_out names a layer twice: {self.leave_out!r}")
        object.__setattr__(self, "leave_out", tuple(leave_out))
        if self.init_weights not in INITS:
            raise ValueError(f"AdapterConfig.init_weights must be one of {', '.join(map(repr, INITS))}, got {self.init_weights!r}")

    def language_size(self, hidden: int) -> int:
        return _divide(hidden, self.language_reduction_factor, "language_reduction_factor")

    def invertible_size(self, hidden: int) -> int:
        return _divide(hidden // 2, self.invertible_reduction_factor, "invertible_reduction_factor")

    def task_size(self, hidden: int) -> int:
        return _divide(hidden, self.task_reduction_factor, "task_reduction_factor")

    def layers_left_out(self, num_layers: int) -> tuple[int, ...]:
        """``leave_out`` for a model of ``num_layers`` layers: sorted, non-negative."""
        return resolve_layers(self.leave_out, num_layers)

    def to_dict(self) -> dict[str, Any]:
        """Every setting (``from_dict`` reads it back as it was); ``leave_out`` only when it leaves a layer out, so
        the dicts of configs without one (job parameters, hence job ids) are what they were before the field."""
        data: dict[str, Any] = {name: getattr(self, name) for name in REDUCTION_FACTORS}
        if self.leave_out:
            data["leave_out"] = list(self.leave_out)
        data["init_weights"] = self.init_weights
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdapterConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown adapter setting(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**data)

    @staticmethod
    def help(name: str) -> str:
        return next(f.metadata["help"] for f in fields(AdapterConfig) if f.name == name)


def resolve_layers(leave_out: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """Layer indices (negative ones count from the end) as sorted indices into ``num_layers`` layers.

    Refused: an index outside the model, two indices for one layer, and leaving every layer out."""
    resolved: dict[int, int] = {}
    for index in leave_out:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"leave_out must hold layer indices (integers), got {index!r}")
        if not -num_layers <= index < num_layers:
            raise ValueError(f"leave_out: layer {index} does not exist in a model of {num_layers} layers "
                             f"(0..{num_layers - 1}, or -{num_layers}..-1 from the end)")
        layer = index % num_layers
        if layer in resolved:
            raise ValueError(f"leave_out names layer {layer} twice ({resolved[layer]} and {index}) in a model of {num_layers} layers")
        resolved[layer] = index
    if num_layers and len(resolved) == num_layers:
        raise ValueError(f"leave_out {list(leave_out)} leaves all {num_layers} layers without adapters")
    return tuple(sorted(resolved))


def _divide(size: int, factor: int, what: str) -> int:
    if factor <= 0 or size % factor:
        raise ValueError(f"{what}={factor} must divide the size {size}")
    return size // factor
