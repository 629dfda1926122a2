"""The benchmark's result (one JSON object) and its markdown rendering, with the project's targets.

Targets are benchmark goals checked on the measured numbers and printed PASS / MISS / not
measured; they are never test assertions. Issue 11 (the language-adapter MLM step):

    (a) non-pad tokens/s          >= 600k (stretch 770k, ~40% MFU)   CUDA, XLM-R base dims, bf16, 64 x 256
    (a)/(c) step time             <= 1.05 x their analytic FLOP ratio CUDA, XLM-R base dims
    loss-path peak memory         materialised / chunked >= 3 at V = 250,002 (python -m bench.perf.loss_memory)
    packed batch non-pad fraction == 1.0 for (a), (f), (c)           any device
    compile / eager step time     <= 1.0 for (a) and (c)             any device (the CPU check is cpu-small)

and the two issue-6 goals still worth watching: (a)/(b) step time <= 0.55, (a)/(c) peak memory
<= 0.5. A GPU-only target on another device or preset is "not measured", with the value beside it.
The fused adapter-block targets are op-level and belong to ``python -m bench.perf.ops``.
"""

from __future__ import annotations

from typing import Any

from madx.tables import render_table

SCHEMA = "madx-bench/perf/2"

TOKENS_PER_S = 600_000  # issue 11: (a) on one H100/H200 at XLM-R base dims
TOKENS_PER_S_STRETCH = 770_000  # ~40% MFU
FLOP_RATIO_SLACK = 1.05  # (a)/(c) step time <= 1.05 x (a)/(c) analytic FLOPs
LOSS_MEMORY_RATIO = 3.0  # materialised / chunked loss-path peak memory, at the full vocabulary
LOSS_MEMORY_VOCAB = 250_002
COMPILE_OVER_EAGER = 1.0
ISSUE6_A_OVER_B_STEP = 0.55
ISSUE6_A_OVER_C_MEMORY = 0.5
PACKED = ("a", "f", "c")
GPU_PRESET = "xlmr-base"


def _ok(row: dict[str, Any] | None) -> bool:
    return row is not None and row.get("status") == "ok"


def _step(row: dict[str, Any]) -> float:
    return row["step_s"]["median"]


def _gpu_scope(result: dict[str, Any]) -> str | None:
    """None if this run is where the GPU targets are defined, else why not."""
    preset = result["preset"]
    if result["device"]["type"] != "cuda":
        return f"GPU target; this run is on {result['device']['type'].upper()}"
    if (preset["name"], preset["hidden"], preset["vocab"], preset["batch"], preset["seq_len"], preset["autocast"]) != (
            GPU_PRESET, 768, 250_002, 64, 256, "bf16"):
        return "defined at XLM-R base dims, bf16, 64 x 256; this run's preset differs"
    return None


def _target(issue: str, name: str, variant: str, measured: str, value: float | None, limit: str, verdict: str,
            detail: str = "") -> dict[str, Any]:
    return {"issue": issue, "target": name, "variant": variant, "measured": measured, "value": value,
            "limit": limit, "verdict": verdict, "detail": detail}


