"""Op-level timing of the adapter kernels, reference (cuBLAS through PyTorch) vs Triton, on CUDA.

    python -m bench.perf.ops --out reports/perf

Forward + backward of one call at MAD-X's shapes (tokens = 64 x 256; XLM-R base h=768: language
adapter d=384, task adapter d=48, invertible adapter h/2 -> h/4), bf16 parameters and inputs.
Median of CUDA-event timings (triton.testing.do_bench), inputs from torch.randn, never zeros.
Writes OUT/ops-<gpu>.json and .md atomically. Complements ``python -m bench.perf --gpu``,
which times whole training steps: this says whether a gap is in the kernels themselves.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.perf.cli import _slug

SHAPES = [  # (name, op, hidden, bottleneck)
    ("language adapter", "bottleneck", 768, 384),
    ("task adapter", "bottleneck", 768, 48),
    ("invertible adapter forward", "nice", 768, 192),
    ("invertible adapter inverse", "nice_inverse", 768, 192),
]


def _inputs(op: str, tokens: int, h: int, d: int, dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    """Leaves in the op's argument order: activations ~ N(0, 1), weights ~ N(0, 1/fan_in), biases ~ N(0, 1)."""
    def act(*shape):
        return torch.randn(*shape, device=device)

    def linear(n_out, n_in):
        return [torch.randn(n_out, n_in, device=device) / n_in**0.5, torch.randn(n_out, device=device)]

    if op == "bottleneck":
        tensors = [act(tokens, h), act(tokens, h), *linear(d, h), *linear(h, d)]
    else:
        half = h // 2
        tensors = [act(tokens, h), *linear(d, half), *linear(half, d), *linear(d, half), *linear(half, d)]  # x, F, G
    return [t.to(dtype).requires_grad_() for t in tensors]


def _call(op: str, impl: str, leaves: list[torch.Tensor]) -> torch.Tensor:
    from madx import kernels

    if op == "bottleneck":
        return kernels.bottleneck_adapter(*leaves, impl=impl)
    return kernels.nice_coupling(*leaves, inverse=op == "nice_inverse", impl=impl)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.ops", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64 * 256)
    parser.add_argument("--out", default="reports/perf")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: bench.perf.ops times CUDA kernels; torch sees no CUDA device", file=sys.stderr)
        return 2
    import triton.testing

    from madx.atomic import atomic_write_json, atomic_write_text
    from madx.provenance import now, provenance

    dtype, device = torch.bfloat16, "cuda"
    rows = []
    for name, op, h, d in SHAPES:
        leaves = _inputs(op, args.tokens, h, d, dtype, device)
        grad = torch.randn(args.tokens, h, device=device, dtype=dtype)
        row = {"name": name, "op": op, "hidden": h, "bottleneck": d, "tokens": args.tokens}
        for impl in ("reference", "triton"):
            def step():
                out = _call(op, impl, leaves)
                torch.autograd.grad(out, leaves, grad)

            def forward():
                with torch.no_grad():
                    _call(op, impl, leaves)

            row[f"{impl}_fwd_ms"] = triton.testing.do_bench(forward, warmup=25, rep=200, return_mode="median")
            row[f"{impl}_fwd_bwd_ms"] = triton.testing.do_bench(step, warmup=25, rep=200, return_mode="median")
        row["triton_speedup_fwd_bwd"] = row["reference_fwd_bwd_ms"] / row["triton_fwd_bwd_ms"]
        rows.append(row)
        print(f"{name:28s} fwd ref {row['reference_fwd_ms']:.3f} ms triton {row['triton_fwd_ms']:.3f} ms | "
              f"fwd+bwd ref {row['reference_fwd_bwd_ms']:.3f} ms triton {row['triton_fwd_bwd_ms']:.3f} ms "
              f"(triton speed-up {row['triton_speedup_fwd_bwd']:.2f}x)", flush=True)

    gpu = torch.cuda.get_device_name()
    stem = f"ops-{_slug(gpu)}"
    command = "python -m bench.perf.ops " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"created": now(), "command": command.strip(), "device": gpu, "dtype": "bf16", "rows": rows,
              "provenance": provenance()}
    lines = [f"# Adapter ops on {gpu}: reference (PyTorch/cuBLAS) vs Triton", "",
             f"`{result['command']}` — bf16, {args.tokens} tokens, median of CUDA-event timings "
             "(triton.testing.do_bench).", "",
             "| op | h | d | fwd ref ms | fwd Triton ms | fwd+bwd ref ms | fwd+bwd Triton ms | Triton speed-up (fwd+bwd) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['hidden']} | {r['bottleneck']} | {r['reference_fwd_ms']:.3f} | "
                     f"{r['triton_fwd_ms']:.3f} | {r['reference_fwd_bwd_ms']:.3f} | {r['triton_fwd_bwd_ms']:.3f} | "
                     f"{r['triton_speedup_fwd_bwd']:.2f}x |")
    atomic_write_json(f"{args.out}/{stem}.json", result)
    atomic_write_text(f"{args.out}/{stem}.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out}/{stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
