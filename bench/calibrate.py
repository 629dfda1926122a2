"""What a suite costs: tokens per job kind from its own sizes, and hours at a rate that is either
assumed or measured here (``madx bench plan SUITE --calibrate``).

Two halves, kept apart so the accounting is tested with known numbers and the timing only runs
where asked:

* accounting (pure): ``DataSizes`` answers "how many examples does (task, language, split) have?"
  from the suite's data block (synthetic suites), by counting the data file (when it is there),
  or from a stated assumption (the task registry's ``assumed_train_examples``; for dev/test
  splits ``ASSUMED_EVAL_EXAMPLES`` below), and says which. ``job_work`` turns one job into tokens
  per accounting row; ``account`` adds them up at given tokens/s per rate key and gives GPU-hours
  and the wall time on N GPUs.
* timing: ``calibrate`` builds the suite's model (the tiny config of a synthetic suite; for a hub
  or local model its config, randomly initialised on the device: no weights needed) and times a
  few steps of each kind the suite runs, at the suite's batch sizes and lengths, the way the
  worker runs them (``madx.train``'s step: autocast, backward, clip, AdamW; the MLM objective
  compiled where the suite's runtime compiles).

Rows and what they count (tokens = positions the model runs; packed MLM blocks have no padding):

    mlm-adapter        language (+ invertible) adapter MLM: steps x batch x max_seq_length
    mlm-full           full-model MLM (MLM-SRC/TRG): same
    task-adapter:T     task adapter + head training: epochs x min(train, cap) x tokens/example
    task-full:T        full fine-tuning of task T: same
    dev-eval:T         the dev evaluations inside task training (once per epoch or every
                       eval_every steps): evaluations x min(dev, eval cap) x tokens/example
    eval:T             evaluation jobs: min(test, eval cap) x tokens/example

``dev-eval:T`` is timed with ``eval:T``'s forward. Tokens per example is the registry's
``assumed_tokens_per_example`` capped at the suite's ``max_length`` (NER pads each batch to its
longest sentence and QA pads windows to ``max_length``, so what really runs is more). Not counted:
the MLM dev-loss evaluations (at most 256 blocks every ``eval_every`` steps: 0.04% of paper-ner's
MLM tokens), tokenisation, adapter loading and result writing (``bench.perf.eval_overhead``
measures those for evaluation jobs), and ZeRO groups (a full-model job on several GPUs).

The wall time on N GPUs (N workers) is the larger of GPU-hours / N and the longest chain of
dependent jobs (MLM -> task -> eval): jobs are not divisible.
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from madx.tasks.registry import get_task
from madx.variants import get_variant

EVAL_BATCH_SIZE = 32  # bench.execute.run_eval evaluates with evaluate_task's default batch size
DEV_FALLBACK_EXAMPLES = 200  # bench.execute.run_task: no dev split -> the first 200 training examples

# Dev/test sizes when the data is not here. The registry states only training sizes; these are the
# paper's data: WikiANN (Rahimi splits) 10k dev/test sentences for the high-resource languages it
# trains 20k on, 1k otherwise (the registry's low-resource training size); SQuAD v1.1 dev (10,570)
# and XQuAD (1,190 questions per language). A task not listed: its registry training size.
ASSUMED_EVAL_EXAMPLES: dict[str, Callable[[str, str], int]] = {
    "ner": lambda language, split: 10_000 if language in importlib.import_module("madx.tasks.ner").HIGH_RESOURCE else 1_000,
    "qa": lambda language, split: 10_570 if split == "dev" else 1_190,
}

COUNTED, SUITE, ASSUMED = "counted", "suite", "assumed"  # where a size comes from
_MISSING = object()


# -- sizes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    examples: int
    source: str  # COUNTED (a data file), SUITE (a synthetic suite's data block) or ASSUMED
    where: str  # the file, the data field, or the assumption


def _read_quietly(spec, path: Path):
    """The task's file reader, without its warnings about the content: here the file is only counted."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return spec.load_file(path)
    finally:
        logging.disable(previous)