def check_loss_memory(loss_memory: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The loss-path memory target from a ``bench.perf.loss_memory`` result (one entry per weight setting)."""
    name = "loss-path peak memory, materialised / chunked"
    limit = f">= {LOSS_MEMORY_RATIO:g}x at V={LOSS_MEMORY_VOCAB:,}"
    if not loss_memory:
        return [_target("11", name, "–", "–", None, limit, "not measured",
                        "run python -m bench.perf.loss_memory (and pass --loss-memory)")]
    out = []
    shape = loss_memory["shape"]
    for comparison in loss_memory.get("comparisons", []):
        ratio = comparison.get("memory_ratio")
        setting = comparison["setting"]
        if ratio is None:
            out.append(_target("11", name, setting, "–", None, limit, "not measured", comparison.get("reason", "")))
            continue
        measured = f"{ratio:.2f}x ({comparison['reference_mib']:,.0f} vs {comparison['chunked_mib']:,.0f} MiB)"
        if shape["vocab"] != LOSS_MEMORY_VOCAB:
            verdict, detail = "not measured", f"measured at V={shape['vocab']:,}, not {LOSS_MEMORY_VOCAB:,}"
        else:
            verdict = "PASS" if ratio >= LOSS_MEMORY_RATIO else "MISS"
            detail = f"N={shape['rows']:,}, h={shape['hidden']}, {loss_memory['device']['description']}"
        out.append(_target("11", name, setting, measured, ratio, limit, verdict, detail))
    return out


def check_targets(result: dict[str, Any], loss_memory: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every target of the module docstring, per variant where it is per variant."""
    rows = result["rows"]
    variants = result["variants"]
    by_key = {(r["workload"], r["variant"]): r for r in rows}
    gpu_scope = _gpu_scope(result)
    out: list[dict[str, Any]] = []

    # (a) tokens/s
    limit = f">= {TOKENS_PER_S / 1e3:,.0f}k (stretch {TOKENS_PER_S_STRETCH / 1e3:,.0f}k)"
    for variant in variants:
        row = by_key.get(("a", variant))
        if not _ok(row):
            continue
        tps = row["tokens_per_s"]
        measured = f"{tps:,.0f} tok/s, MFU {row['mfu']:.1%}"
        if gpu_scope:
            out.append(_target("11", "(a) non-pad tokens/s", variant, measured, tps, limit, "not measured", gpu_scope))
        else:
            stretch = "stretch met" if tps >= TOKENS_PER_S_STRETCH else ""
            out.append(_target("11", "(a) non-pad tokens/s", variant, measured, tps, limit,
                               "PASS" if tps >= TOKENS_PER_S else "MISS", stretch))

    # (a)/(c) step time against the analytic FLOP ratio; fused (c) is eager (no adapter ops)
    for variant in variants:
        num = by_key.get(("a", variant))
        den_variant = "eager" if variant == "fused" else variant
        den = by_key.get(("c", den_variant))
        if not (_ok(num) and _ok(den)):
            continue
        ratio = _step(num) / _step(den)
        flop_ratio = num["flops"]["total"] / den["flops"]["total"]
        bound = FLOP_RATIO_SLACK * flop_ratio
        measured = f"{ratio:.3f} (FLOP ratio {flop_ratio:.3f})"
        label = variant if den_variant == variant else f"{variant} vs (c) {den_variant}"
        if gpu_scope:
            out.append(_target("11", "(a)/(c) step time", label, measured, ratio, f"<= {bound:.3f}",
                               "not measured", gpu_scope))
        else:
            out.append(_target("11", "(a)/(c) step time", label, measured, ratio, f"<= {bound:.3f} (1.05 x FLOP ratio)",
                               "PASS" if ratio <= bound else "MISS"))

    out += check_loss_memory(loss_memory)

    # packed batches are all text
    packed = [by_key.get((k, v)) for k in PACKED for v in variants]
    fractions: dict[str, float] = {}
    for r in packed:
        if _ok(r):  # the lowest over a workload's variants
            fractions[r["workload"]] = min(r["non_pad_fraction"], fractions.get(r["workload"], 1.0))
    if fractions:
        worst = min(fractions.values())
        measured = ", ".join(f"({k}) {f:.3f}" for k, f in sorted(fractions.items()))
        out.append(_target("11", "packed MLM batch non-pad fraction", "all", measured, worst, "= 1.0",
                           "PASS" if worst == 1.0 else "MISS"))
    else:
        out.append(_target("11", "packed MLM batch non-pad fraction", "all", "–", None, "= 1.0", "not measured",
                           "no packed workload ran"))

    # compile vs eager
    for key in ("a", "c"):
        eager, compiled = by_key.get((key, "eager")), by_key.get((key, "compile"))
        name = f"({key}) compile / eager step time"
        if not (_ok(eager) and _ok(compiled)):
            reason = compiled["reason"] if compiled is not None and compiled.get("reason") else "not both measured"
            out.append(_target("11", name, "compile", "–", None, f"<= {COMPILE_OVER_EAGER:g}", "not measured", reason))
            continue
        ratio = _step(compiled) / _step(eager)
        measured = f"{ratio:.3f} ({_step(compiled) * 1e3:,.1f} vs {_step(eager) * 1e3:,.1f} ms)"
        detail = f"preset {result['preset']['name']}"
        if result["device"]["type"] == "cpu" and eager.get("cpu_time_s") and compiled.get("cpu_time_s"):
            cpu_ratio = compiled["cpu_time_s"]["median"] / eager["cpu_time_s"]["median"]
            detail += f"; process CPU time ratio {cpu_ratio:.3f}"
        out.append(_target("11", name, "compile", measured, ratio, f"<= {COMPILE_OVER_EAGER:.1f}",
                           "PASS" if ratio <= COMPILE_OVER_EAGER else "MISS", detail))

    # issue 6, kept for continuity
    for variant in variants:
        a, b = by_key.get(("a", variant)), by_key.get(("b", variant))
        if _ok(a) and _ok(b):
            ratio = _step(a) / _step(b)
            flop_ratio = a["flops"]["total"] / b["flops"]["total"]
            out.append(_target("6", "(a)/(b) step time", variant, f"{ratio:.3f} (FLOP ratio {flop_ratio:.3f})", ratio,
                               f"<= {ISSUE6_A_OVER_B_STEP}", "PASS" if ratio <= ISSUE6_A_OVER_B_STEP else "MISS"))
        den_variant = "eager" if variant == "fused" else variant
        c = by_key.get(("c", den_variant))
        if _ok(a) and _ok(c):
            ratio = a["peak_memory_bytes"] / c["peak_memory_bytes"]
            label = variant if den_variant == variant else f"{variant} vs (c) {den_variant}"
            out.append(_target("6", "(a)/(c) peak memory", label, f"{ratio:.3f}", ratio, f"<= {ISSUE6_A_OVER_C_MEMORY}",
                               "PASS" if ratio <= ISSUE6_A_OVER_C_MEMORY else "MISS"))
    return out


def loss_path_comparisons(result: dict[str, Any]) -> list[dict[str, Any]]:
    """(a) chunked loss vs (f) materialised logits in a whole step, per variant: step time and peak memory."""
    by_key = {(r["workload"], r["variant"]): r for r in result["rows"]}
    out = []
    for variant in result["variants"]:
        a, f = by_key.get(("a", variant)), by_key.get(("f", variant))
        if _ok(a) and _ok(f):
            out.append({"variant": variant, "step_ratio": _step(a) / _step(f),
                        "memory_ratio": a["peak_memory_bytes"] / f["peak_memory_bytes"],
                        "a_ms": _step(a) * 1e3, "f_ms": _step(f) * 1e3,
                        "a_mib": a["peak_memory_bytes"] / 2**20, "f_mib": f["peak_memory_bytes"] / 2**20})
    return out


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:,.1f}"


