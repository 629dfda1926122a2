"""One long-lived worker running many compiled MLM jobs: recompiles and memory after each job,
and the Triton probe on the worker's own device.

A real ``bench.worker.run_worker`` on a small synthetic suite (a few adapter MLM jobs of different
languages, then full-model MLM jobs: another shape), with ``runtime.compile: yes``. Every frame the
MLM step compiles is counted through the compile backend (the backend the suite would use, wrapped),
and after each job the device's allocated and reserved memory are read. Then ``madx.kernels``'
auto probe runs on the worker's device (the current one, which the worker set) and its result,
failures included, is written beside.

    python -m bench.perf.worker_reuse --out reports/gpu                       # on a GPU node: cuda:0, inductor
    python -m bench.perf.worker_reuse --out /tmp/dry --backend aot_eager      # a dry run on CPU

Writes worker-reuse-<device>.json and .md under --out, with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

SUITE = """\
name: worker-reuse
model:
  tiny: {{arch: xlm-roberta, vocab_size: 2000, hidden_size: {hidden}, num_hidden_layers: {layers}, num_attention_heads: 4,
         intermediate_size: {inter}, max_position_embeddings: 160, type_vocab_size: 1}}
data: {{kind: synthetic, languages: [{languages}], ner_train: 16, ner_dev: 8, ner_test: 8, text_lines: 400,
       qa_train: 8, qa_eval: 8}}
tasks:
  ner: {{sources: [en], targets: [{languages}], methods: [madx]}}
  qa: {{sources: [en], targets: [{full}], methods: [mlm-trg]}}
seeds: [1]
hyperparameters:
  mlm: {{steps: {steps}, batch_size: 16, max_seq_length: 128, lr_adapters: 0.002, lr_full_model: 0.0005, eval_every: {steps}}}
  runtime: {{cpu_threads_per_worker: 2, lease_seconds: 60, compile: "yes", mixed_precision: {precision}}}
"""
LANGUAGES = ["en", "sw", "qu", "is", "my", "jv", "ilo", "mi", "tk", "gn"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/gpu")
    parser.add_argument("--languages", type=int, default=6, help="adapter MLM jobs, one language each")
    parser.add_argument("--full", type=int, default=2, help="full-model MLM jobs (another compiled shape)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager for a quick CPU dry run)")
    args = parser.parse_args(argv)

    import bench.execute
    from bench.devices import worker_device
    from bench.suite import load_suite
    from bench.worker import run_worker
    from madx import kernels

    cuda = torch.cuda.is_available()
    languages = LANGUAGES[: args.languages]
    text = SUITE.format(hidden=args.hidden, layers=args.layers, inter=4 * args.hidden, languages=", ".join(languages),
                        full=", ".join(languages[1: 1 + args.full]), steps=args.steps,
                        precision="bf16" if cuda and torch.cuda.is_bf16_supported() else "\"no\"")
    frames: list[dict] = []
    jobs: list[dict] = []
    current: dict = {}
    backend = torch._dynamo.lookup_backend(args.backend)

    def counting_backend(gm, example_inputs):
        shapes = [tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor) and t.dtype == torch.long]
        shapes = shapes or [tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor) and t.ndim == 2][:1]
        frames.append({"job": current.get("name"), "input_shapes": shapes, "graph_inputs": len(example_inputs)})
        return backend(gm, example_inputs)

    real_compile = torch.compile
    torch.compile = lambda model, **kw: real_compile(model, **{**kw, "backend": counting_backend})
    for kind, runner in list(bench.execute.RUNNERS.items()):
        def timed(job, ctx, workspace, runner=runner):
            current["name"] = job.name
            before = len(frames)
            start = time.perf_counter()
            output = runner(job, ctx, workspace)
            record = {"job": job.name, "kind": job.kind, "mode": job.params.get("mode"), "wall_s": time.perf_counter() - start,
                      "frames_compiled": len(frames) - before, "frames_total": len(frames)}
            if ctx.runtime.device.type == "cuda":
                torch.cuda.synchronize(ctx.runtime.device)
                record.update(device=str(ctx.runtime.device), current_device=torch.cuda.current_device(),
                              allocated_mib=torch.cuda.memory_allocated(ctx.runtime.device) / 2**20,
                              reserved_mib=torch.cuda.memory_reserved(ctx.runtime.device) / 2**20,
                              peak_mib=torch.cuda.max_memory_allocated(ctx.runtime.device) / 2**20)
            jobs.append(record)
            return output

        bench.execute.RUNNERS[kind] = timed

    with tempfile.TemporaryDirectory() as tmp:
        suite_path = Path(tmp) / "worker-reuse.yaml"
        suite_path.write_text(text)
        n_mlm = len(languages) + args.full
        summary = run_worker(load_suite(suite_path), Path(tmp) / "run", progress=lambda line: None, max_jobs=1 + n_mlm)
        bound = worker_device(Path(tmp) / "run")
    torch.compile = real_compile
    probe_device = f"cuda:{torch.cuda.current_device()}" if cuda else None
    probe = kernels.probe_auto(hidden=args.hidden, tokens=16 * 128, device=probe_device) if cuda else kernels.describe_auto()
    result = {
        "command": " ".join(["python", "-m", "bench.perf.worker_reuse", *(argv if argv is not None else sys.argv[1:])]),
        "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
        "backend": args.backend, "worker_device": None if bound is None else {"index": bound.index, "uuid": bound.uuid},
        "summary": summary, "jobs": jobs, "frames": frames,
        "frames_per_mode": {mode: sum(1 for f in frames for j in jobs if j["job"] == f["job"] and j["mode"] == mode)
                            for mode in sorted({str(j["mode"]) for j in jobs if j["kind"] == "mlm"})},
        "kernel_probe": {"device": probe_device, "auto": probe, "failures": kernels.probe_failures()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "worker-reuse-" + ("cpu" if not cuda else "".join(c if c.isalnum() else "-" for c in result["device"].lower()))
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    lines = [f"# One worker, {n_mlm} compiled MLM jobs ({result['device']}, backend {args.backend})", "",
             f"    {result['command']}", "",
             "| job | mode | wall s | frames compiled | allocated MiB | reserved MiB | peak MiB |", "|---|---|---|---|---|---|---|"]
    for j in jobs:
        lines.append(f"| {j['job']} | {j['mode']} | {j['wall_s']:.1f} | {j['frames_compiled']} | "
                     f"{j.get('allocated_mib', float('nan')):.0f} | {j.get('reserved_mib', float('nan')):.0f} | "
                     f"{j.get('peak_mib', float('nan')):.0f} |")
    lines += ["", f"Compiled frames in all: {len(frames)} for {n_mlm} MLM jobs; per mode: {result['frames_per_mode']}",
              "", f"Kernel probe on {probe_device}: failures {result['kernel_probe']['failures'] or 'none'}", ""]
    lines += [f"- {op}: {line}" for op, line in probe.items()]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
