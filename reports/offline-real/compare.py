"""Two offline-real runs side by side: does MAD-X's deficit against MAD-X −LAD −INV survive a base
that is a masked LM (and AdapterHub's initialisation)?

Per target and on the averages: MAD-X − (−LAD −INV) and MAD-X − (−INV) with their paired bootstrap
intervals (from each run's ``report.json``, written by ``madx bench report``); the stack's cost on
English itself (the en→en test difference, and the task jobs' dev F1 with and without the English
adapter where the run directory is at hand); each language adapter's masked-LM dev-loss gain over
the base without an adapter (from each run's ``evidence.md``, written by ``evidence.py``); and the
base model's per-language dev perplexity before and after its continued MLM (``mlm_head.json`` of
the model the run used).

    python reports/offline-real/compare.py \
        --run "previous=reports/offline-real/2026-11-27" --run "MLM base=reports/offline-real" \
        --task-run "MLM base=runs/offline-real-mlm-base" --base-record reports/offline-real/base-model.json \
        --out reports/offline-real/compare.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from statistics import mean, stdev

COMPARED = (("madx-lad-inv", "MAD-X − (−LAD −INV)"), ("madx-inv", "MAD-X − (−INV)"))
COLUMNS_FIRST = ("avg unseen", "avg seen", "avg")


def labelled(values: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep:
            raise SystemExit(f"{flag} {value!r}: expected LABEL=PATH")
        out[label] = Path(path)
    return out


def significance(report: dict, baseline: str) -> dict[str, dict]:
    for table in report["tables"]["significance"]:
        if table["id"] == "table5" and table["metric"] == "f1":
            for row in table["rows"]:
                if row["baseline"] == baseline:
                    return row["cells"]
    raise SystemExit(f"no Table 5 comparison of MAD-X with {baseline} in {report['run_dir']}'s report")


def method_means(report: dict) -> dict[str, dict[str, float]]:
    table = next(t for t in report["tables"]["comparisons"] if t["id"] == "table5" or t["id"] == "table2")
    return {row["method"]: {col: cell["ours"]["mean"] for col, cell in row["cells"].items() if cell.get("ours")}
            for row in table["rows"]}


def cell_text(cell: dict | None) -> str:
    if not cell or cell.get("unavailable") or not cell.get("diff"):
        return "—"
    diff, interval = cell["diff"], cell.get("interval")
    text = f"{diff['mean']:+.1f} ± {diff['std']:.1f}" if diff.get("std") is not None else f"{diff['mean']:+.1f}"
    if interval:
        text += f" [{interval['low']:+.1f}, {interval['high']:+.1f}]" + ("" if interval["excludes_zero"] else " n.s.")
    return text


def evidence_gains(path: Path) -> dict[str, tuple[float, float]]:
    """{language: (base loss without adapter, MAD-X adapter's change)} from an evidence.md table."""
    gains = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and re.fullmatch(r"[a-z]{2,3}", cells[0]):
            change = re.search(r"\(([-+]\d+\.\d+)\)", cells[6])
            gains[cells[0]] = (float(cells[5]), float(change.group(1)) if change else float("nan"))
    return gains


def task_dev_f1(run: Path) -> dict[str, list[float]]:
    """{method: best dev F1 of each seed's task job}."""
    out: dict[str, list[float]] = {}
    for path in sorted((run / "jobs").glob("*/result.json")):
        result = json.loads(path.read_text())
        if result["job"]["kind"] == "task" and result.get("status") == "done":
            out.setdefault(result["job"]["params"]["method"], []).append(result["metrics"]["best_dev"]["f1"])
    return out


def spread(values: list[float]) -> str:
    return f"{mean(values):.1f} ± {stdev(values):.1f} (n={len(values)})" if len(values) > 1 else f"{values[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="LABEL=report folder (report.json, evidence.md)")
    parser.add_argument("--task-run", action="append", default=[], help="LABEL=run directory, for the task jobs' dev F1")
    parser.add_argument("--base-record", type=Path, default=None, help="mlm_head.json of the continued-MLM base")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = labelled(args.run, "--run")
    reports = {label: json.loads((folder / "report.json").read_text()) for label, folder in runs.items()}
    labels = list(runs)
    first = reports[labels[0]]
    columns = [c for c in COLUMNS_FIRST] + [c for c in significance(first, "madx-lad-inv") if c not in COLUMNS_FIRST]

    lines = ["# offline-real runs compared: " + " vs ".join(labels), "",
             "Written by `python reports/offline-real/compare.py " + " ".join(
                 [f'--run "{label}={path}"' for label, path in runs.items()]
                 + [f'--task-run "{v}"' for v in args.task_run]
                 + ([f"--base-record {args.base_record}"] if args.base_record else []) + [f"--out {args.out}"]) + "`.",
             "Δ in F1 points: mean over seeds ± std over seeds of the per-seed differences, then the paired bootstrap "
             "95 % interval over test sentences (n.s.: it includes 0). avg unseen = the six unseen targets with MLM text "
             "(qu ilo mi mhr tk gn); cdo and xmf have no adapter.", ""]

    targets = [c for c in columns if not c.startswith("avg")]
    unseen = [c for c in targets if c in significance(first, "madx-lad-inv")["avg unseen"]["diff"]["parts"]]
    f1_columns = [f"avg of {', '.join(unseen)}"] + targets
    lines += ["## NER F1, mean over seeds", "",
              "The average is over the unseen targets every method has (the comparisons' avg unseen); "
              "the report's own avg unseen also counts cdo and xmf for −LAD −INV.", "",
              "| run | method | " + " | ".join(f1_columns) + " |", "|---|---|" + "---|" * len(f1_columns)]
    for label in labels:
        means = method_means(reports[label])
        for method in ("madx", "madx-inv", "madx-lad-inv", "madx2", "madx2-inv"):
            if method in means:
                row = means[method]
                average = mean(row[c] for c in unseen) if all(c in row for c in unseen) else None
                lines.append(f"| {label} | {method} | " + ("—" if average is None else f"{average:.1f}") + " | " + " | ".join(
                    f"{row[c]:.1f}" if c in row else "—" for c in targets) + " |")
    lines.append("")

    for baseline, title in COMPARED:
        lines += [f"## {title}", "", "| column | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        cells = {label: significance(reports[label], baseline) for label in labels}
        for column in columns:
            lines.append(f"| {column} | " + " | ".join(cell_text(cells[label].get(column)) for label in labels) + " |")
        lines.append("")

    lines += ["## The stack's cost on English itself", "",
              "Test en→en, MAD-X − (−LAD −INV) (the task adapter trained on top of the English adapter vs on the bare model, "
              "evaluated on English, before any swap):", ""]
    for label in labels:
        lines.append(f"- {label}: {cell_text(significance(reports[label], 'madx-lad-inv').get('en'))}")
    lines += ["", "What the swap to the target's adapter adds beyond that cost: Δ(avg unseen) − Δ(en) "
              "(a difference of two means; no interval computed):", ""]
    for label in labels:
        cells = significance(reports[label], "madx-lad-inv")
        lines.append(f"- {label}: {cells['avg unseen']['diff']['mean'] - cells['en']['diff']['mean']:+.1f}")
    for label, run in labelled(args.task_run, "--task-run").items():
        dev = task_dev_f1(run)
        lines += ["", f"Task jobs' best dev F1 (400 English dev sentences), {label}:", "",
                  "| method | dev F1 per seed | mean ± std |", "|---|---|---|"]
        for method, values in sorted(dev.items()):
            lines.append(f"| {method} | {', '.join(f'{v:.1f}' for v in values)} | {spread(values)} |")
    lines.append("")

    gains = {label: evidence_gains(folder / "evidence.md") for label, folder in runs.items() if (folder / "evidence.md").is_file()}
    if gains:
        languages = sorted({lang for g in gains.values() for lang in g}, key=lambda lang: (lang != "en", lang))
        lines += ["## Language adapters: masked-LM dev loss of the base without an adapter → change with the MAD-X adapter (nats)", "",
                  "| language | " + " | ".join(gains) + " |", "|---|" + "---|" * len(gains)]
        for lang in languages:
            lines.append(f"| {lang} | " + " | ".join(
                f"{g[lang][0]:.2f} → {g[lang][1]:+.2f}" if lang in g else "—" for g in gains.values()) + " |")
        lines.append("")

    if args.base_record:
        record = json.loads(args.base_record.read_text())
        dev = record["dev_by_language"]
        train = record["train"]
        lines += ["## The continued-MLM base: dev perplexity per seen language", "",
                  f"{train['steps']} steps × {record['config']['batch_size']} × {record['config']['max_seq_length']} tokens "
                  f"({record['train_tokens_seen']:,} tokens) at lr {record['config']['learning_rate']}, "
                  f"{record['trained_parameter_count']:,} parameters trained (encoder layers and MLM head; embeddings frozen); "
                  f"kept step {train['best_step']}. Before = the same encoder with only its head fitted (frozen encoder), "
                  "the kind of base the previous run used.", "",
                  "| language | dev blocks | perplexity before | after | loss before → after |", "|---|---|---|---|---|"]
        for lang, after in dev["after"].items():
            before = dev["before"][lang]
            lines.append(f"| {lang} | {after['blocks']} | {before['perplexity']:,.0f} | {after['perplexity']:,.0f} | "
                         f"{before['loss']:.2f} → {after['loss']:.2f} |")
        lines.append("")

    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