def _g(flops: int) -> str:
    return f"{flops / 1e9:.3g}"


def _mib(nbytes: int | None) -> str:
    return "–" if nbytes is None else f"{nbytes / 2**20:,.1f}"


def _attention(row: dict[str, Any]) -> str:
    backend = row.get("attention_backend") or "–"
    impl = row.get("attn_implementation") or "–"
    return f"{backend} / {impl}"


def _counter(row: dict[str, Any]) -> tuple[str, str]:
    counter = row.get("flop_counter") or {}
    if not counter or not row.get("flops"):
        return "–", "–"
    return _g(counter["total"]), f"{counter['total'] / row['flops']['total']:.3f}"


RESULT_COLUMNS = ("", "workload", "logits", "batch", "variant", "step ms median [min–max]", "process CPU ms",
                  "non-pad tokens/s", "non-pad fraction", "peak MiB", "saved for backward MiB", "GFLOP/step (fwd+bwd)",
                  "TFLOP/s", "MFU", "attention", "first step s", "trainable params")


def _result_cells(row: dict[str, Any], workload: dict[str, Any]) -> list[str]:
    """One row of the results table; a row that did not run says why in the first measured column."""
    head = [f"({row['workload']})", workload["title"], workload["logits"], workload["batch"], row["variant"]]
    if row["status"] != "ok":
        return head + [f"{row['status']}: {row['reason']}"] + [""] * (len(RESULT_COLUMNS) - len(head) - 1)
    s, f = row["step_s"], row["flops"]
    return head + [
        f"{_ms(s['median'])} [{_ms(s['min'])}–{_ms(s['max'])}]",
        _ms((row.get("cpu_time_s") or {}).get("median")),
        f"{row['tokens_per_s']:,.0f}",
        f"{row['non_pad_fraction']:.3f}",
        _mib(row["peak_memory_bytes"]),
        _mib(row.get("saved_activation_bytes")),
        f"{_g(f['total'])} ({_g(f['forward'])}+{_g(f['backward'])})",
        f"{row['achieved_tflops']:.3f}",
        f"{row['mfu']:.1%}",
        _attention(row),
        "–" if row["first_step_s"] is None else f"{row['first_step_s']:.2f}",
        f"{row['trainable_params']:,}",
    ]