def _synthetic_keys(task: str, split: str) -> tuple[str, ...]:
    """A synthetic suite's data-block fields for (task, split): ``ner_test``; QA's dev and test are ``qa_eval``."""
    return (f"{task}_{split}",) if split == "train" else (f"{task}_{split}", f"{task}_eval")


class DataSizes:
    """Examples per (task, language, split) of a suite, and where each number comes from.

    ``load`` reads one data file into something with a length (default: the task's ``load_file``);
    each file is read once."""

    def __init__(self, suite, load: Callable[[Any, Path], Any] | None = None):
        self.suite = suite
        self._load = load or _read_quietly
        self._counted: dict[Path, int] = {}
        self._sizes: dict[tuple[str, str, str], Size | None] = {}

    def examples(self, task: str, language: str, split: str) -> Size | None:
        """The split's size; None for an optional split (dev) the data does not have."""
        key = (task, language, split)
        if key not in self._sizes:
            self._sizes[key] = self._find(task, language, split)
        return self._sizes[key]

    def _assumed(self, task: str, language: str, split: str) -> Size:
        spec = get_task(task)
        if split == "train":
            return Size(spec.assumed_train_examples(language), ASSUMED, "task registry (assumed_train_examples)")
        if task in ASSUMED_EVAL_EXAMPLES:
            return Size(ASSUMED_EVAL_EXAMPLES[task](language, split), ASSUMED, "bench.calibrate.ASSUMED_EVAL_EXAMPLES")
        return Size(spec.assumed_train_examples(language), ASSUMED, "task registry (assumed_train_examples)")

    def _find(self, task: str, language: str, split: str) -> Size | None:
        data = self.suite.data
        if data.get("kind") == "synthetic":
            for key in _synthetic_keys(task, split):
                if isinstance(data.get(key), int):
                    return Size(data[key], SUITE, f"data.{key}")
            return self._assumed(task, language, split)
        spec = get_task(task)
        fields = {name: data[name] for name in spec.data_fields if isinstance(data.get(name), str)}
        if any(value.startswith("hub:") for value in fields.values()):
            return self._assumed(task, language, split)
        try:
            path = spec.data_file(fields, language, split)
        except (KeyError, FileNotFoundError, ValueError):
            path = _MISSING  # a field the suite does not name, or no file for this language
        if path is None:
            return None  # the task has no such split here (QA without squad_dev)
        if path is not _MISSING and Path(path).is_file():
            path = Path(path)
            if path not in self._counted:
                self._counted[path] = len(self._load(spec, path))
            return Size(self._counted[path], COUNTED, str(path))
        if split == "dev" and self.examples(task, language, "train").source == COUNTED:
            return None  # the data is here without a dev file: the runner falls back to training examples
        return self._assumed(task, language, split)

    def dev(self, task: str, language: str, train: int) -> Size:
        """The dev set a task job evaluates on: the dev split, or the runner's fallback to training examples."""
        size = self.examples(task, language, "dev")
        if size is not None:
            return size
        return Size(min(train, DEV_FALLBACK_EXAMPLES), SUITE, f"no dev split: the first {DEV_FALLBACK_EXAMPLES} training examples")


# -- accounting -----------------------------------------------------------------------------------
def tokens_per_example(task: str, hyper: Mapping[str, Any]) -> int:
    spec = get_task(task)
    return min(spec.assumed_tokens_per_example, hyper.get("max_length") or spec.default_max_length)


def rate_key(row: str) -> str:
    """The measured step that times ``row``: dev evaluations run the evaluation forward."""
    return "eval:" + row.split(":", 1)[1] if row.startswith("dev-eval:") else row


def _capped(n: int, cap) -> int:
    return min(n, int(cap)) if cap else n


def _evaluations(train: int, hyper: Mapping[str, Any], spec) -> int:
    """How often ``madx.train`` evaluates on dev: every ``eval_every`` optimizer steps (else once per
    epoch) and after the last step."""
    batch = hyper["batch_size"]
    if spec.low_resource_below is not None and train < spec.low_resource_below:
        batch = hyper.get("batch_size_low_resource") or batch
    per_epoch = max(1, math.ceil(train / batch))
    total = max(1, math.ceil(hyper["epochs"] * per_epoch))
    every = hyper.get("eval_every") or per_epoch
    return total // every + (1 if total % every else 0)


