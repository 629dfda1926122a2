"""Throughput, memory and MFU of MAD-X training and evaluation steps, side by side.

    python -m bench.perf                       # CPU, preset cpu-small, eager only (a few minutes on 2 cores)
    python -m bench.perf --compile             # add the torch.compile column (slow to compile on CPU)
    python -m bench.perf --gpu                 # CUDA, XLM-R base dimensions, bf16 autocast, + Triton "fused" column
    madx bench perf --preset tiny --out /tmp/perf

    python -m bench.perf --gpu --variants eager,compile --workloads a,c --name cuda-compile
    python -m bench.perf --loss-memory reports/perf/loss-memory-cpu.json   # join the loss-path verdict
    python -m bench.perf.loss_memory           # the loss path alone, materialised vs chunked (loss_memory.py)

Workloads (same model dimensions, fixed random batches; bench/perf/workloads.py): (a) language +
invertible adapter MLM step, the production path (packed batch, no attention_mask, chunked
cross-entropy at masked positions), (f) the same with materialised logits at masked positions,
(b) the same model on a padded batch with logits at every position (HF's default, the reference),
(c) full fine-tuning MLM, packed and chunked like (a), (d) task-adapter NER step, (e) zero-shot
evaluation forward. Writes OUT/NAME.json and OUT/NAME.md (atomically) and prints PASS/MISS/not
measured for the targets (bench/perf/report.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
from pathlib import Path

HELP = "step time, tokens/s, peak memory and MFU of MAD-X training/eval steps vs full fine-tuning"

DEFAULT_PRESET = {"cpu": "cpu-small", "cuda": "xlmr-base"}

# Dense (no 2:4 sparsity) BF16 tensor-core peaks, TFLOP/s: NVIDIA's datasheets list BF16 "with
# sparsity", twice these. Matched in order against torch.cuda.get_device_name() (first match wins).
DATASHEET_BF16_DENSE: tuple[tuple[str, str, float, str], ...] = (
    # (regex on the device name, card, dense BF16 TFLOP/s, source)
    (r"GH200", "GH200 (H100 SXM-class GPU)", 989.4, "NVIDIA GH200 Grace Hopper datasheet: 1,979 TFLOPS BF16 with sparsity"),
    (r"H200.*NVL", "H200 NVL", 835.5, "NVIDIA H200 datasheet: 1,671 TFLOPS BF16 with sparsity (NVL)"),
    (r"H200", "H200 SXM", 989.4, "NVIDIA H200 datasheet: 1,979 TFLOPS BF16 with sparsity (SXM)"),
    (r"H100.*NVL", "H100 NVL", 835.5, "NVIDIA H100 datasheet: 1,671 TFLOPS BF16 with sparsity (NVL)"),
    (r"H100.*PCIe", "H100 PCIe", 756.5, "NVIDIA H100 datasheet: 1,513 TFLOPS BF16 with sparsity (PCIe)"),
    (r"H100", "H100 SXM", 989.4, "NVIDIA H100 datasheet: 1,979 TFLOPS BF16 with sparsity (SXM; "
                                 "'H100 80GB HBM3' is the SXM part)"),
    (r"B200", "B200", 2250.0, "NVIDIA HGX B200 datasheet: 36 PFLOPS FP16/BF16 with sparsity for 8 GPUs"),
    (r"A100", "A100", 312.0, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense (624 with sparsity), SXM and PCIe"),
    (r"L40S", "L40S", 362.05, "NVIDIA L40S datasheet: 733 TFLOPS BF16 with sparsity"),
    (r"\bL40\b", "L40", 181.05, "NVIDIA L40 datasheet: 362.1 TFLOPS BF16 with sparsity"),
    (r"\bL4\b", "L4", 121.0, "NVIDIA L4 datasheet: 242 TFLOPS BF16 with sparsity"),
    (r"\bA10\b", "A10", 125.0, "NVIDIA A10 datasheet: 250 TFLOPS BF16 with sparsity"),
)


def datasheet_peak(device_name: str) -> dict | None:
    """The dense BF16 datasheet peak of a CUDA device name, or None if the card is not in the table."""
    for pattern, card, tflops, source in DATASHEET_BF16_DENSE:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return {"flops": tflops * 1e12, "card": card, "kind": "datasheet",
                    "source": f"{card} dense BF16 datasheet peak, {tflops:g} TFLOP/s ({source})"}
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.perf.presets import PRESETS, WORKLOAD_NAMES

    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    parser.add_argument("--gpu", action="store_true",
                        help="shorthand for --device cuda --preset xlmr-base (12 layers, h=768, vocab 250002, "
                             "seq 256, batch 64, bf16 autocast)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="model dims and batch (default: cpu-small on cpu, xlmr-base on cuda)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    parser.add_argument("--seq-len", type=int, default=None, help="override the preset's sequence length")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before timing")
    parser.add_argument("--workloads", default=",".join(WORKLOAD_NAMES),
                        help="comma-separated subset of " + ", ".join(f"{k}={n}" for k, n in WORKLOAD_NAMES.items()))
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile (slow to compile on CPU; failures are reported as n/a)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated subset of eager,compile,fused to run, compile included when listed "
                             "(default: all three, compile only with --compile)")
    parser.add_argument("--compile-workloads", default=None, metavar="KEYS",
                        help="comma-separated workloads that get the compile column (default: all of --workloads)")
    parser.add_argument("--no-flop-counter", action="store_true",
                        help="skip the FlopCounterMode step that checks the analytic FLOPs (one per workload)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak FLOP/s for MFU, in TFLOP/s (default: CUDA with bf16 the card's dense BF16 "
                             "datasheet peak, else the best measured matmul)")
    parser.add_argument("--loss-memory", default=None, metavar="JSON",
                        help="a result of python -m bench.perf.loss_memory whose verdict joins the targets table")
    parser.add_argument("--out", default="reports/perf", help="output directory (default: reports/perf)")
    parser.add_argument("--name", default=None, help="file stem (default: cpu, or cuda-<gpu name>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random batch")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op CPU threads for the run (default: torch's choice); on a shared "
                             "machine 1 avoids threads waiting on each other at every parallel region")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _command_line(args: argparse.Namespace) -> str:
    recorded = getattr(args, "command_line", None)
    if recorded:
        return recorded
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.perf.workloads import PRESETS, WORKLOADS

    device_type = "cuda" if args.gpu else args.device
    preset_name = args.preset or ("xlmr-base" if args.gpu else DEFAULT_PRESET[device_type])
    if device_type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda / --gpu asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("batch", args.batch_size), ("seq_len", args.seq_len), ("steps", args.steps),
                                   ("warmup", args.warmup)) if v is not None}
    try:
        preset = dataclasses.replace(PRESETS[preset_name], **overrides)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
    known = {w.key: w for w in WORKLOADS}
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        print(f"error: unknown workload(s) {unknown}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    workloads = [known[k] for k in keys]
    from bench.perf.measure import VARIANTS

    if args.variants is None:
        args.variant_list = VARIANTS
        args.run_compile = args.compile
    else:
        chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = [v for v in chosen if v not in VARIANTS]
        if bad or not chosen:
            print(f"error: unknown variant(s) {bad}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
        args.variant_list = tuple(v for v in VARIANTS if v in chosen)
        args.run_compile = "compile" in chosen
    args.compile_keys = set(keys)
    if args.compile_workloads is not None:
        args.compile_keys = {k.strip() for k in args.compile_workloads.split(",") if k.strip()}
        if not args.compile_keys <= set(keys):
            print(f"error: --compile-workloads {sorted(args.compile_keys - set(keys))} not in --workloads "
                  f"{','.join(keys)}", file=sys.stderr)
            return 2
    if args.threads is not None and args.threads <= 0:
        print("error: --threads must be positive", file=sys.stderr)
        return 2
    previous_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, preset, workloads, torch.device(device_type))
    finally:
        torch.set_num_threads(previous_threads)


def _peak(args: argparse.Namespace, device, preset, matmul: dict) -> dict:
    """The FLOP/s MFU is against, and where it comes from."""
    import torch

    measured = (f"the best of {matmul['reps']} {matmul['dtype']} {matmul['size']}x{matmul['size']} matmuls measured "
                "at start on this machine")
    if args.peak_tflops is not None:
        return {"flops": args.peak_tflops * 1e12, "kind": "given", "source": "given with --peak-tflops"}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        sheet = datasheet_peak(name)
        if sheet is not None and preset.autocast == "bf16":
            return sheet
        why = (f"{name!r} is not in the datasheet table (bench/perf/cli.py)" if sheet is None
               else "the datasheet peak is for BF16 and this preset runs fp32")
        return {"flops": matmul["best_flops"], "kind": "measured", "source": f"{measured} ({why}; not a datasheet peak)"}
    return {"flops": matmul["best_flops"], "kind": "measured",
            "source": f"{measured} with the same threads (no datasheet peak for a CPU)"}


def _run(args: argparse.Namespace, preset, workloads, device) -> int:
    import torch

    from bench.perf.measure import Row, measure, measure_matmul_flops, peak_rss_bytes
    from bench.perf.report import SCHEMA, check_targets, render_markdown, summary_lines
    from bench.perf.workloads import make_batches, masked_positions, token_counts
    from madx.atomic import atomic_write_json, atomic_write_text
    from madx.provenance import now, provenance

    start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    if device.type == "cuda":
        description = f"CUDA {torch.cuda.get_device_name(device)}"
        matmul = measure_matmul_flops(device, torch.bfloat16 if preset.autocast == "bf16" else torch.float32,
                                      size=preset.matmul_size)
    else:
        description = f"CPU ({os.cpu_count()} visible cores, {torch.get_num_threads()} torch threads)"
        matmul = measure_matmul_flops(device, torch.float32, size=preset.matmul_size)
    peak = _peak(args, device, preset, matmul)
    peak["measured_matmul_share"] = matmul["best_flops"] / peak["flops"]
    print(f"perf: {description}, preset {preset.name}, peak {peak['flops'] / 1e12:.3f} TFLOP/s ({peak['source']})")

    batches = make_batches(preset, seed=args.seed).to(device)
    packed_real, packed_total = token_counts(batches.mlm)
    padded_real, padded_total = token_counts(batches.mlm_padded)
    loss_memory = None
    if args.loss_memory:
        try:
            loss_memory = json.loads(Path(args.loss_memory).read_text())
        except (OSError, ValueError) as error:
            print(f"warning: could not read --loss-memory {args.loss_memory}: {error}", file=sys.stderr)
    out = Path(args.out)
    stem = args.name or ("cpu" if device.type == "cpu" else f"cuda-{_slug(torch.cuda.get_device_name(device))}")
    created, prov = now(), provenance()

    def write(rows: list[Row], complete: bool) -> dict:
        """The result so far, written atomically: a run cut short (a timeout) still leaves its rows."""
        row_dicts = [r.to_dict() for r in rows]
        result = {
            "schema": SCHEMA,
            "created": created,
            "complete": complete,
            "command": _command_line(args),
            "preset": dataclasses.asdict(preset),
            "device": {"type": device.type, "description": description, "cpu_count": os.cpu_count(),
                       "torch_threads": torch.get_num_threads(),
                       "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
            "peak": peak,
            "matmul": matmul,
            "batch": {"packed": {"non_pad_tokens": packed_real, "executed_tokens": packed_total,
                                 "masked_positions": masked_positions(batches.mlm)},
                      "padded": {"non_pad_tokens": padded_real, "executed_tokens": padded_total,
                                 "masked_positions": masked_positions(batches.mlm_padded)}},
            "workloads": [{"key": w.key, "name": w.name, "title": w.title, "logits": w.logits, "batch": w.batch}
                          for w in workloads],
            "variants": list(args.variant_list),
            "rows": row_dicts,
            "flop_groups": ["invertible", "encoder", "attention", "adapters", "head"],
            "memory_method": next((r.peak_memory_method for r in rows if r.peak_memory_method), "not measured"),
            "load_average": {"start": start_load, "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
            "peak_rss_bytes": peak_rss_bytes(),
            "provenance": prov,
            "notes": _notes(device.type, preset) + ([] if complete else [
                "INCOMPLETE: the run stopped before every row was measured; the rows here are the ones it finished."]),
        }
        result["targets"] = check_targets(result, loss_memory)
        atomic_write_json(out / f"{stem}.json", result)
        atomic_write_text(out / f"{stem}.md", render_markdown(result))
        return result

    rows: list[Row] = []
    for workload in workloads:
        counter = None  # FlopCounterMode's count, taken once per workload in its first measured row
        for variant in args.variant_list:
            if variant == "compile" and not args.run_compile:
                row = Row(workload.key, workload.name, variant, "n/a", reason="not requested (pass --compile)")
            elif variant == "compile" and workload.key not in args.compile_keys:
                row = Row(workload.key, workload.name, variant, "n/a", reason="not requested (--compile-workloads)")
            else:
                print(f"  ({workload.key}) {workload.name} {variant} ...", flush=True)
                row = measure(workload, variant, preset, batches, device, peak["flops"],
                              flop_counter=counter is None and not args.no_flop_counter)
                if row.flop_counter:
                    counter = row.flop_counter
                elif counter is not None and row.status == "ok":
                    row.flop_counter = counter  # the same shapes: one count per workload
                rows.append(row)
                write(rows, complete=False)
                continue
            rows.append(row)

    result = write(rows, complete=True)
    for line in summary_lines(result):
        print(line)
    print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.md'}")
    return 1 if any(r.status == "error" for r in rows) else 0


def _vocabulary_share(preset) -> float:
    """Share of the decoder (h x V) in the forward FLOPs of a full-vocabulary MLM step."""
    from bench.perf.flops import StepShape, products

    shape = StepShape(layers=preset.layers, hidden=preset.hidden, ffn=preset.ffn, vocab=preset.vocab,
                      batch=preset.batch, seq_len=preset.seq_len, head="mlm", head_rows=preset.batch * preset.seq_len)
    flops = {p.name: p.flops for p in products(shape)}
    return flops["mlm_head.decoder"] / sum(flops.values())


def _la_over_full_ft_flops(preset) -> float:
    """Analytic FLOPs of (a) over (c) for a preset on the packed batch (round(p·(T-2)) masked per sequence)."""
    from bench.perf.flops import BASE, LANGUAGE, StepShape, step_flops

    masked = preset.batch * max(1, round(preset.mask_probability * (preset.seq_len - 2)))
    dims = dict(layers=preset.layers, hidden=preset.hidden, ffn=preset.ffn, vocab=preset.vocab, batch=preset.batch,
                seq_len=preset.seq_len, head="mlm", head_rows=masked)
    adapter = StepShape(**dims, language_bottleneck=preset.hidden // 2, invertible_bottleneck=preset.hidden // 4)
    return step_flops(adapter, (LANGUAGE,)).total / step_flops(StepShape(**dims), (BASE,)).total


def _notes(device_type: str, preset) -> list[str]:
    from bench.perf.workloads import PRESETS

    notes = [
        "(a), (f) and (c) run on the packed batch (every sequence <s> + T-2 tokens + </s>, no attention_mask, like "
        "madx.data.mlm's blocks); (b), (d) and (e) on the padded batch. (c) is the plain model (no adapters) with "
        "madx.tasks.mlm.masked_lm_loss's default chunked loss, like (a); every weight trains, the tied "
        "embeddings/decoder included. (f) is (a) with loss_impl='materialized' ([masked x vocab] logits).",
        "A training step = zero_grad, forward + loss, backward, clip_grad_norm_(1.0) over trainable parameters, "
        "AdamW step; (e) is one no-grad forward.",
        "Tokens/s counts non-pad tokens; FLOPs and MFU count the executed shapes (B·T positions; the same thing on "
        "the packed batch, whose non-pad fraction is 1.0).",
        "The batches are fixed and random, so the compiled variants never see a new number of masked positions.",
        "Dropout is on (0.1, the XLM-R default) in the training workloads. SDPA's CPU flash kernel has no dropout, "
        "so CPU training steps take the math path (the attention column); on CUDA flash/efficient handle dropout.",
        "'first step s' is the first warm-up step; under torch.compile it is mostly compilation, and shorter "
        "when inductor's on-disk cache already holds the graphs from an earlier run on the machine.",
        f"(a)/(c) step time is held to 1.05x the analytic FLOP ratio of the two steps "
        f"({_la_over_full_ft_flops(PRESETS['xlmr-base']):.3f} at XLM-R base dims, packed): the adapter step may "
        "not run at a lower FLOP/s than full fine-tuning by more than 5%.",
        "FLOP counter: torch.utils.flop_counter.FlopCounterMode over one eager forward + backward (reference "
        "kernels), once per workload. It counts executed products: a fused SDPA backward's recomputed QKᵀ is in "
        "it, not in the analytic (model-FLOP) count, and is shown apart. The chunked loss forms its gradients in "
        "its forward and recomputes nothing.",
    ]
    if device_type == "cpu":
        notes += [
            "fused: n/a on CPU; the Triton kernels need CUDA (interpreter mode is a correctness tool, far too slow "
            "to time).",
            "The machine may be shared: timings are medians over the timed steps, with [min–max] beside them; "
            "compare ratios from one run, not absolute numbers across runs.",
        ]
    share, reference = _vocabulary_share(preset), _vocabulary_share(PRESETS["xlmr-base"])
    notes.append(
        f"The vocabulary projection is {share:.0%} of a full-vocabulary step's forward FLOPs here "
        f"({reference:.0%} at XLM-R base dims, seq 256): the more it weighs, the better (a)/(b) looks; "
        "(a)/(c) depends on it less."
    )
    return notes
