"""Pure nn.Modules for MAD-X adapters. Nothing here knows about transformers."""

from madx.adapters.bottleneck import BottleneckAdapter
from madx.adapters.config import AdapterConfig
from madx.adapters.invertible import NICECoupling
from madx.adapters.sets import ADAPTER_KINDS, AdapterSet

__all__ = ["ADAPTER_KINDS", "AdapterConfig", "AdapterSet", "BottleneckAdapter", "NICECoupling"]