@dataclass(frozen=True)
class JobWork:
    id: str
    name: str
    kind: str
    deps: tuple[str, ...]
    tokens: dict[str, float]  # accounting row -> tokens


def job_work(job, sizes: DataSizes) -> JobWork:
    """The tokens one job of the graph runs, per accounting row."""
    p, tokens = job.params, {}
    if job.kind == "mlm":
        m = p["mlm"]
        tokens["mlm-full" if p["mode"] == "full" else "mlm-adapter"] = m["steps"] * m["batch_size"] * m["max_seq_length"]
    elif job.kind in ("task", "eval"):
        task, hyper, spec = p["task"], p["hyper"], get_task(p["task"])
        per_example = tokens_per_example(task, hyper)
        if job.kind == "task":
            train = _capped(sizes.examples(task, p["source"], "train").examples, spec.train_cap(hyper))
            dev = _capped(sizes.dev(task, p["source"], train).examples, spec.eval_cap(hyper))
            mode = "adapter" if get_variant(p["method"]).uses_adapters else "full"
            tokens[f"task-{mode}:{task}"] = hyper["epochs"] * train * per_example
            tokens[f"dev-eval:{task}"] = _evaluations(train, hyper, spec) * dev * per_example
        else:
            test = _capped(sizes.examples(task, p["target"], "test").examples, spec.eval_cap(hyper))
            tokens[f"eval:{task}"] = test * per_example
    return JobWork(job.id, job.name, job.kind, tuple(job.deps), tokens)


@dataclass(frozen=True)
class Row:
    name: str
    jobs: int
    tokens: float
    tokens_per_s: float
    gpu_hours: float


@dataclass(frozen=True)
class Accounting:
    rows: tuple[Row, ...]
    gpus: int
    tokens: float
    gpu_hours: float
    critical_path_hours: float  # the longest chain of dependent jobs
    wall_hours: float  # on ``gpus`` GPUs: max(gpu_hours / gpus, critical_path_hours)
    counts: dict[str, int] = field(default_factory=dict)  # jobs per graph kind

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [row.__dict__ for row in self.rows], "gpus": self.gpus, "tokens": self.tokens,
                "gpu_hours": self.gpu_hours, "critical_path_hours": self.critical_path_hours,
                "wall_hours": self.wall_hours, "counts": self.counts}


ROW_ORDER = ("mlm-adapter", "mlm-full", "task-adapter", "task-full", "dev-eval", "eval")


def _row_sort(name: str) -> tuple[int, str]:
    return ROW_ORDER.index(name.split(":")[0]), name


def account(works: Iterable[JobWork], rates: Mapping[str, float], gpus: int = 1) -> Accounting:
    """Tokens, GPU-hours per row at ``rates`` (tokens/s per rate key), and the wall time on ``gpus`` GPUs."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    works = list(works)
    tokens: dict[str, float] = {}
    jobs: dict[str, int] = {}
    finish: dict[str, float] = {}  # hours from the start until a job can finish, dependencies first
    counts: dict[str, int] = {}
    for work in works:  # build_graph's order: dependencies come first
        counts[work.kind] = counts.get(work.kind, 0) + 1
        hours = 0.0
        for row, n in work.tokens.items():
            rate = rates[rate_key(row)]
            if not rate > 0:
                raise ValueError(f"the rate for {rate_key(row)} must be positive, got {rate}")
            tokens[row] = tokens.get(row, 0.0) + n
            jobs[row] = jobs.get(row, 0) + 1
            hours += n / rate / 3600
        finish[work.id] = hours + max((finish.get(d, 0.0) for d in work.deps), default=0.0)
    rows = tuple(Row(name, jobs[name], tokens[name], rates[rate_key(name)], tokens[name] / rates[rate_key(name)] / 3600)
                 for name in sorted(tokens, key=_row_sort))
    gpu_hours = sum(row.gpu_hours for row in rows)
    critical = max(finish.values(), default=0.0)
    return Accounting(rows, gpus, sum(row.tokens for row in rows), gpu_hours, critical,
                      max(gpu_hours / gpus, critical), counts)


def rate_keys(works: Iterable[JobWork]) -> list[str]:
    """The steps to time for these jobs, in row order."""
    return sorted({rate_key(row) for work in works for row in work.tokens}, key=_row_sort)


def size_notes(suite, sizes: DataSizes) -> list[str]:
    """One line per (task, split): each language's size and where it comes from."""
    lines = []
    for task in suite.tasks:
        hyper = suite.hyper()[task]
        spec = get_task(task)
        for split, languages in (("train", suite.sources[task]), ("dev", suite.sources[task]), ("test", suite.targets[task])):
            groups: dict[str, list[str]] = {}
            for language in languages:
                size = sizes.examples(task, language, split)
                if size is None:
                    size = sizes.dev(task, language, sizes.examples(task, language, "train").examples)
                label = {COUNTED: "counted from the data files", SUITE: "the suite's data block",
                         ASSUMED: f"assumed, {size.where}"}[size.source]
                if size.source == SUITE and size.where.startswith("no dev split"):
                    label = size.where
                groups.setdefault(label, []).append(f"{language} {size.examples:,}")
            cap = spec.train_cap(hyper) if split == "train" else spec.eval_cap(hyper)
            capped = f", capped at {cap:,}" if cap else ""
            lines.append(f"{task} {split}{capped}: " + "; ".join(f"{label}: {', '.join(v)}" for label, v in groups.items()))
        lines.append(f"{task}: {tokens_per_example(task, hyper)} tokens per example (task registry's "
                     f"assumed_tokens_per_example {spec.assumed_tokens_per_example}, capped at max_length)")
    return lines


