"""Shared setup for the kernel tests: Triton through its interpreter on CPU, the float64 oracle rule.

TRITON_INTERPRET must be set before triton.jit decorates madx's kernels (they are imported on
first use), so it is set here, at collection, and only where there is no GPU to compile for.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# atol of the flash-attention rule, relative to the size of the float64 result
ATOL = {torch.float32: 1e-6, torch.float16: 2e-4, torch.bfloat16: 2e-3}


def triton_usable() -> tuple[bool, str]:
    if not HAS_TRITON:
        return False, "triton is not installed (pip install 'madx-bench[triton]')"
    from madx import kernels

    status = kernels.available_implementations()["triton"]
    return status.startswith("available"), status


@pytest.fixture
def needs_triton():
    ok, why = triton_usable()
    if not ok:
        pytest.skip(why)


@pytest.fixture
def check_against_f64():
    """check(name, kernel, low, ref64): |kernel - ref64| <= 2 |low - ref64| + atol, in max norm
    (flash-attention's rule), with low the reference run in the kernel's dtype."""

    def check(name: str, kernel: torch.Tensor, low: torch.Tensor, ref64: torch.Tensor, dtype: torch.dtype) -> None:
        assert kernel.shape == ref64.shape, f"{name}: shape {tuple(kernel.shape)} != {tuple(ref64.shape)}"
        assert torch.isfinite(kernel).all(), f"{name}: non-finite values"
        err = (kernel.double() - ref64).abs().max().item()
        ref_err = (low.double() - ref64).abs().max().item()
        atol = ATOL[dtype] * max(1.0, ref64.abs().max().item())
        assert err <= 2 * ref_err + atol, f"{name} ({dtype}): kernel error {err:.3g} > 2 * reference error {ref_err:.3g} + {atol:.3g}"

    return check
