"""The one dispatch point for madx's adapter ops.

    bottleneck_adapter(hidden, residual, down_weight, down_bias, up_weight, up_bias, impl=None)
    stacked_bottleneck(hidden, residual, down1_weight, ..., up2_bias, impl=None)
    nice_coupling(x, f_down_weight, ..., g_up_bias, inverse=False, impl=None)

Each has the signature of its pure-PyTorch twin in ``reference.py`` plus ``impl``. Implementations:

    "reference"  reference.py; any device and dtype; always available
    "triton"     triton_bottleneck.py / triton_nice.py; CUDA tensors in fp16/bf16/fp32, or CPU
                 tensors when TRITON_INTERPRET=1 was set before the Triton modules were imported

Choice, first match wins: the ``impl`` argument, the ``MADX_KERNEL_IMPL`` environment variable
("auto" or unset in either defers), else "reference". "auto" does not pick Triton even on CUDA:
on an H200 at XLM-R base sizes (bf16, 16,384 tokens; reports/perf/h200.md) the Triton backward
was 2-5x slower than the reference's cuBLAS GEMMs (one language adapter, forward + backward:
0.771 vs 0.226 ms) and whole steps were slower too (language-adapter MLM step 61.8 vs 54.7 ms),
so it is opt-in (``impl="triton"`` or ``MADX_KERNEL_IMPL=triton``) until it measures faster.
A forced implementation that cannot run raises with the reason instead of falling back.
Triton is an optional extra (``pip install madx-bench[triton]``): it is imported on first use.
"""

from __future__ import annotations

import difflib
import functools
import os

import torch

from madx.kernels.reference import bottleneck_adapter_ref, nice_coupling_ref, stacked_bottleneck_ref

__all__ = [
    "IMPLEMENTATIONS",
    "available_implementations",
    "bottleneck_adapter",
    "bottleneck_adapter_ref",
    "nice_coupling",
    "nice_coupling_ref",
    "resolve_impl",
    "stacked_bottleneck",
    "stacked_bottleneck_ref",
]

IMPLEMENTATIONS = ("reference", "triton")
ENV_VAR = "MADX_KERNEL_IMPL"
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.lru_cache(maxsize=None)
def _triton_ops():
    """Import the Triton modules once; returns (bottleneck fn, nice fn, interpreter flag) or raises ImportError."""
    import triton  # noqa: F401  (the optional extra)

    from madx.kernels import triton_linear
    from madx.kernels.triton_bottleneck import bottleneck_adapter_triton
    from madx.kernels.triton_nice import nice_coupling_triton

    return bottleneck_adapter_triton, nice_coupling_triton, triton_linear.INTERPRET


@functools.lru_cache(maxsize=None)
def _triton_status() -> tuple[bool, str]:
    """Probed once per process: (usable, "available..." or the reason not)."""
    try:
        _, _, interpret = _triton_ops()
    except ImportError as e:
        if e.name == "triton":
            return False, f"not installed ({e.msg}); pip install 'madx-bench[triton]'"
        return False, f"import failed: {e}"
    except Exception as e:  # a broken install should be reported, not crash `madx info`
        return False, f"import failed: {type(e).__name__}: {e}"
    if interpret:
        return True, "available (interpreter: TRITON_INTERPRET=1, runs on CPU tensors, slow)"
    if not torch.cuda.is_available():
        return False, "installed, but no CUDA device (set TRITON_INTERPRET=1 to run it on CPU, slowly)"
    return True, "available"


def available_implementations() -> dict[str, str]:
    """name -> "available" (possibly with a note) or the reason it is not; for `madx info`."""
    ok, why = _triton_status()
    return {"reference": "available", "triton": why}


def _check_name(name: str, source: str) -> str:
    if name not in IMPLEMENTATIONS:
        close = difflib.get_close_matches(name, IMPLEMENTATIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown kernel implementation {name!r} (from {source}); known: {', '.join(IMPLEMENTATIONS)} "
            f"(or 'auto'){hint}"
        )
    return name


