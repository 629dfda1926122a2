"""Peak memory and time of the MLM loss path alone: materialised logits vs the chunked linear cross-entropy.

    python -m bench.perf.loss_memory                          # CPU, fp32, N=2,458 rows, h=768, V=250,002
    python -m bench.perf.loss_memory --device cuda            # CUDA, fp32 tensors under bf16 autocast (the step's dtypes)
    python -m bench.perf.loss_memory --vocab 1000 --rows 64   # a quick look

One forward + backward of ``madx.kernels.cross_entropy.linear_cross_entropy`` with
``impl="reference"`` (F.linear, then fp32 F.cross_entropy: the [N x V] logits exist) and
``impl="chunked"`` on the same inputs: ``hidden`` (N, h) the MLM head's output at the masked
positions, N = round(0.15 · 64 · 256) = 2,458 by default; ``weight`` (V, h) and ``bias`` (V,)
the tied output embeddings; ``labels`` (N,) uniform over the vocabulary. Two settings:

    frozen   the language-adapter step: the head is frozen, only d(hidden) is formed
    trained  full fine-tuning: d(weight) and d(bias) too (each (V, h) / (V,), in both impls)

Peak memory is the loss path's own: the most bytes live during the call above what was live
before it (the inputs). CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated``
before; CPU: the allocator's running total of allocations minus frees under ``torch.profiler``
(``bench.perf.measure.cpu_allocation_peak``) around the timed calls themselves, so that a
full-vocabulary CPU run needs one call per implementation (about 2 TFLOP each): the profiler adds
microseconds per op to calls of seconds. The gradients the call leaves behind count (they are
part of the path's peak). Time: the median of ``--repeats`` calls after ``--warmup``. Writes
OUT/loss-memory-<device>.json and .md atomically; the issue-11 target is materialised / chunked
>= 3 at V = 250,002 (bench/perf/report.py).
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import statistics
import sys
import time

import torch

from bench.perf.report import command_header
from madx.tables import render_table

DEFAULT_ROWS = round(0.15 * 64 * 256)  # masked positions of a 64 x 256 batch: 2,458
SETTINGS = ("frozen", "trained")
IMPLS = ("reference", "chunked")
DTYPES = ("fp32", "bf16-autocast", "bf16")


def _inputs(rows: int, hidden: int, vocab: int, dtype: str, trained: bool, device: torch.device, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed)
    tensor_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    x = torch.randn(rows, hidden, generator=g).to(device, tensor_dtype).requires_grad_()  # (N, h)
    w = (torch.randn(vocab, hidden, generator=g) * 0.02).to(device, tensor_dtype).requires_grad_(trained)  # (V, h)
    b = torch.zeros(vocab).to(device, tensor_dtype).requires_grad_(trained)  # (V,)
    y = torch.randint(0, vocab, (rows,), generator=g).to(device)  # (N,)
    return x, w, b, y


def _autocast(device: torch.device, dtype: str):
    import contextlib

    if dtype == "bf16-autocast":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_one(impl: str, inputs, device: torch.device, dtype: str, warmup: int, repeats: int,
                chunk_rows: int | None) -> dict:
    """Time and loss-path peak memory of one implementation on the given inputs."""
    from bench.perf.measure import cpu_allocation_peak
    from madx.kernels.cross_entropy import linear_cross_entropy

    x, w, b, y = inputs
    leaves = [t for t in (x, w, b) if t.requires_grad]
    losses = []

    def call() -> None:
        for t in leaves:
            t.grad = None
        with _autocast(device, dtype):
            loss = linear_cross_entropy(x, w, b, y, impl=impl, chunk_rows=chunk_rows)
        loss.backward()
        losses.append(float(loss.detach()))

    for _ in range(warmup):
        call()
    times, cpu_peaks = [], []
    for _ in range(repeats):
        for t in leaves:  # each call starts from the state a training step starts from: no grads
            t.grad = None
        gc.collect()
        _sync(device)
        start = time.perf_counter()
        if device.type == "cpu":  # the memory is read from the timed calls themselves (see the module docstring)
            cpu_peaks.append(cpu_allocation_peak(call))
        else:
            call()
        _sync(device)
        times.append(time.perf_counter() - start)

    if device.type == "cuda":
        for t in leaves:
            t.grad = None
        gc.collect()
        torch.cuda.empty_cache()
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        method = "torch.cuda.max_memory_allocated minus memory_allocated before the call, one more call"
    else:
        peak = max(cpu_peaks)
        method = "CPU allocator peak above the live bytes before the call, via torch.profiler(profile_memory=True)"
    grads = {name: t.grad.detach().float().clone() for name, t in (("hidden", x), ("weight", w), ("bias", b))
             if t.grad is not None}
    for t in leaves:
        t.grad = None
    return {"impl": impl, "peak_bytes": int(peak), "peak_method": method, "loss": losses[-1],
            "step_s": {"median": statistics.median(times), "min": min(times), "max": max(times)} if times else None,
            "samples_s": times}, grads


def run(args: argparse.Namespace) -> int:
    from bench.perf.cli import _slug
    from bench.perf.report import check_loss_memory
    from madx.atomic import atomic_write_json, atomic_write_text
    from madx.kernels.cross_entropy import default_chunk_rows
    from madx.provenance import now, provenance

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2
    dtype = args.dtype or ("bf16-autocast" if device.type == "cuda" else "fp32")
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    if not settings or any(s not in SETTINGS for s in settings):
        print(f"error: --settings takes a comma-separated subset of {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    warmup = args.warmup if args.warmup is not None else (2 if device.type == "cuda" else 0)
    repeats = args.repeats if args.repeats is not None else (5 if device.type == "cuda" else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        description = f"CUDA {name}"
    else:
        name = "cpu"
        description = f"CPU ({os.cpu_count()} visible cores, {torch.get_num_threads()} torch threads)"
    chunk_rows = args.chunk_rows or default_chunk_rows(args.vocab)
    shape = {"rows": args.rows, "hidden": args.hidden, "vocab": args.vocab, "dtype": dtype, "chunk_rows": chunk_rows}
    print(f"loss-memory: {description}; N={args.rows:,} h={args.hidden} V={args.vocab:,} {dtype}, "
          f"chunk {chunk_rows} rows; warmup {warmup}, repeats {repeats}", flush=True)

    start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    measurements, comparisons = [], []
    for setting in settings:
        inputs = _inputs(args.rows, args.hidden, args.vocab, dtype, setting == "trained", device, args.seed)
        input_bytes = sum(t.numel() * t.element_size() for t in inputs)
        by_impl, grads = {}, {}
        for impl in IMPLS:
            start = time.perf_counter()
            try:
                m, grads[impl] = measure_one(impl, inputs, device, dtype, warmup, repeats, args.chunk_rows)
            except torch.OutOfMemoryError as error:
                m = {"impl": impl, "error": f"out of memory: {str(error).splitlines()[0]}"}
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            m.update(setting=setting, input_bytes=input_bytes, wall_s=time.perf_counter() - start)
            by_impl[impl] = m
            measurements.append(m)
            if "error" in m:
                print(f"  {setting:8s} {impl:9s} {m['error']}", flush=True)
            else:
                print(f"  {setting:8s} {impl:9s} peak {m['peak_bytes'] / 2**20:10,.1f} MiB above the inputs, "
                      f"{m['step_s']['median'] * 1e3:10,.1f} ms, loss {m['loss']:.6f}", flush=True)
        ref, chunked = by_impl["reference"], by_impl["chunked"]
        comparison = {"setting": setting}
        if "error" in ref or "error" in chunked:
            comparison["memory_ratio"] = None
            comparison["reason"] = "; ".join(m["error"] for m in (ref, chunked) if "error" in m)
        else:
            comparison.update(
                memory_ratio=ref["peak_bytes"] / chunked["peak_bytes"],
                reference_mib=ref["peak_bytes"] / 2**20, chunked_mib=chunked["peak_bytes"] / 2**20,
                time_ratio=chunked["step_s"]["median"] / ref["step_s"]["median"],
                loss_abs_diff=abs(ref["loss"] - chunked["loss"]),
                grad_max_abs_diff={k: float((grads["reference"][k] - grads["chunked"][k]).abs().max())
                                   for k in grads["chunked"]},
            )
        comparisons.append(comparison)
        del inputs, grads
        gc.collect()

    command = getattr(args, "command_line", None) or shlex.join(["python", "-m", "bench.perf.loss_memory",
                                                                 *sys.argv[1:]])
    result = {"schema": "madx-bench/loss-memory/1", "created": now(), "command": command,
              "device": {"type": device.type, "name": name, "description": description,
                         "torch_threads": torch.get_num_threads()},
              "shape": shape, "warmup": warmup, "repeats": repeats, "measurements": measurements,
              "comparisons": comparisons, "provenance": provenance(),
              "load_average": {"start": start_load, "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}}
    result["targets"] = check_loss_memory(result)
    stem = args.name or f"loss-memory-{'cpu' if device.type == 'cpu' else _slug(name)}"
    json_path = atomic_write_json(f"{args.out}/{stem}.json", result)
    md_path = atomic_write_text(f"{args.out}/{stem}.md", render_markdown(result))
    for t in result["targets"]:
        print(f"{t['verdict']} {t['target']} [{t['variant']}]: {t['measured']} (limit {t['limit']}) {t['detail']}")
    print(f"wrote {json_path} and {md_path}")
    return 0 if all("error" not in m for m in measurements) else 1


def _measurement_cells(m: dict) -> list[str]:
    if "error" in m:
        return [m["setting"], m["impl"], m["error"], "", "", ""]
    t = m["step_s"]
    return [m["setting"], m["impl"], f"{m['peak_bytes'] / 2**20:,.1f}", f"{m['input_bytes'] / 2**20:,.1f}",
            f"{t['median'] * 1e3:,.1f} [{t['min'] * 1e3:,.1f}–{t['max'] * 1e3:,.1f}]", f"{m['loss']:.6f}"]


def _comparison_cells(c: dict) -> list[str]:
    if c.get("memory_ratio") is None:
        return [c["setting"], f"not measured: {c.get('reason', '')}", "", "", ""]
    grads = ", ".join(f"{k} {v:.2e}" for k, v in c["grad_max_abs_diff"].items())
    return [c["setting"], f"**{c['memory_ratio']:.2f}x** ({c['reference_mib']:,.0f} vs {c['chunked_mib']:,.0f} MiB)",
            f"{c['time_ratio']:.3f}", f"{c['loss_abs_diff']:.2e}", grads]


def render_markdown(result: dict) -> str:
    s = result["shape"]
    lines = [
        *command_header("Loss-path memory", result),
        f"`madx.kernels.cross_entropy.linear_cross_entropy`, one forward + backward: hidden ({s['rows']:,}, "
        f"{s['hidden']}), weight ({s['vocab']:,}, {s['hidden']}), bias, labels; {s['dtype']}; the chunked path "
        f"takes {s['chunk_rows']} rows at a time. *Peak above inputs*: the most bytes live during the call beyond "
        "what was live before it (hidden, weight, bias, labels), gradients included. "
        f"Time: median of {result['repeats']} call(s) after {result['warmup']} warm-up.",
        "",
        render_table(["setting", "impl", "peak MiB above inputs", "inputs MiB", "time ms median [min–max]", "loss"],
                     [_measurement_cells(m) for m in result["measurements"]], align="llrrrr"),
        "",
        render_table(["setting", "materialised / chunked peak memory", "chunked / materialised time",
                      "loss difference (abs)", "max abs grad difference"],
                     [_comparison_cells(c) for c in result["comparisons"]], align="lrrrl"),
        "",
        "## Target",
        "",
        render_table(["target", "setting", "measured", "limit", "verdict", "detail"],
                     [[t["target"], t["variant"], t["measured"], t["limit"], f"**{t['verdict']}**", t["detail"]]
                      for t in result["targets"]], align="llrrll"),
    ]
    prov = result["provenance"]
    load = result.get("load_average") or {}
    lines += ["", "## Machine and versions", "", f"- device: {result['device']['description']}",
              f"- load average (1 min) at start {load['start']:.2f}, at end {load['end']:.2f}"
              if load.get("start") is not None else "- load average: not recorded",
              f"- git {prov.get('git_revision')}; python {prov.get('python')}; {prov.get('platform')}",
              "- " + ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items() if v), ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"masked rows N (default {DEFAULT_ROWS} = round(0.15 x 64 x 256))")
    parser.add_argument("--hidden", type=int, default=768, help="hidden size h (default 768)")
    parser.add_argument("--vocab", type=int, default=250_002, help="vocabulary V (default 250002, XLM-R)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="fp32; bf16-autocast (fp32 tensors under bf16 autocast, as the bf16 training step); "
                             "bf16 tensors (default: bf16-autocast on cuda, fp32 on cpu)")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated subset of frozen (head frozen, the LA step), trained (full FT)")
    parser.add_argument("--chunk-rows", type=int, default=None, help="rows per chunk (default: the kernel's own)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (default: cuda 2, cpu 0)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default: cuda 5, cpu 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/perf", help="output directory (default: reports/perf)")
    parser.add_argument("--name", default=None, help="file stem (default: loss-memory-cpu or loss-memory-<gpu>)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.perf.loss_memory", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if min(args.rows, args.hidden, args.vocab) <= 0 or (args.repeats is not None and args.repeats <= 0):
        parser.error("--rows, --hidden, --vocab and --repeats must be positive")
    args.command_line = shlex.join(["python", "-m", "bench.perf.loss_memory", *argv])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
