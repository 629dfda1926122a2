"""What this process runs on: package versions, the compute device, the kernel implementations
available and what ``impl="auto"`` picks. Printed by ``madx info``; stored in every result's
provenance (``madx.provenance``)."""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from madx import kernels

PACKAGES = ("madx-bench", "torch", "transformers", "accelerate", "datasets", "seqeval",
            "safetensors", "tensorboard", "triton", "deepspeed")


def collect(probe: bool = False) -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    if torch.cuda.is_available():
        device = {"type": "cuda", "count": torch.cuda.device_count(), "name": torch.cuda.get_device_name(0),
                  "bf16": torch.cuda.is_bf16_supported()}
    else:
        device = {"type": "cpu", "threads": torch.get_num_threads()}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "device": device,
        "kernels": kernels.available_implementations(),
        "kernel_auto": kernels.probe_auto() if probe else kernels.describe_auto(),
    }
