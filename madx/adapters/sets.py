"""Named adapter sets: one bottleneck adapter per transformer layer (+ an invertible adapter).

A *language* set holds the per-layer language adapters of one language and, for MAD-X, that
language's invertible adapter. A *task* set holds the per-layer task adapters of one task.
Layers in ``leave_out`` (MAD-X 2.0: the last) hold no adapter: ``layers[i]`` is ``None`` there, so
the set's tensors keep the names ``layers.{i}.…`` of the layers that have one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from madx.adapters.bottleneck import BottleneckAdapter
from madx.adapters.config import resolve_layers
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
        leave_out: Sequence[int] = (),
        init: str = "identity",
    ):
        super().__init__()
        if kind not in ADAPTER_KINDS:
            raise ValueError(f"adapter kind must be one of {ADAPTER_KINDS}, got {kind!r}")
        if invertible_bottleneck_size is not None and kind != "language":
            raise ValueError("only language adapters carry an invertible adapter (MAD-X §4.3)")
        self.kind = kind
        self.hidden_size = hidden_size
        self.bottleneck_size = bottleneck_size
        self.leave_out = resolve_layers(leave_out, num_layers)  # sorted, non-negative
        # a ModuleList may hold None: no parameters, no state_dict entries, skipped by .to() and .modules()
        self.layers = nn.ModuleList(
            None if index in self.leave_out else BottleneckAdapter(hidden_size, bottleneck_size, init) for index in range(num_layers)
        )
        self.invertible = (
            NICECoupling(hidden_size, invertible_bottleneck_size, init) if invertible_bottleneck_size is not None else None
        )

    @classmethod
    def assemble(cls, kind: AdapterKind, layers: Sequence[BottleneckAdapter | None], invertible: NICECoupling | None) -> "AdapterSet":
        """A set made of existing modules (not copies): how a model's adapted modules hold one adapter set
        between them, seen as one module with the usual names (``layers.{i}.…``, ``invertible.…``)."""
        present = [layer for layer in layers if layer is not None]
        if not present:
            raise ValueError("an adapter set needs an adapter in at least one layer")
        adapter_set = cls.__new__(cls)
        nn.Module.__init__(adapter_set)
        adapter_set.kind = kind
        adapter_set.hidden_size = present[0].hidden_size
        adapter_set.bottleneck_size = present[0].bottleneck_size
        adapter_set.leave_out = tuple(i for i, layer in enumerate(layers) if layer is None)
        adapter_set.layers = nn.ModuleList(layers)
        adapter_set.invertible = invertible
        return adapter_set

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def invertible_bottleneck_size(self) -> int | None:
        return None if self.invertible is None else self.invertible.bottleneck_size
