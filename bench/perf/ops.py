"""Op-level timing of the fused adapter ops against eager and torch.compile'd references, on CUDA.

    python -m bench.perf.ops --out reports/perf

Forward + backward of one call at MAD-X's shapes: tokens = 64 x 256, XLM-R base h = 768, bf16
parameters and inputs; the language adapter block (eq. 1 with the layer's LayerNorm, d = 384),
the task adapter block (d = 48), the Stack(language, task) block (eq. 2, d = 384 and 48) and the
invertible adapter (NICE, h/2 -> h/4 -> h/2) forward and inverse. Three columns per op:

    eager     the pure-PyTorch reference (cuBLAS GEMMs, one kernel per elementwise op)
    compile   torch.compile(reference) (Inductor fuses the elementwise work; same cuBLAS GEMMs)
    fused     the "triton" implementation (cuBLAS GEMMs, Triton row kernels around them)

What needs a gradient follows MAD-X's phases: adapter weights of the adapter being trained and
the activations (all layers but the first pass gradients on); LayerNorm and frozen adapters not.
Targets: fused >= 1.3x eager and >= 1.0x compile, forward + backward. Medians of CUDA-event
timings (triton.testing.do_bench), inputs from torch.randn, never zeros; the largest |fused -
eager| of the output is recorded as a sanity check. Eager and fused are timed for every op first,
then the compile column (compilation dominates the run), and the result files are rewritten after
each op, so a run cut short by ``--budget-s`` or a timeout still leaves what it measured. Writes
OUT/ops-<gpu>.json and .md atomically. ``python -m bench.perf --gpu`` times whole training steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch

from bench.perf.cli import _slug
from madx.tables import render_table

HIDDEN = 768
TOKENS = 64 * 256
TARGETS = {"fused_vs_eager": 1.3, "fused_vs_compile": 1.0}
COMPILE_RESERVE_S = 20  # a compile column is started only with this much of the budget left


@dataclass(frozen=True)
class OpRow:
    name: str
    op: str  # a madx.kernels op
    sizes: tuple[int, ...]  # bottleneck sizes: (d,), (d1, d2), or (k,) for NICE
    trained: tuple[bool, ...]  # per adapter (or NICE's F and G together): do its weights need grads
    inverse: bool = False
    phase: str = ""


ROWS = [
    OpRow("language adapter block", "adapter_layer", (384,), (True,), phase="language phase"),
    OpRow("task adapter block", "adapter_layer", (48,), (True,), phase="task adapter alone"),
    OpRow("Stack(language, task) block", "stacked_adapter_layer", (384, 48), (False, True),
          phase="task phase: language adapter frozen"),
    OpRow("invertible adapter forward", "nice_coupling", (HIDDEN // 4,), (True,), phase="language phase"),
    OpRow("invertible adapter inverse", "nice_coupling", (HIDDEN // 4,), (True,), inverse=True,
          phase="language phase"),
]


def make_inputs(row: OpRow, tokens: int, h: int, dtype: torch.dtype, device: str, seed: int = 0):
    """(args in the op's order, kwargs, leaves to differentiate): activations ~ N(0, 1), weights ~
    N(0, 1/fan_in), biases and LayerNorm offsets ~ N(0, 0.1)."""
    g = torch.Generator(device=device).manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, device=device) * scale + shift).to(dtype)

    def linear(n_out, n_in, trained):
        return [rand(n_out, n_in, scale=n_in**-0.5).requires_grad_(trained),
                rand(n_out, scale=0.1).requires_grad_(trained)]

    if row.op == "nice_coupling":
        (k,), (trained,) = row.sizes, row.trained
        half = h // 2
        f_net = [*linear(k, half, trained), *linear(half, k, trained)]
        g_net = [*linear(k, half, trained), *linear(half, k, trained)]
        args = [rand(tokens, h).requires_grad_(), *f_net, *g_net]  # x, F, G
        kwargs = {"inverse": row.inverse}
    else:
        acts = [rand(tokens, h).requires_grad_() for _ in range(3)]  # normalised, ffn output, attention output
        adapters = [p for d, trained in zip(row.sizes, row.trained)
                    for p in (*linear(d, h, trained), *linear(h, d, trained))]
        args = [*acts, *adapters, rand(h, scale=0.1, shift=1.0), rand(h, scale=0.1), 1e-5]  # LayerNorm frozen
        kwargs = {}
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    return args, kwargs, leaves


def _call(op: str, impl: str):
    from madx import kernels

    fn = getattr(kernels, op)
    return lambda *a, **kw: fn(*a, impl=impl, **kw)


def _reference(op: str):
    from madx import kernels

    return getattr(kernels, f"{op}_ref")


def ratios(row: dict) -> dict:
    """Speed-ups of the fused op (> 1: fused is faster), forward + backward; None where a column is missing."""
    fused = row.get("fused_fwd_bwd_ms")
    out = {}
    for other in ("eager", "compile"):
        ms = row.get(f"{other}_fwd_bwd_ms")
        out[f"fused_vs_{other}"] = ms / fused if ms and fused else None
    return out


def verdicts(row: dict) -> dict:
    return {k: (None if v is None else v >= TARGETS[k]) for k, v in ratios(row).items()}


def _fmt(ms: float | None) -> str:
    return "–" if ms is None else f"{ms:.3f}"


def _fmt_ratio(r: float | None, target: float) -> str:
    return "–" if r is None else f"{r:.2f}x {'PASS' if r >= target else 'MISS'}"


def _row_cells(r: dict) -> list[str]:
    rat = ratios(r)
    diff = r.get("max_abs_diff")
    return [r["name"], "/".join(map(str, r["sizes"])), r["phase"], _fmt(r.get("eager_fwd_ms")),
            _fmt(r.get("fused_fwd_ms")), _fmt(r.get("eager_fwd_bwd_ms")), _fmt(r.get("compile_fwd_bwd_ms")),
            _fmt(r.get("fused_fwd_bwd_ms")), _fmt_ratio(rat["fused_vs_eager"], TARGETS["fused_vs_eager"]),
            _fmt_ratio(rat["fused_vs_compile"], TARGETS["fused_vs_compile"]), "–" if diff is None else f"{diff:.3g}"]


def render_markdown(result: dict) -> str:
    lines = [
        f"# Adapter ops on {result['device']}: eager vs torch.compile vs fused", "",
        f"`{result['command']}` — {result['dtype']}, {result['tokens']} tokens, h = {result['hidden']}, "
        "median of CUDA-event timings (triton.testing.do_bench), forward + backward unless marked fwd. "
        f"Targets: fused ≥ {TARGETS['fused_vs_eager']}x eager and ≥ {TARGETS['fused_vs_compile']}x compile.", "",
        render_table(["op", "sizes", "grads", "fwd eager ms", "fwd fused ms", "eager ms", "compile ms", "fused ms",
                      "fused vs eager", "fused vs compile", "max abs diff"],
                     [_row_cells(r) for r in result["rows"]], align="lrl" + "r" * 8),
    ]
    notes = [f"- {r['name']}: {r['note']}" for r in result["rows"] if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.ops", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--out", default="reports/perf")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--budget-s", type=float, default=85.0,
                        help="wall-clock budget: compile columns that would start with under "
                             f"{COMPILE_RESERVE_S} s of it left are skipped (recorded as such)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: bench.perf.ops times CUDA kernels; torch sees no CUDA device", file=sys.stderr)
        return 2
    import triton.testing

    from madx.atomic import atomic_write_json, atomic_write_text
    from madx.provenance import now, provenance

    start = time.monotonic()
    dtype, device = torch.bfloat16, "cuda"
    gpu = torch.cuda.get_device_name()
    stem = f"ops-{_slug(gpu)}"
    command = "python -m bench.perf.ops " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"created": now(), "command": command.strip(), "device": gpu, "dtype": "bf16",
              "tokens": args.tokens, "hidden": args.hidden, "targets": TARGETS, "rows": [],
              "provenance": provenance()}

    def bench(fn) -> float:
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")

    grad = torch.randn(args.tokens, args.hidden, device=device, dtype=dtype)

    def step(fn, inputs, backward: bool):
        fargs, fkwargs, leaves = inputs

        def run():
            with torch.set_grad_enabled(backward):
                out = fn(*fargs, **fkwargs)
                if backward:
                    torch.autograd.grad(out, leaves, grad)

        return run

    def write():
        for r in result["rows"]:
            r.update(ratios(r), **{f"{k}_pass": v for k, v in verdicts(r).items()})
        atomic_write_json(f"{args.out}/{stem}.json", result)
        atomic_write_text(f"{args.out}/{stem}.md", render_markdown(result))

    inputs = {}
    for row in ROWS:
        inputs[row.name] = make_inputs(row, args.tokens, args.hidden, dtype, device)
        r = {"name": row.name, "op": row.op, "sizes": list(row.sizes), "phase": row.phase,
             "inverse": row.inverse, "tokens": args.tokens, "hidden": args.hidden}
        eager, fused = _call(row.op, "reference"), _call(row.op, "triton")
        fargs, fkwargs, _ = inputs[row.name]
        with torch.no_grad():
            r["max_abs_diff"] = (fused(*fargs, **fkwargs).float() - eager(*fargs, **fkwargs).float()).abs().max().item()
        for impl, fn in (("eager", eager), ("fused", fused)):
            r[f"{impl}_fwd_ms"] = bench(step(fn, inputs[row.name], backward=False))
            r[f"{impl}_fwd_bwd_ms"] = bench(step(fn, inputs[row.name], backward=True))
        result["rows"].append(r)
        rat = ratios(r)
        print(f"{row.name:30s} fwd+bwd eager {r['eager_fwd_bwd_ms']:.3f} ms, fused {r['fused_fwd_bwd_ms']:.3f} ms "
              f"({rat['fused_vs_eager']:.2f}x); fwd eager {r['eager_fwd_ms']:.3f}, fused {r['fused_fwd_ms']:.3f}; "
              f"max |fused - eager| {r['max_abs_diff']:.3g}", flush=True)
        write()

    for row, r in zip(ROWS, result["rows"]):
        left = args.budget_s - (time.monotonic() - start)
        if args.no_compile or left < COMPILE_RESERVE_S:
            r["note"] = "compile column skipped: " + ("--no-compile" if args.no_compile else
                                                      f"{left:.0f} s of the {args.budget_s:.0f} s budget left")
            print(f"{row.name:30s} {r['note']}", flush=True)
            write()
            continue
        run = step(torch.compile(_reference(row.op), dynamic=False), inputs[row.name], backward=True)
        t0 = time.monotonic()
        run()  # compiles forward and backward
        torch.cuda.synchronize()
        r["compile_s"] = time.monotonic() - t0
        r["compile_fwd_bwd_ms"] = bench(run)
        rat = ratios(r)
        print(f"{row.name:30s} fwd+bwd compile {r['compile_fwd_bwd_ms']:.3f} ms (compiled in {r['compile_s']:.1f} s); "
              f"fused vs compile {rat['fused_vs_compile']:.2f}x", flush=True)
        write()

    for r in result["rows"]:
        rat = ratios(r)
        print(f"{r['name']:30s} fused vs eager {_fmt_ratio(rat['fused_vs_eager'], TARGETS['fused_vs_eager'])}, "
              f"vs compile {_fmt_ratio(rat['fused_vs_compile'], TARGETS['fused_vs_compile'])}")
    print(f"wrote {args.out}/{stem}.json and .md in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
