"""The tasks madx can train and evaluate, by name: one ``TaskSpec`` per task.

    spec = get_task("ner")            # did-you-mean on a typo
    register_task(MY_POS_SPEC)        # a new task: one module with its spec, one call

Everything that differs between tasks lives in its spec: the model head, the file format and
layout, feature preparation, the collator, evaluation and the metric that selects the best dev
checkpoint, plus the defaults and size assumptions the benchmark suites use. Phases, the suite
runner, the CLI and suite validation look tasks up here instead of branching on names.

The built-in tasks are registered by module path and imported on first lookup, so listing
names (``task_names()``, e.g. for ``--task`` choices) imports no model code.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    model_class: str  # the transformers Auto class of the model with this task's head
    data_fields: tuple[str, ...]  # the suite's ``data:`` fields this task reads (folders or files)
    load_file: Callable[[Path], Any]  # one file in the task's format -> Dataset
    load_hub: Callable[[str, str | None, str], Any]  # (hub name, config, split) -> Dataset
    data_file: Callable[[Mapping[str, str], str, str], Path | None]  # (data fields, language, split) -> file; None: split absent
    prepare_features: Callable[[Any, Any, bool, int], Any]  # (examples, tokenizer, train, max_length) -> features
    collator: Callable[[Any], Callable]  # tokenizer -> collate_fn for training batches
    # (model, examples, features, tokenizer, runtime, batch_size, per_example=False) -> metrics; with
    # per_example=True also the per-example scores a paired bootstrap needs (see bench.report.significance)
    evaluate: Callable[..., dict[str, Any]]
    labels: tuple[str, ...] = ()  # label names of a classification head (its id2label), () for span heads
    select_metric: str = "f1"  # dev metric that selects the best checkpoint (greater is better)
    metrics: tuple[str, ...] = ("f1",)  # what the reports show, the first being the headline
    default_max_length: int = 128
    min_length: int = 1  # the shortest max_length its feature preparation accepts (suite validation checks it)
    example_noun: str = "examples"  # suite caps are max_train_<noun> / max_eval_<noun>
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # suite defaults (the paper's §5.2)
    low_resource_below: int | None = None  # fewer training examples: the suite's batch_size_low_resource
    # offline suites: writes synthetic data in the real formats under a root, at ``synthetic_fields``
    # (data field -> path relative to that root); sizes come from the suite's synthetic data block
    write_synthetic: Callable[[Path, Sequence[str], Mapping[str, int]], None] | None = None
    synthetic_fields: Mapping[str, str] = field(default_factory=dict)
    assumed_train_examples: Callable[[str], int] = lambda language: 1000  # bench plan, when sizes are unknown
    assumed_tokens_per_example: int = 32

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"task name {self.name!r} must be letters, digits, '-' or '_'")
        if self.select_metric not in self.metrics:
            raise ValueError(f"task {self.name!r}: select_metric {self.select_metric!r} is not among its metrics {self.metrics}")

    def head_kwargs(self) -> dict[str, Any]:
        if not self.labels:
            return {}
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": {label: i for i, label in enumerate(self.labels)}}

    def load_model(self, name_or_path: str, **kwargs):
        """The model with this task's head (new and randomly initialised if the checkpoint lacks it)."""
        import transformers

        return getattr(transformers, self.model_class).from_pretrained(name_or_path, **{**self.head_kwargs(), **kwargs})

    def load(self, source: str | Path, split: str = "test"):
        """A file in the task's format, or ``hub:NAME[:CONFIG]`` (needs internet)."""
        text = str(source)
        if text.startswith("hub:"):
            name, _, config = text[4:].partition(":")
            return self.load_hub(name, config or None, split)
        return self.load_file(Path(source))

    def train_cap(self, hyper: Mapping[str, Any]) -> int | None:
        return hyper.get(f"max_train_{self.example_noun}")

    def eval_cap(self, hyper: Mapping[str, Any]) -> int | None:
        return hyper.get(f"max_eval_{self.example_noun}")


_BUILTIN: dict[str, str] = {"ner": "madx.tasks.ner:TASK", "qa": "madx.tasks.qa:TASK"}
_REGISTRY: dict[str, TaskSpec] = {}


class UnknownTaskError(ValueError):
    pass


def task_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY]))


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    if not replace and spec.name in task_names():
        raise ValueError(f"a task named {spec.name!r} is already registered (pass replace=True to replace it)")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    _REGISTRY.pop(name, None)


def get_task(name: str) -> TaskSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        module, _, attribute = _BUILTIN[name].partition(":")
        spec = getattr(importlib.import_module(module), attribute)
        _REGISTRY.setdefault(name, spec)
        return _REGISTRY[name]
    nearest = difflib.get_close_matches(str(name), task_names(), n=1)
    hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
    raise UnknownTaskError(f"unknown task {name!r}; known: {', '.join(task_names())}.{hint}")
