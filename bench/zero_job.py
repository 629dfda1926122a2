"""Run one full-model job data-parallel over a DeepSpeed ZeRO group, as the same experiment.

The worker that claimed the job starts this module with ``torchrun --standalone --nproc_per_node K``
(the group's agent binds its own rendezvous port, so groups starting together never race for one)
and keeps holding the claim; rank 0 writes ``output.json`` into the job's workspace, and the worker
commits it like any other job. Adapter jobs never come here: with 97% of the weights frozen
there are almost no optimizer states or gradients for ZeRO to partition (``bench/perf`` shows
the memory split), so one process per adapter job is the better use of devices.

A group computes what one process computes (``SameExperimentZeRO``), so a job's id needs no group
size (``tests/bench/test_zero.py`` compares a group's results with one process's):

* **the same global batch**: the suite's batch size B is the global batch, each of the K ranks
  takes B / K of it (an error names the setting when K does not divide B);
* **the same batches in the same order**: every rank draws the one-process permutation of the
  epoch from the loop's own seeded shuffling generator (a new permutation each epoch, as the
  one-process loader does, so no ``set_epoch`` is needed) and takes its slice of each batch;
* **the same loss**: each rank's mean loss is weighted by its share of the batch's loss targets
  (labelled tokens, or examples), so the averaged gradient is the gradient of the batch's mean
  loss, and the loss recorded is the whole batch's, not rank 0's slice;
* **the suite's mixed precision**: fp32 weights with bf16 autocast, as one process runs it, not
  DeepSpeed's pure-bf16 weights (fp16 keeps DeepSpeed's loss-scaled fp16 engine).

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m bench.zero_job RUN/jobs/<id>/work-xxxx/job.json
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from bench.execute import RUNNERS, JobContext
from bench.graph import Job
from bench.store import RunStore
from madx.atomic import atomic_write_json
from madx.runtime import DeepSpeedRuntime


class GlobalBatchSampler:
    """Rank ``rank``'s slice of each global batch of the one-process loader: each epoch (each
    ``iter``) draws ``randperm(n)`` from ``generator``, as a shuffling DataLoader's RandomSampler
    does (the DataLoader around it takes the same generator, see ``prepare``), cuts it into batches of ``batch_size`` and yields this rank's part of each. The
    last, short batch is split as evenly as it goes; a rank left without an example repeats the
    batch's first (its loss weight is then 0)."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int, generator: torch.Generator):
        self.n, self.batch_size, self.rank, self.world, self.generator = n, batch_size, rank, world, generator
        self.padded = False  # whether the slice last yielded is padding

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for start in range(0, self.n, self.batch_size):
            batch = order[start:start + self.batch_size]
            part = [int(i) for i in torch.tensor(batch).tensor_split(self.world)[self.rank]]
            self.padded = not part
            yield part or [batch[0]]


def loss_targets(batch: dict) -> torch.Tensor:
    """What the batch's mean loss averages over: labelled tokens (MLM, NER) or examples (QA)."""
    if "labels" in batch:
        return (batch["labels"] != -100).sum()
    return torch.tensor(batch["input_ids"].shape[0])


