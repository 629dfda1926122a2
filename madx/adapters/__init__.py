"""Pure nn.Modules for MAD-X adapters. Nothing here knows about transformers.

Names are imported on first use, so ``madx.adapters.config`` (AdapterConfig, read by the CLI's
argument defaults) does not import torch."""

from __future__ import annotations

from madx.lazy import lazy_exports

_EXPORTS = {
    "BottleneckAdapter": "madx.adapters.bottleneck",
    "AdapterConfig": "madx.adapters.config",
    "NICECoupling": "madx.adapters.invertible",
    "ADAPTER_KINDS": "madx.adapters.sets",
    "AdapterSet": "madx.adapters.sets",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
