"""The benchmark's result (one JSON object) and its markdown rendering, with the project's targets.

Targets are benchmark goals checked on the measured numbers and printed PASS/MISS; they are never
test assertions:

    (a)/(b) step time   <= 0.55   masked-only logits vs logits at every position
    (a)/(c) step time   <= 0.6    language-adapter training vs full fine-tuning
    (a)/(c) peak memory <= 0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA = "madx-bench/perf/1"


@dataclass(frozen=True)
class Target:
    name: str
    numerator: str  # workload key
    denominator: str
    metric: str  # "step" (median step time) or "memory" (peak memory)
    limit: float


TARGETS: tuple[Target, ...] = (
    Target("(a)/(b) step time", "a", "b", "step", 0.55),
    Target("(a)/(c) step time", "a", "c", "step", 0.6),
    Target("(a)/(c) peak memory", "a", "c", "memory", 0.5),
)


def _value(row: dict[str, Any] | None, metric: str) -> float | None:
    if row is None or row["status"] != "ok":
        return None
    return row["step_s"]["median"] if metric == "step" else row["peak_memory_bytes"]


def check_targets(rows: list[dict[str, Any]], variants: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each target within each variant where both rows were measured. Full fine-tuning has no
    adapter ops, so its eager row stands in for its fused one."""
    by_key = {(r["workload"], r["variant"]): r for r in rows}
    out = []
    for variant in variants:
        for target in TARGETS:
            num = by_key.get((target.numerator, variant))
            den_variant = variant
            den = by_key.get((target.denominator, variant))
            if variant == "fused" and target.denominator == "c":
                den_variant, den = "eager", by_key.get(("c", "eager"))
            a, b = _value(num, target.metric), _value(den, target.metric)
            if a is None or b is None or b == 0:
                continue
            ratio = a / b
            checked = {"target": target.name, "variant": variant, "denominator_variant": den_variant,
                       "ratio": ratio, "limit": target.limit, "verdict": "PASS" if ratio <= target.limit else "MISS"}
            if target.metric == "step" and num.get("flops") and den.get("flops"):
                # what the ratio would be if both ran at the same FLOP/s: the compute-bound expectation
                checked["flop_ratio"] = num["flops"]["total"] / den["flops"]["total"]
            out.append(checked)
    return out


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:,.1f}"


def _g(flops: int) -> str:
    return f"{flops / 1e9:.3g}"


def _mib(nbytes: int | None) -> str:
    return "–" if nbytes is None else f"{nbytes / 2**20:,.1f}"


def render_markdown(result: dict[str, Any]) -> str:
    p = result["preset"]
    batch = result["batch"]
    peak = result["peak"]
    lines = [
        f"# madx-bench perf — {result['device']['description']}",
        "",
        f"Written {result['created']} by:",
        "",
        "```",
        result["command"],
        "```",
        "",
        f"Preset **{p['name']}** ({p['note']}): {p['layers']} layers, h={p['hidden']}, {p['heads']} heads, "
        f"FFN {p['ffn']}, vocabulary {p['vocab']:,}; batch {p['batch']} × seq {p['seq_len']} "
        f"({batch['real_tokens']:,} real tokens of {batch['padded_tokens']:,}, lengths uniform in "
        f"[{p['min_fill']}·T, T]; {batch['masked_positions']} masked positions, {p['mask_probability']:.0%} of real tokens); "
        f"autocast {p['autocast']}; {p['warmup']} warm-up + {p['steps']} timed steps per configuration, median reported.",
        "",
        f"MFU is against **{peak['flops'] / 1e12:,.3f} TFLOP/s**: {peak['source']}. "
        "FLOPs are counted analytically (bench/perf/flops.py): matmuls only, attention included, "
        "frozen weights without weight-gradient GEMMs, head FLOPs on the rows where logits are computed.",
        "",
        f"Peak memory: {result['memory_method']}. *Saved for backward*: bytes of the tensors one eager forward "
        "keeps for backward, weights excluded (via torch.autograd.graph.saved_tensors_hooks).",
        "",
        "## Results",
        "",
        "| | workload | logits | variant | step ms median [min–max] | non-pad tokens/s | peak MiB | saved for backward MiB | GFLOP/step (fwd+bwd) | TFLOP/s | MFU | first step s | trainable params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    titles = {w["key"]: w for w in result["workloads"]}
    for row in result["rows"]:
        w = titles[row["workload"]]
        head = f"| ({row['workload']}) | {w['title']} | {w['logits']} | {row['variant']} "
        if row["status"] != "ok":
            lines.append(head + f"| {row['status']}: {row['reason']} | | | | | | | | |")
            continue
        s = row["step_s"]
        f = row["flops"]
        flop_text = f"{_g(f['total'])} ({_g(f['forward'])}+{_g(f['backward'])})"
        first = "–" if row["first_step_s"] is None else f"{row['first_step_s']:.2f}"
        lines.append(
            head + f"| {_ms(s['median'])} [{_ms(s['min'])}–{_ms(s['max'])}] | {row['tokens_per_s']:,.0f} "
            f"| {_mib(row['peak_memory_bytes'])} | {_mib(row.get('saved_activation_bytes'))} | {flop_text} | {row['achieved_tflops']:.3f} | {row['mfu']:.1%} "
            f"| {first} | {row['trainable_params']:,} |"
        )
    lines += ["", "## Targets", "",
              "Benchmark goals, not test assertions. *FLOP ratio*: the analytic FLOPs of the two steps, i.e. the "
              "ratio if both ran at the same FLOP/s.", "",
              "| target | variant | measured | limit | verdict | FLOP ratio |", "|---|---|---|---|---|---|"]
    if not result["targets"]:
        lines.append("| (no pair of rows measured) | | | | | |")
    for t in result["targets"]:
        variant = t["variant"] if t["denominator_variant"] == t["variant"] else f"{t['variant']} vs (c) {t['denominator_variant']}"
        flop_ratio = f"{t['flop_ratio']:.3f}" if "flop_ratio" in t else "–"
        lines.append(f"| {t['target']} | {variant} | {t['ratio']:.3f} | ≤ {t['limit']} | **{t['verdict']}** | {flop_ratio} |")
    lines += ["", "## FLOPs per step by part (GFLOP, forward + backward)", "",
              "| | " + " | ".join(result["flop_groups"]) + " |", "|---|" + "---|" * len(result["flop_groups"])]
    shown = set()
    for row in result["rows"]:
        if row["status"] != "ok" or row["workload"] in shown:
            continue
        shown.add(row["workload"])
        groups = row["flops"]["by_group"]
        lines.append(f"| ({row['workload']}) | " + " | ".join(_g(groups.get(g, 0)) for g in result["flop_groups"]) + " |")
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
        tag = f"({row['workload']}) {row['name']:<18} {row['variant']:<8}"
        if row["status"] != "ok":
            out.append(f"{tag} {row['status']}: {row['reason']}")
        else:
            out.append(f"{tag} {row['step_s']['median'] * 1e3:9.1f} ms  {row['tokens_per_s']:10,.0f} tok/s  "
                       f"{row['peak_memory_bytes'] / 2**20:8.1f} MiB  MFU {row['mfu']:.1%}")
    for t in result["targets"]:
        flops = f"; FLOP ratio {t['flop_ratio']:.3f}" if "flop_ratio" in t else ""
        out.append(f"{t['verdict']} {t['target']} [{t['variant']}]: {t['ratio']:.3f} (limit {t['limit']}{flops})")
    return out
