"""Invertible adapter: a NICE additive coupling block (Dinh et al. 2015; MAD-X eq. 3–5).

The embedding vector e is split into halves e1, e2 (h/2 each) and, with F and G small
bottleneck networks h/2 -> h/4 -> h/2 (ReLU in between),

    forward (eq. 3):  o1 = F(e2) + e1        inverse (eq. 4):  e2 = o2 - G(o1)
                      o2 = G(o1) + e2                          e1 = o1 - F(e2)
                      o  = [o1, o2]                            e  = [e1, e2]

MAD-X applies the forward pass to the output of the embedding layer and the inverse to the
hidden state right before the tied output-embedding projection of the MLM head.

Initialisation (``init``, as for ``BottleneckAdapter``): "adapterhub" draws every projection of F and
G from N(0, 0.02) with zero biases (AdapterHub applies its "bert" init to the NICE block too);
"identity" starts the up-projections at zero, so the block starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from madx import kernels
from madx.adapters.bottleneck import check_init, init_projections


class _CouplingNet(nn.Module):
    """F or G of eq. 5: U(ReLU(D(x)))."""

    def __init__(self, size: int, bottleneck_size: int, init: str):
        super().__init__()
        self.down = nn.Linear(size, bottleneck_size)
        self.up = nn.Linear(bottleneck_size, size)
        init_projections(self.down, self.up, init)


class NICECoupling(nn.Module):
    def __init__(self, hidden_size: int, bottleneck_size: int | None = None, init: str = "identity"):
        super().__init__()
        if hidden_size <= 0 or hidden_size % 2:
            raise ValueError(f"an invertible adapter needs an even hidden size, got {hidden_size}")
        half = hidden_size // 2
        self.hidden_size = hidden_size
        self.bottleneck_size = bottleneck_size or hidden_size // 4
        self.init = check_init(init)
        self.F = _CouplingNet(half, self.bottleneck_size, init)
        self.G = _CouplingNet(half, self.bottleneck_size, init)

    def _weights(self) -> tuple[torch.Tensor, ...]:
        return (
            self.F.down.weight, self.F.down.bias, self.F.up.weight, self.F.up.bias,
            self.G.down.weight, self.G.down.bias, self.G.up.weight, self.G.up.bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, h) -> (B, T, h)
        return kernels.nice_coupling(x, *self._weights(), inverse=False)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        # (B, T, h) -> (B, T, h), exact inverse of forward
        return kernels.nice_coupling(y, *self._weights(), inverse=True)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden_size}, bottleneck={self.bottleneck_size}"
