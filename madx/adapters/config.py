"""The sizes of MAD-X's adapters, as one frozen config with the paper's defaults (§4, Table 4).

Sizes are given as reduction factors of the model's hidden size h, so one config fits any
encoder: at h = 768 (XLM-R base) the defaults give language adapters of 384, invertible
adapters whose F and G are 384 -> 192 -> 384, and task adapters of 48.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class AdapterConfig:
    language_reduction_factor: int = field(default=2, metadata={
        "help": "h / language adapter bottleneck (MAD-X: 2, i.e. 384 for h=768)"})
    invertible_reduction_factor: int = field(default=2, metadata={
        "help": "(h/2) / invertible adapter bottleneck: F and G are h/2 -> h/2/r -> h/2 (MAD-X: 2, i.e. 384 -> 192 -> 384)"})
    task_reduction_factor: int = field(default=16, metadata={
        "help": "h / task adapter bottleneck (MAD-X: 16, i.e. 48 for h=768)"})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"AdapterConfig.{f.name} must be a positive integer, got {value!r}")

    def language_size(self, hidden: int) -> int:
        return _divide(hidden, self.language_reduction_factor, "language_reduction_factor")

    def invertible_size(self, hidden: int) -> int:
        return _divide(hidden // 2, self.invertible_reduction_factor, "invertible_reduction_factor")

    def task_size(self, hidden: int) -> int:
        return _divide(hidden, self.task_reduction_factor, "task_reduction_factor")

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

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


def _divide(size: int, factor: int, what: str) -> int:
    if factor <= 0 or size % factor:
        raise ValueError(f"{what}={factor} must divide the size {size}")
    return size // factor
