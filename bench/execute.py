"""Run one job of the graph inside a worker.

A worker keeps one base model per (model directory, head) and hot-swaps adapters between jobs
(``madx.detach`` restores the base bit for bit), so the many evaluation jobs cost little more
than their forward passes. Full-model jobs (baselines) change every weight and always load a
fresh copy.

Training jobs (MLM, task) checkpoint into ``RUN/jobs/<id>/checkpoint/`` (``madx.train``): every
``TrainConfig.checkpoint_every`` optimizer steps and when the worker is stopped (SIGTERM, or SIGUSR1
from SLURM's ``--signal``). That
folder is outside the job's workspace, which a stopped worker removes, so whichever worker claims
the job next resumes it where it stopped. A checkpoint is written only while the claim that began
the job still holds (its fencing token, ``bench.store``); the folder is removed once the job's
outputs are in its workspace. A ZeRO group's job does not checkpoint (DeepSpeed's partitioned
optimizer state would need its own format).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

import madx
from bench.store import ClaimLost
from madx.adapters.config import AdapterConfig
from madx.atomic import atomic_save_pretrained
from madx.compose import Stack
from madx.data import synthetic
from madx.data.tokenizer import build_tiny_tokenizer
from madx.phases import MLMData, evaluate_task, prepare_task_data, train_full_mlm, train_language_adapter, train_task
from madx.runtime import Runtime
from madx.tasks.registry import get_task, task_names
from madx.train import TrainConfig
from madx.variants import get_variant, mlm_variant

logger = logging.getLogger(__name__)


class JobContext:
    """What a job needs from its worker: the store's view of dependencies, a runtime, caches."""

    def __init__(self, store, jobs_by_id: dict, runtime: Runtime, tb_root: Path, progress: Callable[[str], None]):
        self.store = store
        self.jobs_by_id = jobs_by_id
        self.runtime = runtime
        self.tb_root = tb_root
        self.progress = progress
        self._models: dict[tuple[str, str], torch.nn.Module] = {}
        self._tokenizers: dict[str, Any] = {}
        self._finetuned: tuple[str, torch.nn.Module] | None = None  # the last full-model task job's model
        # (task, test file, language, tokenizer path, max_length, cap) -> (examples, features): a target's test set
        # is read and tokenised once per worker, not once per method x source x seed (bench.perf.eval_overhead)
        self._test_sets: dict[tuple, tuple[Any, Any]] = {}

    def test_set(self, job, task: str, language: str, tokenizer_path: str, max_length: int, cap) -> tuple[Any, Any]:
        """The task's test examples for ``language`` (at most ``cap``) and their features, cached."""
        spec = get_task(task)
        key = (task, str(spec.data_file(self.task_data_fields(job, task), language, "test")), language, tokenizer_path,
               max_length, cap)
        if key not in self._test_sets:
            examples = _limit(_load_task_data(job, self, task, language, "test"), cap)
            features = prepare_task_data(task, examples, self.tokenizer(tokenizer_path), train=False, max_length=max_length)
            self._test_sets[key] = (examples, features)
        return self._test_sets[key]

    # -- resolution of dependencies ---------------------------------------------------------
    def dep(self, job, kind: str, **match) -> Any:
        for dep_id in job.deps:
            dep = self.jobs_by_id[dep_id]
            if dep.kind == kind and all(dep.params.get(k) == v for k, v in match.items()):
                return dep
        raise LookupError(f"job {job.name} has no {kind} dependency matching {match}")

    def base_model_dir(self, job) -> str:
        model = job.params["model"]
        if "tiny" in model:
            return str(self.store.artifacts(self.dep(job, "prepare").id) / "model")
        return model["name_or_path"]

    def synthetic(self, job) -> bool:
        return any(self.jobs_by_id[d].kind == "prepare" for d in job.deps)

    def text_root(self, job) -> str:
        """The folder of MLM text files: the suite's, or the prepare job's output for synthetic suites."""
        if self.synthetic(job):
            return str(self.synthetic_root(job) / "text")
        if job.params.get("text") is None:
            raise ValueError(f"job {job.name}: the suite names no data.text")
        return job.params["text"]

    def synthetic_root(self, job) -> Path:
        return self.store.artifacts(self.dep(job, "prepare").id) / "data"

    def task_data_fields(self, job, task: str) -> dict[str, str]:
        """The task's data fields (folders or files): the suite's, or where the prepare job wrote them."""
        spec = get_task(task)
        if self.synthetic(job):
            root = self.synthetic_root(job)
            return {name: str(root / relative) for name, relative in spec.synthetic_fields.items()}
        fields = job.params.get("data") or {}
        missing = [name for name in spec.data_fields if name not in fields]
        if missing:
            raise ValueError(f"job {job.name}: the suite names no data.{missing[0]} (task {task} reads {', '.join(spec.data_fields)})")
        return fields

    # -- models ------------------------------------------------------------------------------
    def tokenizer(self, path: str):
        if path not in self._tokenizers:
            self._tokenizers[path] = AutoTokenizer.from_pretrained(path)
        return self._tokenizers[path]

    def cached_model(self, path: str, head: str, seed: int) -> torch.nn.Module:
        """The worker's shared base model for adapter jobs, adapters removed, head re-initialised with ``seed``."""
        key = (path, head)
        if key not in self._models:
            self._models[key] = load_model(path, head).to(self.runtime.device)
        model = self._models[key]
        if madx.is_attached(model):
            madx.detach(model)
        if head != "mlm":
            madx.reset_task_heads(model, seed)
        return model

    def fresh_model(self, path: str, head: str, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return load_model(path, head).to(self.runtime.device)

    def writer(self, job):
        """Tensorboard for this job (main process only; ``None`` elsewhere)."""
        if not self.runtime.is_main_process:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.tb_root / job.name.replace("->", "-to-")))