def _triton_unsupported(tensors: list[torch.Tensor]) -> str | None:
    """Why the Triton path cannot take these tensors, or None if it can."""
    ok, why = _triton_status()
    if not ok:
        return f"triton is {why}"
    _, _, interpret = _triton_ops()
    for t in tensors:
        if t.device.type != "cuda" and not interpret:
            return f"a tensor is on {t.device}; the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 on CPU)"
    dtype = tensors[0].dtype
    if torch.is_autocast_enabled(tensors[0].device.type):
        dtype = torch.get_autocast_dtype(tensors[0].device.type)
    if dtype not in _TRITON_DTYPES:
        return f"dtype {dtype} is not supported by the Triton kernels (supported: fp16, bf16, fp32)"
    return None


def resolve_impl(impl: str | None, *tensors: torch.Tensor | None) -> str:
    """The implementation a call with these tensors runs: the forced one (argument, then env), checked
    that it can run on these tensors, else the reference."""
    source = "impl argument"
    if impl in (None, "auto") and os.environ.get(ENV_VAR, "").strip().lower() not in ("", "auto"):
        impl, source = os.environ[ENV_VAR].strip().lower(), f"${ENV_VAR}"
    if impl not in (None, "auto"):
        impl = _check_name(impl, source)
        if impl == "triton":
            why = _triton_unsupported([t for t in tensors if t is not None])
            if why is not None:
                raise RuntimeError(f"kernel implementation 'triton' was forced ({source}) but cannot run: {why}")
        return impl
    return "reference"


def bottleneck_adapter(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
    impl: str | None = None,
) -> torch.Tensor:
    """up(ReLU(down(hidden))) + residual. hidden, residual: (..., h); down: (d, h); up: (h, d)."""
    args = (hidden, residual, down_weight, down_bias, up_weight, up_bias)
    if resolve_impl(impl, *args) == "triton":
        return _triton_ops()[0](*args)
    return bottleneck_adapter_ref(*args)


def stacked_bottleneck(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down1_weight: torch.Tensor,
    down1_bias: torch.Tensor | None,
    up1_weight: torch.Tensor,
    up1_bias: torch.Tensor | None,
    down2_weight: torch.Tensor,
    down2_bias: torch.Tensor | None,
    up2_weight: torch.Tensor,
    up2_bias: torch.Tensor | None,
    impl: str | None = None,
) -> torch.Tensor:
    """Stack(language, task), MAD-X eq. 2: two bottleneck adapters sharing one residual.

    Composed, not fused: the first adapter's (..., h) output is the second's input in backward,
    so it is written to memory whichever way the forward runs.
    """
    la = bottleneck_adapter(hidden, residual, down1_weight, down1_bias, up1_weight, up1_bias, impl=impl)  # (..., h)
    return bottleneck_adapter(la, residual, down2_weight, down2_bias, up2_weight, up2_bias, impl=impl)  # (..., h)


def nice_coupling(
    x: torch.Tensor,
    f_down_weight: torch.Tensor,
    f_down_bias: torch.Tensor | None,
    f_up_weight: torch.Tensor,
    f_up_bias: torch.Tensor | None,
    g_down_weight: torch.Tensor,
    g_down_bias: torch.Tensor | None,
    g_up_weight: torch.Tensor,
    g_up_bias: torch.Tensor | None,
    inverse: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """NICE coupling (MAD-X eq. 3) or its inverse (eq. 4); x: (..., h) -> (..., h). Both
    directions are differentiable on every implementation."""
    args = (x, f_down_weight, f_down_bias, f_up_weight, f_up_bias, g_down_weight, g_down_bias, g_up_weight, g_up_bias)
    if resolve_impl(impl, *args) == "triton":
        return _triton_ops()[1](*args, inverse=inverse)
    return nice_coupling_ref(*args, inverse=inverse)
