"""What the language adapters of an offline-real run had to learn from, and what they learned.

Per language: the MLM text (lines, training tokens), the base model's masked-LM loss on the
language's held-out blocks *without any adapter*, and each language adapter's loss on the same
blocks with the same masks after its MLM job (the job's own dev metric). An adapter that does not
bring the loss below the base model's has not adapted the model to the language.

    python reports/offline-real/evidence.py --run runs/offline-real --text data/mlm-text \
        --model models/e5-small-mlm --out reports/offline-real/evidence.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from madx.data.mlm import MaskedLMCollator, read_text_files
from madx.evaluate import evaluate_mlm
from bench.suite import load_suite
from madx.phases import DEV_MASK_SEED, MLMData, split_mlm_blocks  # the MLM jobs' own split and masks
from madx.runtime import Runtime

MODES = ("adapter+inv", "adapter", "adapter+inv,leave_out=-1", "adapter,leave_out=-1")
MODE_NAMES = {"adapter+inv": "MAD-X", "adapter": "MAD-X −INV", "adapter+inv,leave_out=-1": "MAD-X 2.0",
              "adapter,leave_out=-1": "MAD-X 2.0 −INV"}
JOB_SEED = 1  # bench.execute.run_mlm trains and splits with seed 1


def mlm_results(run: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted((run / "jobs").glob("*/result.json")):
        result = json.loads(path.read_text())
        job = result["job"]
        if job["kind"] == "mlm" and result.get("status") == "done":
            found[(job["params"]["language"], job["params"]["mode"])] = result
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--text", type=Path, required=True, help="the suite's data.text folder")
    parser.add_argument("--model", type=Path, required=True, help="the suite's base model")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    suite = load_suite(str(args.run / "suite.yaml"), check_paths=False)  # the copy the run was started with
    hyper, mixed_precision = suite.hyperparameters["mlm"], suite.hyperparameters["runtime"]["mixed_precision"]
    results = mlm_results(args.run)
    languages = sorted({lang for lang, _ in results}, key=lambda lang: (lang != "en", lang))
    runtime = Runtime.local("cpu", mixed_precision=mixed_precision)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForMaskedLM.from_pretrained(args.model).eval()
    header = ["language", "text lines", "training tokens", "tokens per adapter (epochs)", "dev blocks", "base, no adapter",
              *MODE_NAMES.values()]
    rows = []
    for lang in languages:
        corpus = args.text / f"{lang}.txt"
        train_blocks, dev_blocks = split_mlm_blocks(corpus, tokenizer, MLMData(max_seq_length=hyper["max_seq_length"]), JOB_SEED)
        training_tokens = len(train_blocks) * hyper["max_seq_length"]
        base = evaluate_mlm(model, dev_blocks, MaskedLMCollator(tokenizer, seed=DEV_MASK_SEED), runtime, hyper["batch_size"])
        seen = results[(lang, "adapter+inv")]["train"]["tokens"]
        cells = [lang, f"{len(read_text_files(corpus)):,}", f"{training_tokens:,}", f"{seen:,} ({seen / training_tokens:.1f})",
                 str(len(dev_blocks)), f"{base['loss']:.3f}"]
        for mode in MODES:
            result = results.get((lang, mode))
            cells.append("—" if result is None else f"{result['metrics']['loss']:.3f} ({result['metrics']['loss'] - base['loss']:+.3f})")
        rows.append(cells)
        print(" | ".join(cells), flush=True)
    lines = [
        "# Language adapters of this run: text, and masked-LM dev loss with and without them",
        "",
        f"Written by `python reports/offline-real/evidence.py --run {args.run} --text {args.text} --model {args.model} "
        f"--out {args.out}`. Loss: mean masked-token cross-entropy (nats) on the language's held-out blocks "
        f"({hyper['max_seq_length']} tokens each, the MLM job's own dev split and masks), {mixed_precision} autocast as in the "
        "run; in brackets the change from the base model without an adapter. A dev split this small (a few blocks) is noisy.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
