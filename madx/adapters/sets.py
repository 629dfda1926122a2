"""Named adapter sets: one bottleneck adapter per transformer layer (+ an invertible adapter).

A *language* set holds the per-layer language adapters of one language and, for MAD-X, that
language's invertible adapter. A *task* set holds the per-layer task adapters of one task.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from madx.adapters.bottleneck import BottleneckAdapter
from madx.adapters.invertible import NICECoupling

AdapterKind = Literal["language", "task"]
ADAPTER_KINDS: tuple[str, ...] = ("language", "task")


class AdapterSet(nn.Module):
    def __init__(
        self,
        kind: AdapterKind,
        num_layers: int,
        hidden_size: int,
        bottleneck_size: int,
        invertible_bottleneck_size: int | None = None,
    ):
        super().__init__()
        if kind not in ADAPTER_KINDS:
            raise ValueError(f"adapter kind must be one of {ADAPTER_KINDS}, got {kind!r}")
        if invertible_bottleneck_size is not None and kind != "language":
            raise ValueError("only language adapters carry an invertible adapter (MAD-X §4.3)")
        self.kind = kind
        self.layers = nn.ModuleList(BottleneckAdapter(hidden_size, bottleneck_size) for _ in range(num_layers))
        self.invertible = (
            NICECoupling(hidden_size, invertible_bottleneck_size) if invertible_bottleneck_size is not None else None
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return self.layers[0].hidden_size

    @property
    def bottleneck_size(self) -> int:
        return self.layers[0].bottleneck_size

    @property
    def invertible_bottleneck_size(self) -> int | None:
        return None if self.invertible is None else self.invertible.bottleneck_size