class SameExperimentZeRO(DeepSpeedRuntime):
    """DeepSpeed ZeRO over the group, computing the one-process experiment (see the module docstring)."""

    def __init__(self, zero_stage: int, mixed_precision: str = "no", compile: str = "auto"):
        if torch.cuda.is_available():  # before the process group and DeepSpeed touch CUDA: nothing lands on GPU 0
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        super().__init__(zero_stage, mixed_precision, compile=compile)
        self._targets = 0.0
        self._sampler: GlobalBatchSampler | None = None
        self.batch_losses: list[float] = []  # the whole batch's mean loss, one per micro-batch

    def prepare(self, model, optimizer, loader):
        import deepspeed  # optional extra

        batch_size = loader.batch_size
        if batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the ZeRO group's {self.world} processes "
                             f"(hyperparameters.runtime.zero_group_size): each process takes an equal share of the batch")
        micro = batch_size // self.world
        config = {
            "train_micro_batch_size_per_gpu": micro,
            "train_batch_size": micro * self.world,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": self.gradient_clipping,
            "zero_optimization": {"stage": self.zero_stage},
            "bf16": {"enabled": False},  # bf16 runs as autocast over fp32 weights, as in one process
            "fp16": {"enabled": self.mixed_precision == "fp16"},
        }
        engine, ds_optimizer, _, _ = deepspeed.initialize(model=model.to(self.device), optimizer=optimizer, config=config)
        self._engine = engine
        generator = loader.generator if loader.generator is not None else torch.Generator().manual_seed(0)
        sampler = self._sampler = GlobalBatchSampler(len(loader.dataset), batch_size, self.rank, self.world, generator)
        # the same generator for the loader too: each epoch's iterator draws its base seed from it before
        # the sampler draws the permutation, as in the one-process loader
        return engine, ds_optimizer, DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=loader.collate_fn,
                                                generator=generator)

    def autocast(self):
        if self.mixed_precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return super().autocast()  # fp16: DeepSpeed's engine casts; no: nothing

    @property
    def keeps_master_weights(self) -> bool:
        return self.mixed_precision == "fp16"

    def skip_batches(self, loader, n: int):
        if n == 0:
            return loader
        return super().skip_batches(loader, n)

    def to_device(self, batch):
        batch = super().to_device(batch)
        # what this rank holds of the batch's loss targets (nothing when its slice is padding); no
        # collective here: evaluation moves batches too, and ranks need not evaluate alike
        padded = self._sampler is not None and self._sampler.padded
        self._targets = 0.0 if padded else float(loss_targets(batch))
        return batch

    def backward(self, loss: torch.Tensor) -> None:
        sizes = torch.zeros(self.world, dtype=torch.float64, device=self.device)
        sizes[self.rank] = self._targets
        dist.all_reduce(sizes)
        total = float(sizes.sum())
        weight = self._targets * self.world / total if total > 0 else 1.0
        weighted = loss * weight  # the engine averages over ranks: the mean of these is the batch's mean loss
        whole = weighted.detach().float().clone()
        dist.all_reduce(whole)
        self.batch_losses.append(float(whole) / self.world)
        self._engine.backward(weighted)


def batch_loss_history(output: dict, batch_losses: list[float]) -> dict:
    """The job's output with every logged training loss (window means of micro-batch losses, as
    ``madx.train`` logs them) recomputed from the whole batches' losses instead of rank 0's slices."""
    train = output.get("train")
    if not isinstance(train, dict) or not batch_losses:
        return output
    previous = 0
    for record in train.get("history", []):
        if "loss" in record and "step" in record:
            window = batch_losses[previous:record["step"]]
            if window:
                record["loss"] = sum(window) / len(window)
            previous = record["step"]
            train["final_loss"] = record["loss"]
    if "train_loss" in output.get("metrics", {}):
        output["metrics"]["train_loss"] = train["final_loss"]
    return output


def main(argv: list[str]) -> int:
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))

    torch.set_num_threads(spec["cpu_threads"])
    jobs = [Job(**record) for record in [spec["job"], *spec["deps"]]]
    job, jobs_by_id = jobs[0], {j.id: j for j in jobs}
    store = RunStore(spec["run_dir"])
    runtime = SameExperimentZeRO(spec["zero_stage"], spec["mixed_precision"], compile=spec.get("compile", "auto"))
    rank = runtime.process_index
    context = JobContext(store, jobs_by_id, runtime, store.root / "tb",
                         lambda line: print(f"[zero rank{rank}] {line}", flush=True))
    output = RUNNERS[job.kind](job, context, spec_path.parent)
    if runtime.is_main_process:
        output = batch_loss_history(output, runtime.batch_losses)
        output.setdefault("cost", {})["zero"] = {"stage": spec["zero_stage"], "processes": runtime.num_processes}
        atomic_write_json(spec_path.parent / "output.json", output)
    dist.barrier()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