def _counter_cells(row: dict[str, Any]) -> list[str]:
    c, analytic = row["flop_counter"], row["flops"]["total"]
    return [f"({row['workload']})", _g(analytic), _g(c["total"]), f"{c['total'] / analytic:.4f}", _g(c["attention"]),
            _g(c["attention_backward_recompute"]), f"{(c['total'] - c['attention_backward_recompute']) / analytic:.4f}"]


def _one_per_workload(rows: list[dict[str, Any]], *, counted: bool = False) -> list[dict[str, Any]]:
    """The first row that ran of each workload (with a FlopCounterMode count if ``counted``): the FLOP tables
    show a workload once, not per variant."""
    shown, out = set(), []
    for row in rows:
        if row["status"] == "ok" and row["workload"] not in shown and (row.get("flop_counter") or not counted):
            shown.add(row["workload"])
            out.append(row)
    return out


def command_header(title: str, result: dict[str, Any]) -> list[str]:
    """A benchmark page's opening lines: its title with the device, then when and by which command it was written."""
    return [f"# {title} — {result['device']['description']}", "", f"Written {result['created']} by:", "", "```",
            result["command"], "```", ""]


def render_markdown(result: dict[str, Any]) -> str:
    p = result["preset"]
    packed, padded = result["batch"]["packed"], result["batch"]["padded"]
    peak = result["peak"]
    titles = {w["key"]: w for w in result["workloads"]}
    lines = [
        *command_header("madx-bench perf", result),
        f"Preset **{p['name']}** ({p['note']}): {p['layers']} layers, h={p['hidden']}, {p['heads']} heads, "
        f"FFN {p['ffn']}, vocabulary {p['vocab']:,}; batch {p['batch']} × seq {p['seq_len']}; autocast {p['autocast']}; "
        f"{p['warmup']} warm-up + {p['steps']} timed steps per configuration, median reported.",
        "",
        f"- packed batch ((a), (f), (c)): {packed['non_pad_tokens']:,} non-pad tokens of "
        f"{packed['executed_tokens']:,}, no attention_mask; {packed['masked_positions']:,} masked positions "
        f"({p['mask_probability']:.0%} of the ordinary tokens)",
        f"- padded batch ((b), (d), (e)): {padded['non_pad_tokens']:,} non-pad tokens of "
        f"{padded['executed_tokens']:,} (lengths uniform in [{p['min_fill']}·T, T]); "
        f"{padded['masked_positions']:,} masked positions",
        "",
        f"MFU is against **{peak['flops'] / 1e12:,.3f} TFLOP/s**, {peak['kind']}: {peak['source']}. "
        f"The measured matmul reached {peak.get('measured_matmul_share', 0):.0%} of it. "
        "FLOPs are counted analytically (bench/perf/flops.py): matmuls only, attention included, "
        "frozen weights without weight-gradient GEMMs, head FLOPs on the rows where logits are computed.",
        "",
        "*Process CPU ms*: median process CPU time of a timed step (time.process_time); with one torch thread "
        "on a shared CPU it leaves out the time other processes held the core (not the slowdown from shared caches, "
        "memory bandwidth or a busy SMT sibling), so it is less sensitive to the load average below than wall time.",
        "",
        f"Peak memory: {result['memory_method']}. *Saved for backward*: bytes of the tensors one eager forward "
        "keeps for backward, weights excluded (via torch.autograd.graph.saved_tensors_hooks). *Attention*: the SDPA "
        "kernel seen in a profiled step / the model's config._attn_implementation.",
        "",
        "## Results",
        "",
        render_table(RESULT_COLUMNS, [_result_cells(row, titles[row["workload"]]) for row in result["rows"]],
                     align="lllll" + "r" * 9 + "lrr"),  # labels, numbers, attention backend, numbers
        "",
        "## Targets",
        "",
        "Benchmark goals, not test assertions (bench/perf/report.py). *not measured*: the target is defined "
        "elsewhere (GPU, XLM-R base dims) or its input did not run; the value is shown for information. The "
        "fused adapter-block targets are op-level: `python -m bench.perf.ops` (ops-<gpu>.md).",
        "",
        render_table(["issue", "target", "variant", "measured", "limit", "verdict", "detail"],
                     [[t["issue"], t["target"], t["variant"], t["measured"], t["limit"], f"**{t['verdict']}**",
                       t["detail"]] for t in result["targets"]],
                     align="lllrrll"),
    ]
    comparisons = loss_path_comparisons(result)
    if comparisons:
        lines += ["", "## Loss paths in a whole step: (a) chunked vs (f) materialised", "",
                  render_table(["variant", "(a) ms", "(f) ms", "(a)/(f) step time", "(a) peak MiB", "(f) peak MiB",
                                "(a)/(f) peak memory"],
                               [[c["variant"], f"{c['a_ms']:,.1f}", f"{c['f_ms']:,.1f}", f"{c['step_ratio']:.3f}",
                                 f"{c['a_mib']:,.1f}", f"{c['f_mib']:,.1f}", f"{c['memory_ratio']:.3f}"]
                                for c in comparisons])]
    lines += ["", "## FLOPs: analytic model vs torch FlopCounterMode (one eager step per workload)", "",
              "*counter − recompute*: the counter less the QKᵀ that a fused SDPA backward recomputes (1 of its 5 "
              "products); it equals the analytic count when nothing else is recomputed.", "",
              render_table(["", "analytic GFLOP", "counter GFLOP", "counter / analytic", "counter attention GFLOP",
                            "SDPA recompute GFLOP", "(counter − recompute) / analytic"],
                           [_counter_cells(row) for row in _one_per_workload(result["rows"], counted=True)])]
    groups = result["flop_groups"]
    lines += ["", "## FLOPs per step by part (GFLOP, forward + backward, analytic)", "",
              render_table(["", *groups], [[f"({row['workload']})", *(_g(row["flops"]["by_group"].get(g, 0)) for g in groups)]
                                           for row in _one_per_workload(result["rows"])])]
    prov = result["provenance"]
    load = result["load_average"]
    lines += [
        "",
        "## Machine and versions",
        "",
        f"- device: {result['device']['description']}; torch threads {result['device'].get('torch_threads')}, "
        f"CPUs visible {result['device'].get('cpu_count')}",
        f"- load average (1 min) at start {load['start']:.2f}, at end {load['end']:.2f}"
        if load["start"] is not None else "- load average: unavailable",
        f"- measured matmul ({result['matmul']['size']}², {result['matmul']['dtype']}): best "
        f"{result['matmul']['best_flops'] / 1e9:,.1f} GFLOP/s, median {result['matmul']['median_flops'] / 1e9:,.1f} GFLOP/s",
        f"- process peak RSS at the end: {_mib(result['peak_rss_bytes'])} MiB (process-wide, monotone; not per row)",
        f"- git {prov.get('git_revision')}; python {prov.get('python')}; {prov.get('platform')}",
        "- " + ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items() if v),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in result["notes"]],
        "",
    ]
    return "\n".join(lines)


def summary_lines(result: dict[str, Any]) -> list[str]:
    out = []
    for row in result["rows"]:
        tag = f"({row['workload']}) {row['name']:<19} {row['variant']:<8}"
        if row["status"] != "ok":
            out.append(f"{tag} {row['status']}: {row['reason']}")
        else:
            counter, ratio = _counter(row)
            out.append(f"{tag} {row['step_s']['median'] * 1e3:9.1f} ms  {row['tokens_per_s']:10,.0f} tok/s  "
                       f"{row['peak_memory_bytes'] / 2**20:8.1f} MiB  MFU {row['mfu']:.1%}  "
                       f"attn {row['attention_backend']}  FLOP counter/analytic {ratio}")
    for t in result["targets"]:
        detail = f" ({t['detail']})" if t["detail"] else ""
        out.append(f"{t['verdict']} [issue {t['issue']}] {t['target']} [{t['variant']}]: {t['measured']} "
                   f"(limit {t['limit']}){detail}")
    return out
