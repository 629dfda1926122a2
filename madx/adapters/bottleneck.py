"""Bottleneck adapter (Pfeiffer et al. 2020 placement), as MAD-X uses it.

One adapter is a down-projection D: h -> d, a ReLU and an up-projection U: d -> h, with a residual:

    A(h_in, r) = U(ReLU(D(h_in))) + r

How the adapter is wired into a transformer layer (the equations of MAD-X, §4.1–4.2) lives in
``madx.inject.layer``; this module is only the projection pair.

Initialisation: D ~ N(0, 0.02), U = 0, biases 0, so an untrained adapter returns its residual
exactly and the adapted layer computes what the base layer computed (Houlsby et al. 2019 ask for
a near-identity start; a zero up-projection makes it exact while D still receives gradient from
the first step on, because dL/dU = ReLU(D h) ⊗ dL/dA is non-zero).
"""

from __future__ import annotations

import torch
from torch import nn

from madx import kernels


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden_size: int, bottleneck_size: int):
        super().__init__()
        if hidden_size <= 0 or bottleneck_size <= 0:
            raise ValueError(f"adapter sizes must be positive, got hidden={hidden_size}, bottleneck={bottleneck_size}")
        self.hidden_size = hidden_size
        self.bottleneck_size = bottleneck_size
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        # hidden, residual: (B, T, h) -> (B, T, h)
        return kernels.bottleneck_adapter(
            hidden, residual, self.down.weight, self.down.bias, self.up.weight, self.up.bias
        )

    def extra_repr(self) -> str:
        return f"hidden={self.hidden_size}, bottleneck={self.bottleneck_size}"