def load_model(path: str, head: str) -> torch.nn.Module:
    """``head``: "mlm" or a task name (its spec knows the head)."""
    if head == "mlm":
        return AutoModelForMaskedLM.from_pretrained(path).eval()
    return get_task(head).load_model(path).eval()


def _train_config(hyper: dict, lr: float, batch_size: int, seed: int, steps: int | None = None, epochs: float = 1.0) -> TrainConfig:
    return TrainConfig(learning_rate=lr, batch_size=batch_size, num_epochs=epochs, max_steps=steps, seed=seed,
                       eval_every=hyper.get("eval_every"), log_every=max(1, min(50, (steps or 50) // 5)))


def checkpoint_dir(store, job) -> Path:
    """Where a training job's checkpoints live: beside its workspaces, kept when a stopped worker removes those."""
    return store.job_dir(job.id) / "checkpoint"


def checkpointing(job, ctx: JobContext) -> dict[str, Any]:
    """The phases' ``checkpoint_dir`` / ``checkpoint_guard`` for ``job``: none without a claim on it (a runner
    called outside a worker) or under a runtime that cannot checkpoint (a ZeRO group)."""
    claim = ctx.store.claim_owner(job.id)
    token = None if claim is None else claim.get("token")
    if token is None or not ctx.runtime.supports_checkpoints:
        return {}

    def guard() -> None:  # fencing: never write into a job another worker owns now
        current = ctx.store.claim_owner(job.id)
        if current is None or current.get("token") != token:
            raise ClaimLost(f"job {job.id}: this worker's claim was lost; it writes no checkpoint")

    return {"checkpoint_dir": checkpoint_dir(ctx.store, job), "checkpoint_guard": guard}


def _finished_training(job, ctx: JobContext) -> None:
    """The job's outputs are in its workspace: its checkpoints are no longer needed (a full model's are GBs)."""
    if ctx.runtime.is_main_process and ctx.store.claim_owner(job.id) is not None:
        shutil.rmtree(checkpoint_dir(ctx.store, job), ignore_errors=True)


# -- job kinds ---------------------------------------------------------------------------------
def run_prepare(job, ctx: JobContext, workspace: Path) -> dict[str, Any]:
    """Synthetic suites: the data files (in the real formats) and a tiny random base model."""
    data, tiny = job.params["data"], dict(job.params["model"]["tiny"])
    languages = sorted(set(data["languages"]))
    root = workspace / "data"
    for lang in languages:
        synthetic.write_text(root / "text" / f"{lang}.txt", lang, data["text_lines"])
    for task in task_names():
        spec = get_task(task)
        if spec.write_synthetic is not None:
            spec.write_synthetic(root, languages, data)
    texts = [line for lang in languages for line in (root / "text" / f"{lang}.txt").read_text().splitlines()]
    texts += [" ".join(tokens) for lang in languages for tokens, _ in synthetic.ner_sentences(lang, 100)]
    # WordPiece keeps whole words (entity names included) as single pieces on this tiny corpus; the
    # tiny Unigram splits capitalised names into "▁", "U", … and leaves NER labels on uninformative pieces.
    tokenizer = build_tiny_tokenizer(texts, vocab_size=tiny.pop("vocab_size", 600), model="wordpiece")
    arch = tiny.pop("arch", "xlm-roberta")
    config = AutoConfig.for_model(arch, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **tiny)
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config)
    atomic_save_pretrained(workspace / "model", model, tokenizer)
    return {"metrics": {}, "cost": {"tokens": 0}}


def run_mlm(job, ctx: JobContext, workspace: Path) -> dict[str, Any]:
    p = job.params
    path = ctx.base_model_dir(job)
    tokenizer = ctx.tokenizer(path)
    hyper = p["mlm"]
    corpus = Path(ctx.text_root(job)) / f"{p['language']}.txt"
    if not corpus.exists():
        raise FileNotFoundError(f"{job.name}: no MLM text for language {p['language']!r} at {corpus}")
    data = MLMData(max_seq_length=hyper["max_seq_length"])
    seed = 1
    writer = ctx.writer(job)
    report = lambda r: ctx.runtime.is_main_process and ctx.progress(f"{job.name} step {r['step']} loss {r['loss']:.3f} {r['tokens_per_s']:.0f} tok/s")
    resume = checkpointing(job, ctx)
    if p["mode"] == "full":
        model = ctx.fresh_model(path, "mlm", seed)
        config = _train_config(hyper, hyper["lr_full_model"], hyper["batch_size"], seed, steps=hyper["steps"])
        out = train_full_mlm(model, corpus, tokenizer, config, ctx.runtime, data, writer, report, **resume)
        if ctx.runtime.is_main_process:
            atomic_save_pretrained(workspace / "model", model, tokenizer)
    else:
        model = ctx.cached_model(path, "mlm", seed)
        torch.manual_seed(seed)
        config = _train_config(hyper, hyper["lr_adapters"], hyper["batch_size"], seed, steps=hyper["steps"])
        out = train_language_adapter(model, p["language"], corpus, tokenizer, config, ctx.runtime,
                                     invertible=mlm_variant(p["mode"]).invertible_adapters,
                                     adapters=adapter_config(job), data=data, writer=writer, progress=report, **resume)
        madx.save_adapter(model, p["language"], workspace / "adapter")
        madx.detach(model)
    if writer is not None:
        writer.close()
    _finished_training(job, ctx)
    return {"metrics": {"loss": out["dev"]["loss"], "perplexity": out["dev"]["perplexity"]}, "train": out["train"],
            "cost": _cost(out["train"], ctx.runtime)}


def adapter_config(job) -> AdapterConfig:
    """The adapters a job creates: the suite's ``adapters`` section with the method's own settings put over it
    (MAD-X 2.0: ``leave_out``). The one place they are merged; an MLM job names its mode, not a method."""
    variant = mlm_variant(job.params["mode"]) if job.kind == "mlm" else get_variant(job.params["method"])
    return variant.adapter_config(job.params["adapters"])


def _load_task_data(job, ctx: JobContext, task: str, language: str, split: str):
    """The task's examples for (language, split); None for an optional split the data lacks."""
    spec = get_task(task)
    path = spec.data_file(ctx.task_data_fields(job, task), language, split)
    return None if path is None else spec.load_file(path)


def _load_language_adapter(job, ctx: JobContext, model, variant, language: str) -> None:
    """The language adapter (+ invertible adapter for MAD-X) that ``language``'s MLM job trained."""
    madx.load_adapter(model, ctx.store.artifacts(ctx.dep(job, "mlm", language=language, mode=variant.mlm_mode).id) / "adapter")


def _limit(dataset, n):
    return dataset if not n or len(dataset) <= n else dataset.select(range(int(n)))


def _task_model_dir(job, ctx: JobContext) -> str:
    variant = get_variant(job.params["method"])
    if variant.full_model_mlm:
        language = job.params["source"] if variant.full_model_mlm == "source" else job.params["mlm_target"]
        return str(ctx.store.artifacts(ctx.dep(job, "mlm", language=language, mode="full").id) / "model")
    return ctx.base_model_dir(job)


def run_task(job, ctx: JobContext, workspace: Path) -> dict[str, Any]:
    p = job.params
    task, method, source, seed, hyper = p["task"], p["method"], p["source"], p["seed"], p["hyper"]
    variant = get_variant(method)
    tokenizer = ctx.tokenizer(ctx.base_model_dir(job))
    spec = get_task(task)
    train_examples = _limit(_load_task_data(job, ctx, task, source, "train"), spec.train_cap(hyper))
    dev_examples = _load_task_data(job, ctx, task, source, "dev") or train_examples.select(range(min(len(train_examples), 200)))
    dev_examples = _limit(dev_examples, spec.eval_cap(hyper))
    batch_size = hyper["batch_size"]
    if spec.low_resource_below is not None and len(train_examples) < spec.low_resource_below:
        batch_size = hyper.get("batch_size_low_resource") or batch_size
    lr = hyper["lr_adapters"] if variant.uses_adapters else hyper["lr_full_model"]
    config = _train_config(hyper, lr, batch_size, seed, epochs=hyper["epochs"])
    writer = ctx.writer(job)
    report = lambda r: ctx.runtime.is_main_process and ctx.progress(f"{job.name} step {r['step']} loss {r['loss']:.3f} {r['tokens_per_s']:.0f} tok/s")
    resume = checkpointing(job, ctx)
    if variant.uses_adapters:
        model = ctx.cached_model(ctx.base_model_dir(job), task, seed)
        if variant.language_adapters:
            _load_language_adapter(job, ctx, model, variant, source)
        setup = variant.task_setup(source, task)
        torch.manual_seed(seed)
        out = train_task(model, task, train_examples, dev_examples, tokenizer, config, ctx.runtime, setup, task_adapter=task,
                         adapters=adapter_config(job), max_length=hyper["max_length"], writer=writer, progress=report,
                         **resume)
        madx.save_adapter(model, task, workspace / "task_adapter")
        madx.detach(model)
    else:
        model = ctx.fresh_model(_task_model_dir(job, ctx), task, seed)
        out = train_task(model, task, train_examples, dev_examples, tokenizer, config, ctx.runtime, None,
                         max_length=hyper["max_length"], writer=writer, progress=report, **resume)
        if ctx.runtime.is_main_process:
            atomic_save_pretrained(workspace / "model", model)
    if writer is not None:
        writer.close()
    _finished_training(job, ctx)
    return {"metrics": {"best_dev": out["dev"], "train_loss": out["train"]["final_loss"]}, "train": out["train"],
            "cost": _cost(out["train"], ctx.runtime)}


def run_eval(job, ctx: JobContext, workspace: Path) -> dict[str, Any]:
    """Evaluate a task setup on the target language's test set.

    Besides the metrics, the job keeps its per-example results in its artifacts, for the report's
    paired bootstrap (``bench.report.significance``): ``predictions.npz`` (``bench.report.predictions``
    reads and writes it) with one array per column (NER: each sentence's entity counts tp, fp, fn;
    QA: each question's F1 and EM) and which test set they are for. A task whose evaluate function
    takes no ``per_example`` keyword writes none.
    """
    import inspect

    from bench.report.predictions import PREDICTIONS_FILE, write_predictions  # numpy only, no plotting

    p = job.params
    task, method, target, seed, hyper = p["task"], p["method"], p["target"], p["seed"], p["hyper"]
    variant = get_variant(method)
    spec = get_task(task)
    tokenizer = ctx.tokenizer(ctx.base_model_dir(job))
    examples, features = ctx.test_set(job, task, target, ctx.base_model_dir(job), hyper["max_length"], spec.eval_cap(hyper))
    task_dir = ctx.store.artifacts(ctx.dep(job, "task").id)
    per_example = "per_example" in inspect.signature(spec.evaluate).parameters

    def evaluate(model) -> dict[str, Any]:
        if per_example:
            return spec.evaluate(model, examples, features, tokenizer, ctx.runtime, per_example=True)
        return evaluate_task(task, model, examples, features, tokenizer, ctx.runtime)

    start = time.perf_counter()
    if variant.uses_adapters:
        model = ctx.cached_model(ctx.base_model_dir(job), task, seed)
        if variant.language_adapters:
            _load_language_adapter(job, ctx, model, variant, target)
        madx.load_adapter(model, task_dir / "task_adapter")
        with madx.active(model, variant.eval_setup(target, task)):
            metrics = evaluate(model)
        madx.detach(model)
    else:
        path = str(task_dir / "model")
        if ctx._finetuned is None or ctx._finetuned[0] != path:  # one per worker: evals of a model come together
            ctx._finetuned = (path, load_model(path, task).to(ctx.runtime.device))
        metrics = evaluate(ctx._finetuned[1])
    wall = time.perf_counter() - start
    examples_out = metrics.pop("per_example", None)
    if examples_out is not None:
        write_predictions(workspace / PREDICTIONS_FILE, task, examples_out)
    writer = ctx.writer(job)
    if writer is not None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"eval/{key}", value, 0)
        writer.close()
    tokens = int(sum(len(ids) for ids in features["input_ids"]))
    return {"metrics": metrics, "cost": {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / max(wall, 1e-9)}}


def _cost(train: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    return {"wall_s": train["wall_s"], "tokens": train["tokens"], "tokens_per_s": train["tokens_per_s"],
            "peak_memory_bytes": train["peak_memory_bytes"], "trainable_params": train["trainable_params"],
            "total_params": train["total_params"]}


RUNNERS = {"prepare": run_prepare, "mlm": run_mlm, "task": run_task, "eval": run_eval}


def is_full_model_job(job) -> bool:
    """Jobs that train every weight: the candidates for a DeepSpeed ZeRO group."""
    if job.kind == "mlm":
        return job.params["mode"] == "full"
    return job.kind == "task" and not get_variant(job.params["method"]).uses_adapters
