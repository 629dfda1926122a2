"""The one dispatch point: probing, forcing, helpful errors, and life without triton."""

from __future__ import annotations

import ast
import os

import pytest
import torch

from madx import kernels

from .conftest import DEVICE, HAS_TRITON


def tiny_args(h=8, d=2, device=DEVICE):
    shapes = [(3, h), (3, h), (d, h), (d,), (h, d), (h,)]
    return [torch.randn(*shape, device=device) for shape in shapes]


def test_available_implementations_lists_both_with_a_status():
    avail = kernels.available_implementations()
    assert set(avail) == {"reference", "triton"}
    assert avail["reference"] == "available"
    assert isinstance(avail["triton"], str) and avail["triton"]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_auto_is_the_reference_on_every_device(monkeypatch, device):
    # Triton is opt-in: it measured slower than cuBLAS on an H200 (see madx/kernels/__init__.py)
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    assert kernels.resolve_impl(None, *tiny_args(device=device)) == "reference"
    assert kernels.resolve_impl("auto", *tiny_args(device=device)) == "reference"


def test_unknown_name_suggests_the_nearest(monkeypatch):
    with pytest.raises(ValueError, match="did you mean 'triton'"):
        kernels.bottleneck_adapter(*tiny_args(), impl="tritn")
    monkeypatch.setenv(kernels.ENV_VAR, "refrence")
    with pytest.raises(ValueError, match=r"MADX_KERNEL_IMPL.*did you mean 'reference'"):
        kernels.bottleneck_adapter(*tiny_args())


def test_env_var_forces_and_argument_wins(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "reference")
    assert kernels.resolve_impl(None, *tiny_args()) == "reference"
    args = tiny_args()
    torch.testing.assert_close(kernels.bottleneck_adapter(*args), kernels.bottleneck_adapter_ref(*args))
    if kernels.available_implementations()["triton"].startswith("available"):
        assert kernels.resolve_impl("triton", *args) == "triton"


def test_float64_is_not_taken_by_triton():
    args = [t.double() for t in tiny_args()]
    assert kernels.resolve_impl(None, *args) == "reference"
    if HAS_TRITON:
        with pytest.raises(RuntimeError, match="float64"):
            kernels.bottleneck_adapter(*args, impl="triton")


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_forcing_triton_on_cpu_without_the_interpreter_says_why(monkeypatch):
    ops = kernels._triton_ops()
    monkeypatch.setattr(kernels, "_triton_ops", lambda: (ops[0], ops[1], False))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernels.bottleneck_adapter(*tiny_args(device="cpu"), impl="triton")


def test_import_never_needs_triton():
    """triton is an optional extra: nothing madx.kernels imports at load time imports it
    (the Triton modules are imported on first use)."""
    pkg = os.path.dirname(kernels.__file__)
    for name in ("__init__.py", "reference.py"):
        tree = ast.parse(open(os.path.join(pkg, name)).read())
        for node in tree.body:  # module level only
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert not mod.startswith("triton") and "triton_" not in mod, f"{name} imports {mod} at load time"


def test_fallback_and_report_without_triton(monkeypatch):
    def no_triton():
        raise ImportError("No module named 'triton'", name="triton")

    monkeypatch.setattr(kernels, "_triton_ops", no_triton)
    kernels._triton_status.cache_clear()
    try:
        status = kernels.available_implementations()
        assert status["reference"] == "available"
        assert status["triton"].startswith("not installed") and "pip install" in status["triton"]
        args = tiny_args()
        torch.testing.assert_close(kernels.bottleneck_adapter(*args), kernels.bottleneck_adapter_ref(*args))
        with pytest.raises(RuntimeError, match="not installed"):
            kernels.bottleneck_adapter(*args, impl="triton")
    finally:
        kernels._triton_status.cache_clear()  # the next probe sees the real triton again