# -- timing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    key: str
    batch: int
    seq_len: int
    train: bool
    step_s: float  # median of the timed steps
    samples_s: tuple[float, ...]
    tokens_per_s: float  # batch x seq_len / step_s

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "samples_s": list(self.samples_s)}


def model_config(model: Mapping[str, Any]):
    """The transformers config of a suite's model: its tiny config, a local model's, a built-in preset's
    (``madx.params.ARCH_PRESETS``: xlm-roberta-base needs no hub), else the hub model's (no weights)."""
    from transformers import AutoConfig

    from madx.params import ARCH_PRESETS, config_for

    if "tiny" in model:
        tiny = dict(model["tiny"])
        arch = tiny.pop("arch", "xlm-roberta")
        return AutoConfig.for_model(arch, **tiny)
    name = str(model["name_or_path"])
    if name in ARCH_PRESETS and not Path(name).is_dir():
        return config_for(name)
    return AutoConfig.from_pretrained(name)


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device, steps: int, warmup: int) -> list[float]:
    """``warmup`` untimed calls, then ``steps`` timed one by one (synchronised on CUDA)."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    samples = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _synchronize(device)
        samples.append(time.perf_counter() - start)
    return samples


def _ids(generator, shape, vocab: int):
    import torch

    return torch.randint(5, max(6, vocab), shape, generator=generator)  # ids 0-4: specials in XLM-R and BERT


def _task_targets(model_class: str, num_labels: int, batch: int, seq_len: int, generator) -> dict:
    """Training targets for a task head, by its transformers Auto class."""
    import torch

    if model_class == "AutoModelForTokenClassification":
        return {"labels": torch.randint(0, num_labels, (batch, seq_len), generator=generator)}
    if model_class == "AutoModelForQuestionAnswering":
        return {"start_positions": torch.randint(0, seq_len, (batch,), generator=generator),
                "end_positions": torch.randint(0, seq_len, (batch,), generator=generator)}
    raise ValueError(f"calibration builds no batch for a {model_class} head")


def _build_step(key: str, suite, config, runtime, generator):
    """(step closure, batch, seq_len, train) for one rate key; the model lives in the closure."""
    import copy

    import torch
    import transformers

    import madx
    from madx.adapters.config import AdapterConfig
    from madx.tasks.mlm import MaskedLMObjective

    device = runtime.device
    hyper = suite.hyper()
    adapters = AdapterConfig.from_dict(hyper["adapters"])
    vocab = config.vocab_size
    if key.startswith("mlm-"):
        m = hyper["mlm"]
        batch, seq_len = m["batch_size"], m["max_seq_length"]
        with device:
            model = transformers.AutoModelForMaskedLM.from_config(config).train()
        if key == "mlm-adapter":
            madx.add_language_adapter(model, "src", adapters, invertible=True)
            madx.set_trainable(model, adapters=["src"])
            madx.set_active(model, madx.Stack("src"))
        else:
            madx.set_trainable(model, base=True)
        objective = MaskedLMObjective(model, compile=runtime.compiles)
        ids = _ids(generator, (batch, seq_len), vocab)
        masked = torch.rand((batch, seq_len), generator=generator) < 0.15
        masked[:, 0] = True  # at least one masked position per block
        inputs = {"input_ids": torch.where(masked, torch.full_like(ids, 4), ids).to(device),
                  "labels": torch.where(masked, ids, torch.full_like(ids, -100)).to(device)}  # packed: no attention_mask
        compute = lambda: objective(**inputs)
        train = True
    else:
        task = key.split(":", 1)[1]
        spec = get_task(task)
        task_config = copy.deepcopy(config)
        for name, value in spec.head_kwargs().items():
            setattr(task_config, name, value)
        seq_len = tokens_per_example(task, hyper[task])
        train = not key.startswith("eval:")
        batch = hyper[task]["batch_size"] if train else EVAL_BATCH_SIZE
        with device:
            model = getattr(transformers, spec.model_class).from_config(task_config)
        inputs = {"input_ids": _ids(generator, (batch, seq_len), vocab),
                  "attention_mask": torch.ones((batch, seq_len), dtype=torch.long)}
        if key.startswith("task-full:"):
            madx.set_trainable(model, base=True)
        else:  # MAD-X: the language adapter (+ invertible) below the task adapter
            madx.add_language_adapter(model, "lang", adapters, invertible=True)
            madx.add_task_adapter(model, task, adapters)
            madx.set_active(model, madx.Stack("lang", task))
            madx.set_trainable(model, adapters=[task] if train else [], task_head=train)
        if train:
            inputs.update(_task_targets(spec.model_class, task_config.num_labels, batch, seq_len, generator))
        inputs = {k: v.to(device) for k, v in inputs.items()}
        model.train(train)
        compute = (lambda: model(**inputs).loss) if train else (lambda: model(**inputs))
    if not train:
        def step() -> None:
            with torch.no_grad(), runtime.autocast():
                compute()

        return step, batch, seq_len, train
    params = [p for p in (objective if key.startswith("mlm-") else model).parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:  # madx.train's optimizer step
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            loss = compute()
        runtime.backward(loss)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        runtime.optimizer_step(model, optimizer)

    return step, batch, seq_len, train


def calibrate(suite, keys: Iterable[str], steps: int = 5, warmup: int = 2, device: str | None = None,
              log: Callable[[str], None] | None = None, config=None) -> tuple[dict[str, Measurement], dict[str, Any]]:
    """Time ``steps`` steps (after ``warmup``) of each rate key on ``device`` (default: CUDA if here, else CPU).
    Returns the measurements and what they ran on. On CPU, torch runs the suite's threads per worker.
    ``config``: the model's config if already loaded (default: ``model_config(suite.model)``)."""
    import gc

    import torch

    from bench.suite import compile_setting
    from madx.runtime import Runtime

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    runtime_hyper = suite.hyper()["runtime"]
    runtime = Runtime.local(device, runtime_hyper["mixed_precision"], compile=compile_setting(runtime_hyper["compile"]))
    config = config if config is not None else model_config(suite.model)
    threads = torch.get_num_threads()
    if runtime.device.type == "cpu":
        torch.set_num_threads(runtime_hyper["cpu_threads_per_worker"])
    info = {"device": runtime.describe(), "mixed_precision": runtime.mixed_precision, "compiled_mlm": runtime.compiles,
            "threads": torch.get_num_threads() if runtime.device.type == "cpu" else None, "steps": steps,
            "warmup": warmup, "model": {"model_type": config.model_type, "hidden_size": config.hidden_size,
                                        "num_hidden_layers": config.num_hidden_layers, "vocab_size": config.vocab_size}}
    measured: dict[str, Measurement] = {}
    try:
        for key in keys:
            generator = torch.Generator().manual_seed(0)
            torch.manual_seed(0)
            step, batch, seq_len, train = _build_step(key, suite, config, runtime, generator)
            samples = time_steps(step, runtime.device, steps, warmup)
            median = statistics.median(samples)
            measured[key] = Measurement(key, batch, seq_len, train, median, tuple(samples), batch * seq_len / median)
            if log is not None:
                log(f"  {key}: {batch} x {seq_len} tokens, {median * 1000:.1f} ms/step, {batch * seq_len / median:,.0f} tokens/s")
            del step
            gc.collect()
            if runtime.device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        torch.set_num_threads(threads)
    return measured, info


