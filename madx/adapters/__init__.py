"""Pure nn.Modules for MAD-X adapters. Nothing here knows about transformers.

Names are imported on first use, so ``madx.adapters.config`` (AdapterConfig, read by the CLI's
argument defaults) does not import torch."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BottleneckAdapter": "madx.adapters.bottleneck",
    "AdapterConfig": "madx.adapters.config",
    "NICECoupling": "madx.adapters.invertible",
    "ADAPTER_KINDS": "madx.adapters.sets",
    "AdapterSet": "madx.adapters.sets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'madx.adapters' has no attribute {name!r}")
