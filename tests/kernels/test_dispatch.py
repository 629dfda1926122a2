"""The one dispatch point: probing, forcing, helpful errors, and life without triton."""

from __future__ import annotations

import ast
import functools
import os

import pytest
import torch

from madx import kernels
from madx.kernels import auto

from .conftest import DEVICE, HAS_TRITON


def tiny_args(h=8, d=2, device=DEVICE):
    shapes = [(3, h), (3, h), (d, h), (d,), (h, d), (h,)]
    return [torch.randn(*shape, device=device) for shape in shapes]


def _op_args(op, device=DEVICE, grad=False, h=8, d=2, rows=3, dtype=torch.float32):
    """Arguments of ``op`` (in its order) and its keyword arguments; activations need grad with ``grad``."""
    def t(*shape, leaf=False):
        return torch.randn(*shape, device=device, dtype=dtype).requires_grad_(grad and leaf)

    def adapter(n_in=h, k=d):
        return [t(k, n_in, leaf=True), t(k, leaf=True), t(n_in, k, leaf=True), t(n_in, leaf=True)]

    if op == "bottleneck_adapter":
        return [t(rows, h, leaf=True), t(rows, h), *adapter()], {}
    if op == "adapter_layer":
        return [t(rows, h, leaf=True), t(rows, h), t(rows, h), *adapter(), t(h), t(h), 1e-5], {}
    if op == "stacked_adapter_layer":
        return [t(rows, h, leaf=True), t(rows, h), t(rows, h), *adapter(), *adapter(k=1), t(h), t(h), 1e-5], {}
    return [t(rows, h, leaf=True), *adapter(h // 2), *adapter(h // 2)], {"inverse": False}


OP_ARGS = {op: functools.partial(_op_args, op) for op in kernels.OPS}


def test_available_implementations_lists_both_with_a_status():
    avail = kernels.available_implementations()
    assert set(avail) == {"reference", "triton"}
    assert avail["reference"] == "available"
    assert isinstance(avail["triton"], str) and avail["triton"]


@pytest.mark.parametrize("op", OP_ARGS)
def test_auto_is_the_reference_on_cpu(monkeypatch, op):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    args, kwargs = OP_ARGS[op](device="cpu")
    assert kernels.resolve_impl(None, *args, op=op, **kwargs) == "reference"
    assert kernels.resolve_impl("auto", *args, op=op, **kwargs) == "reference"
    assert not auto.choices(), "nothing is probed for CPU tensors"


@pytest.mark.skipif(torch.cuda.is_available(), reason="describes a machine without CUDA")
def test_describe_auto_without_cuda_says_reference_and_why(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    described = kernels.describe_auto()
    assert set(kernels.OPS) <= set(described)
    for op in kernels.OPS:
        assert described[op].startswith("reference") and "CUDA" in described[op], described[op]
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    monkeypatch.setattr(kernels, "_IMPL_SETTING", [])  # read the variable afresh
    assert kernels.describe_auto()["adapter_layer"].startswith("forced to 'triton' by $MADX_KERNEL_IMPL")


@pytest.fixture
def probe_on_cpu(monkeypatch, needs_triton):
    """Let auto probe CPU tensors (through the interpreter), with a fake timer: returns the list
    of timings it will report, (reference ms, triton ms), one pair per probe; records the calls."""
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    monkeypatch.setattr(kernels, "_AUTO_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(auto, "TOKENS_MIN", 16)
    timings, calls = [], []

    def fake_median_ms(fns, device):
        for fn in fns:  # both runners must really run: forward and backward of each implementation
            fn()
        calls.append(device)
        result = timings.pop(0)
        if isinstance(result, Exception):
            raise result
        return list(result)

    monkeypatch.setattr(auto, "median_ms", fake_median_ms)
    auto.clear()
    yield timings, calls
    auto.clear()


@pytest.mark.parametrize("op", OP_ARGS)
def test_auto_picks_what_the_probe_measured_faster_and_probes_once(probe_on_cpu, op):
    timings, calls = probe_on_cpu
    timings += [(2.0, 1.0)]
    args, kwargs = OP_ARGS[op](device="cpu", grad=True)
    assert kernels.resolve_impl(None, *args, op=op, **kwargs) == "triton"
    assert kernels.resolve_impl("auto", *args, op=op, **kwargs) == "triton"
    assert len(calls) == 1, "the probe is cached"
    described = kernels.describe_auto()[op]
    assert described.startswith("triton for train") and "1.000 ms vs reference 2.000 ms" in described


def test_auto_keeps_the_reference_unless_triton_wins_by_the_margin(probe_on_cpu):
    timings, calls = probe_on_cpu
    timings += [(1.0, 0.97), (1.0, 2.0)]
    args, kwargs = OP_ARGS["adapter_layer"](device="cpu", grad=True)
    assert kernels.resolve_impl(None, *args, op="adapter_layer") == "reference"  # 3 % faster is noise
    bigger, _ = OP_ARGS["adapter_layer"](device="cpu", grad=True, d=3)  # other sizes: a probe of their own
    assert kernels.resolve_impl(None, *bigger, op="adapter_layer") == "reference"
    assert len(calls) == 2
    assert "not >= 1.05x faster" in kernels.describe_auto()["adapter_layer"]


def test_auto_probes_inference_apart_from_training(probe_on_cpu):
    timings, calls = probe_on_cpu
    timings += [(2.0, 1.0), (1.0, 2.0)]
    args, kwargs = OP_ARGS["bottleneck_adapter"](device="cpu", grad=True)
    assert kernels.resolve_impl(None, *args) == "triton"
    with torch.no_grad():
        assert kernels.resolve_impl(None, *args) == "reference"
    assert len(calls) == 2


def test_a_failing_triton_probe_falls_back_to_the_reference(probe_on_cpu):
    timings, _ = probe_on_cpu
    timings += [RuntimeError("out of resources")]
    args, kwargs = OP_ARGS["nice_coupling"](device="cpu", grad=True)
    assert kernels.resolve_impl(None, *args, op="nice_coupling", **kwargs) == "reference"
    assert "failed in the probe (RuntimeError: out of resources)" in kernels.describe_auto()["nice_coupling"]


def test_forced_implementations_never_probe(probe_on_cpu, monkeypatch):
    _, calls = probe_on_cpu
    args, kwargs = OP_ARGS["adapter_layer"](device="cpu", grad=True)
    assert kernels.resolve_impl("reference", *args, op="adapter_layer") == "reference"
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    monkeypatch.setattr(kernels, "_IMPL_SETTING", [])  # read the variable afresh
    assert kernels.resolve_impl(None, *args, op="adapter_layer") == "triton"
    assert not calls


def test_auto_is_the_reference_inside_torch_compile(probe_on_cpu, monkeypatch):
    _, calls = probe_on_cpu
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    args, _ = OP_ARGS["adapter_layer"](device="cpu", grad=True)
    assert kernels.resolve_impl(None, *args, op="adapter_layer") == "reference"
    assert not calls


def test_auto_compiles_into_one_graph_with_the_reference(monkeypatch):
    """torch.compile(fullgraph=True) traces the dispatch: auto resolves to the reference there."""
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    args, _ = OP_ARGS["adapter_layer"](device="cpu", grad=True)
    compiled = torch.compile(kernels.adapter_layer, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(*args), kernels.adapter_layer_ref(*args))


def test_the_probe_leaves_the_callers_rng_alone(probe_on_cpu):
    timings, _ = probe_on_cpu
    timings += [(2.0, 1.0)]
    args, kwargs = OP_ARGS["stacked_adapter_layer"](device="cpu", grad=True)
    state = torch.random.get_rng_state()
    kernels.resolve_impl(None, *args, op="stacked_adapter_layer")
    assert torch.equal(torch.random.get_rng_state(), state)


def test_probe_auto_probes_every_op_at_the_given_shapes(probe_on_cpu):
    timings, calls = probe_on_cpu
    timings += [(2.0, 1.0)] * 7
    described = kernels.probe_auto(hidden=32, tokens=16, dtype=torch.float32, device="cpu")
    assert len(calls) == 7
    assert {k[3] for k in auto.choices()} == {(32, 16), (32, 2), (32, 16, 2), (32, 8, False), (32, 8, True)}
    for op in kernels.OPS:
        assert described[op].startswith("triton for train 16 tokens"), described[op]


def test_probe_tokens_round_up_to_a_bounded_power_of_two():
    assert [auto.probe_tokens(n) for n in (1, 1000, 1025, 16384, 16385, 10**6)] == [
        1024, 1024, 2048, 16384, 32768, 32768]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_on_cuda_follows_the_probe(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    auto.clear()
    described = kernels.probe_auto(tokens=4096)
    for op in kernels.OPS:
        assert described[op].startswith(("triton for", "reference for")), described[op]
    args, _ = OP_ARGS["adapter_layer"](device="cuda", grad=True, h=768, d=384, rows=4096, dtype=torch.bfloat16)
    key = next(k for k in auto.choices() if k[0] == "adapter_layer" and k[3] == (768, 384))
    assert kernels.resolve_impl(None, *args, op="adapter_layer") == auto.choices()[key].impl
    auto.clear()


def test_unknown_name_suggests_the_nearest(monkeypatch):
    with pytest.raises(ValueError, match="did you mean 'triton'"):
        kernels.bottleneck_adapter(*tiny_args(), impl="tritn")
    monkeypatch.setenv(kernels.ENV_VAR, "refrence")
    monkeypatch.setattr(kernels, "_IMPL_SETTING", [])  # read the variable afresh
    with pytest.raises(ValueError, match=r"MADX_KERNEL_IMPL.*did you mean 'reference'"):
        kernels.bottleneck_adapter(*tiny_args())


def test_env_var_forces_and_argument_wins(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "reference")
    monkeypatch.setattr(kernels, "_IMPL_SETTING", [])  # read the variable afresh
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
    monkeypatch.setattr(kernels, "_triton_ops", lambda: ops._replace(interpret=False))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernels.bottleneck_adapter(*tiny_args(device="cpu"), impl="triton")


def test_import_never_needs_triton():
    """triton is an optional extra: nothing madx.kernels imports at load time imports it
    (the Triton modules are imported on first use)."""
    pkg = os.path.dirname(kernels.__file__)
    for name in ("__init__.py", "reference.py", "auto.py"):
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


def test_the_forced_implementation_is_a_setting_read_once(monkeypatch):
    monkeypatch.setattr(kernels, "_IMPL_SETTING", [])
    monkeypatch.setenv(kernels.ENV_VAR, "reference")
    assert kernels._forced() == ("reference", "$MADX_KERNEL_IMPL")
    monkeypatch.setenv(kernels.ENV_VAR, "triton")  # changing the environment later changes nothing
    assert kernels._forced()[0] == "reference"
    with kernels.use_impl("triton"):
        assert kernels._forced() == ("triton", "madx.kernels.use_impl")
    assert kernels._forced()[0] == "reference"
    kernels.set_impl(None)
    assert kernels._forced() == (None, "")
    with pytest.raises(ValueError, match="did you mean 'triton'"):
        kernels.set_impl("tritn")


def test_a_failing_probe_is_reported_not_swallowed(probe_on_cpu, caplog):
    """A worker whose Triton path breaks in the probe runs the reference, and says so: a warning
    when it happens, probe_failures() and describe_auto() (madx info, provenance) afterwards."""
    timings, _ = probe_on_cpu
    timings += [RuntimeError("CUDA error: invalid device context"), (2.0, 1.0)]
    args, kwargs = OP_ARGS["nice_coupling"](device="cpu", grad=True)
    assert kernels.probe_failures() == {}
    with caplog.at_level("WARNING", logger="madx.kernels.auto"):
        assert kernels.resolve_impl(None, *args, op="nice_coupling", **kwargs) == "reference"
    assert "invalid device context" in caplog.text and "auto runs the reference" in caplog.text
    (where, why), = kernels.probe_failures().items()
    assert where.startswith("nice_coupling on cpu (train") and "RuntimeError: CUDA error: invalid device context" in why
    other, _ = OP_ARGS["bottleneck_adapter"](device="cpu", grad=True)
    assert kernels.resolve_impl(None, *other) == "triton"  # a probe that worked is no failure
    assert len(kernels.probe_failures()) == 1


def test_the_probe_and_triton_calls_run_under_the_tensors_device(probe_on_cpu, monkeypatch):
    """Triton launches on the current device: the probe (warm-up included) and every forced Triton
    call enter the tensors' device, whatever is current. Here the guard's entries are recorded."""
    entered = []
    monkeypatch.setattr(kernels, "device_guard", lambda device: _Recorder(entered, torch.device(device)))
    timings, _ = probe_on_cpu
    timings += [(2.0, 1.0)]
    args, kwargs = OP_ARGS["adapter_layer"](device="cpu", grad=True)
    assert kernels.resolve_impl(None, *args, op="adapter_layer") == "triton"
    assert entered == [torch.device("cpu")], "the probe ran under the tensors' device"
    kernels.adapter_layer(*args)
    assert entered == [torch.device("cpu")] * 2, "so did the Triton call"


class _Recorder:
    def __init__(self, entered, device):
        self.entered, self.device = entered, device

    def __enter__(self):
        self.entered.append(self.device)

    def __exit__(self, *exc):
        return False


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_triton_on_a_second_device_while_the_first_is_current(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    torch.cuda.set_device(0)
    args, _ = OP_ARGS["adapter_layer"](device="cuda:1", grad=True, h=64, d=32, rows=256, dtype=torch.float32)
    with kernels.use_impl("triton"):
        out = kernels.adapter_layer(*args)
        out.sum().backward()
    ref = kernels.adapter_layer_ref(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
    torch.testing.assert_close(out.detach(), ref, rtol=1e-4, atol=1e-4)
    auto.clear()
    assert not any("failed" in line for line in kernels.probe_auto(hidden=64, tokens=1024, device="cuda:1").values())
    auto.clear()