# -- the plan ---------------------------------------------------------------------------------------
def plan_suite(suite, jobs, gpus: int = 1, throughput: float | None = None, calibration: tuple | None = None,
               sizes: DataSizes | None = None) -> dict[str, Any]:
    """The whole plan as data: the accounting at an assumed ``throughput`` for every kind, or at the
    ``calibration`` (measurements, info) from ``calibrate``."""
    sizes = sizes or DataSizes(suite)
    works = [job_work(job, sizes) for job in jobs]
    if calibration is not None:
        measured, info = calibration
        rates = {key: m.tokens_per_s for key, m in measured.items()}
        rate = {"source": "measured", **info, "measurements": {k: m.to_dict() for k, m in measured.items()}}
    else:
        rates = {key: throughput for key in rate_keys(works)}
        rate = {"source": "assumed", "tokens_per_s": throughput}
    accounting = account(works, rates, gpus)
    training = {"mlm": sum(r.tokens for r in accounting.rows if r.name.startswith("mlm-")),
                "task": sum(r.tokens for r in accounting.rows if r.name.startswith("task-"))}
    return {"suite": suite.name, **accounting.to_dict(), "rate": rate, "sizes": size_notes(suite, sizes),
            "training_tokens": training}


def _hours(hours: float) -> str:
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:.3g}"


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:,.1f} h"
    return f"{hours * 60:.1f} min" if hours * 60 >= 1 else f"{hours * 3600:.1f} s"


