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
import re
import sys

import torch

SHAPES = [  # (name, op, hidden, bottleneck)
    ("language adapter", "bottleneck", 768, 384),
    ("task adapter", "bottleneck", 768, 48),
    ("invertible adapter forward", "nice", 768, 192),
    ("invertible adapter inverse", "nice_inverse", 768, 192),
]


def _inputs(op: str, tokens: int, h: int, d: int, dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    if op == "bottleneck":
        shapes = [(tokens, h), (tokens, h), (d, h), (d,), (h, d), (h,)]
    else:
        half = h // 2
        shapes = [(tokens, h)] + [(d, half), (d,), (half, d), (half,)] * 2
    return [(torch.randn(*s, device=device) * (s[-1] ** -0.5 if len(s) == 2 and s[0] != tokens else 1.0))
            .to(dtype).requires_grad_() for s in shapes]


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
    stem = "ops-" + re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
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
