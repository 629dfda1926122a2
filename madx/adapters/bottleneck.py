"""Bottleneck adapter (Pfeiffer et al. 2020 placement), as MAD-X uses it.

One adapter is a down-projection D: h -> d, a ReLU and an up-projection U: d -> h, with a residual:

    A(h_in, r) = U(ReLU(D(h_in))) + r

How the adapter is wired into a transformer layer (the equations of MAD-X, §4.1–4.2) lives in
``madx.inject.layer``; this module is only the projection pair.

Initialisation (``init``, one of ``INITS``; ``AdapterConfig.init_weights`` picks it for a model's adapters):

* ``"adapterhub"``: D and U ~ N(0, 0.02), biases 0 — AdapterHub ``adapters`` 1.x's ``init_weights="bert"``,
  the library the paper's adapters were trained with. An untrained adapter is close to, not exactly,
  the identity.
* ``"identity"``: D ~ N(0, 0.02), U = 0, biases 0, so an untrained adapter returns its residual exactly
  and the adapted layer computes what the base layer computed. With U = 0 the first step moves only U
  and the up-bias (dL/dU = ReLU(D h) ⊗ dL/dA); D gets no gradient until U is non-zero
  (dL/dD = Uᵀ dL/dA ⊙ ReLU' ⊗ h = 0), i.e. from the second step on.
"""

from __future__ import annotations

import torch
from torch import nn

from madx import kernels


INITS: tuple[str, ...] = ("adapterhub", "identity")


def check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"adapter init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
    return init


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden_size: int, bottleneck_size: int, init: str = "identity"):
        super().__init__()
        if hidden_size <= 0 or bottleneck_size <= 0:
            raise ValueError(f"adapter sizes must be positive, got hidden={hidden_size}, bottleneck={bottleneck_size}")
        self.hidden_size = hidden_size
        self.bottleneck_size = bottleneck_size
        self.init = check_init(init)
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_projections(self.down, self.up, self.init)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        # hidden, residual: (B, T, h) -> (B, T, h)
        return kernels.bottleneck_adapter(
            hidden, residual, self.down.weight, self.down.bias, self.up.weight, self.up.bias
        )

    def extra_repr(self) -> str:
        return f"hidden={self.hidden_size}, bottleneck={self.bottleneck_size}"


def init_projections(down: nn.Linear, up: nn.Linear, init: str) -> None:
    """D ~ N(0, 0.02); U ~ N(0, 0.02) ("adapterhub") or 0 ("identity"); biases 0."""
    nn.init.normal_(down.weight, std=0.02)
    nn.init.zeros_(down.bias)
    if check_init(init) == "adapterhub":
        nn.init.normal_(up.weight, std=0.02)
    else:
        nn.init.zeros_(up.weight)
    nn.init.zeros_(up.bias)