def render_plan(plan: Mapping[str, Any]) -> str:
    """``plan_suite``'s result as ``madx bench plan`` prints it."""
    from madx.tables import render_table

    counts, rate, gpus = plan["counts"], plan["rate"], plan["gpus"]
    lines = [f"suite {plan['suite']}: {sum(counts.values())} jobs ("
             + ", ".join(f"{counts[k]} {k}" for k in ("prepare", "mlm", "task", "eval") if k in counts) + ")"]
    if rate["source"] == "measured":
        where = rate["device"] + (f", {rate['threads']} thread(s) per worker" if rate["threads"] else "")
        lines.append(f"rates measured on {where} ({rate['mixed_precision']} mixed precision, "
                     f"median of {rate['steps']} timed steps per kind)")
    else:
        lines.append(f"rates assumed: {rate['tokens_per_s']:,.0f} tokens/s per GPU for every job kind "
                     "(not measured; --calibrate measures them on this device)")
    rows = [[row["name"], f"{row['jobs']:,}", f"{row['tokens']:.3g}", f"{row['tokens_per_s']:,.0f}",
             _hours(row["gpu_hours"])] for row in plan["rows"]]
    rows.append(["total", f"{sum(counts.values()):,}", f"{plan['tokens']:.3g}", "", _hours(plan["gpu_hours"])])
    lines.append(render_table(["job kind", "jobs", "tokens", "tokens/s", "GPU-h"], rows, pad=True))
    unit = "worker" if rate["source"] == "measured" and rate["device"] == "cpu" else "GPU"
    lines.append(f"wall time on {gpus} {unit}{'s' if gpus > 1 else ''}: {_duration(plan['wall_hours'])} "
                 f"(GPU-h / {gpus} = {_duration(plan['gpu_hours'] / gpus)}; longest chain of dependent jobs "
                 f"{_duration(plan['critical_path_hours'])}); step compute only, see bench/calibrate.py for what is not counted")
    lines.append("sizes:")
    lines += [f"  {line}" for line in plan["sizes"]]
    return "\n".join(lines)
