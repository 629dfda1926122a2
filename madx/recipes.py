"""The paper's training settings: one row per (method family, phase, task).

Pfeiffer et al. (2020), §5.2 ("MAD-X: Experimental Setup"):

* MLM on a language's Wikipedia text: 250,000 steps, batch 64, learning rate 1e-4 for adapters
  (language + invertible) and 5e-5 for the whole model (XLM-R MLM-SRC / MLM-TRG).
* NER: 100 epochs, batch 16 (8 for low-resource languages), learning rate 1e-4 for adapters and
  5e-5 for the whole model (XLM-R, and the MLM-SRC / MLM-TRG models); best dev checkpoint.

§5 gives no QA settings and no sequence lengths: those fields are this project's choice, and each
row says which of its fields the paper states (``from_paper``) and where the others come from
(``note``).

    recipe("madx", "mlm").learning_rate          # 1e-4: the language adapter's MLM
    recipe("full-ft", "task", "ner").learning_rate  # 5e-5
    suite_defaults("task", "ner")               # the suite's ``ner:`` section

This table is the one place these values live: the suites' defaults (``bench/suite.py`` and the
task specs' ``hyperparameters``), the task specs' default sequence lengths and the CLI's defaults
(``train-lang``, ``train-task``) read it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any

from madx.variants import VARIANTS, get_variant

FAMILIES: tuple[str, ...] = ("adapters", "full-model")  # what a phase trains: adapters only, or the whole model
PHASES: tuple[str, ...] = ("mlm", "task")  # language adaptation with masked LM, then training on the task


@dataclass(frozen=True)
class Recipe:
    family: str  # one of FAMILIES
    phase: str  # one of PHASES
    task: str | None  # None for the MLM phase (the same for every task)
    learning_rate: float
    batch_size: int
    max_length: int  # tokens per sequence: the MLM block, or the task's input (QA: its window)
    steps: int | None = None  # MLM phase: optimizer steps
    epochs: int | None = None  # task phase: passes over the training set
    batch_size_low_resource: int | None = None  # a smaller training set's batch (the task spec says "smaller")
    from_paper: tuple[str, ...] = ()  # the fields §5.2 states
    note: str = ""  # where the other fields come from

    def __post_init__(self) -> None:
        where = f"recipe ({self.family}, {self.phase}, {self.task})"
        if self.family not in FAMILIES:
            raise ValueError(f"{where}: family must be one of {', '.join(FAMILIES)}")
        if self.phase not in PHASES:
            raise ValueError(f"{where}: phase must be one of {', '.join(PHASES)}")
        if self.phase == "mlm" and (self.task is not None or self.steps is None or self.epochs is not None):
            raise ValueError(f"{where}: an MLM recipe has steps, no epochs and no task")
        if self.phase == "task" and (self.task is None or self.epochs is None or self.steps is not None):
            raise ValueError(f"{where}: a task recipe names its task and has epochs, no steps")
        for name in ("learning_rate", "batch_size", "max_length", "steps", "epochs", "batch_size_low_resource"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{where}: {name} must be positive, got {value!r}")
        unknown = set(self.from_paper) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"{where}: from_paper names no field {sorted(unknown)}")

    @property
    def key(self) -> tuple[str, str, str | None]:
        return self.family, self.phase, self.task


_MLM = ("steps", "batch_size", "learning_rate")
_NER = ("epochs", "batch_size", "batch_size_low_resource", "learning_rate")
_MLM_NOTE = "max_length (256-token blocks) is ours: §5.2 does not state it"
_NER_NOTE = "max_length (128 subword tokens per sentence) is ours: §5.2 does not state it"
_QA_NOTE = ("§5 gives no QA settings: epochs, batch size, the full model's learning rate and the 384-token window are "
            "this project's choice (common SQuAD fine-tuning values); adapters keep §5.2's 1e-4")

RECIPES: tuple[Recipe, ...] = (
    Recipe("adapters", "mlm", None, learning_rate=1e-4, batch_size=64, max_length=256, steps=250000,
           from_paper=_MLM, note=_MLM_NOTE),
    Recipe("full-model", "mlm", None, learning_rate=5e-5, batch_size=64, max_length=256, steps=250000,
           from_paper=_MLM, note=_MLM_NOTE),
    Recipe("adapters", "task", "ner", learning_rate=1e-4, batch_size=16, batch_size_low_resource=8, max_length=128,
           epochs=100, from_paper=_NER, note=_NER_NOTE),
    Recipe("full-model", "task", "ner", learning_rate=5e-5, batch_size=16, batch_size_low_resource=8, max_length=128,
           epochs=100, from_paper=_NER, note=_NER_NOTE),
    Recipe("adapters", "task", "qa", learning_rate=1e-4, batch_size=16, max_length=384, epochs=3,
           from_paper=("learning_rate",), note=_QA_NOTE),
    Recipe("full-model", "task", "qa", learning_rate=3e-5, batch_size=16, max_length=384, epochs=3, note=_QA_NOTE),
)
_BY_KEY: dict[tuple[str, str, str | None], Recipe] = {r.key: r for r in RECIPES}
assert len(_BY_KEY) == len(RECIPES), "one row per (family, phase, task)"


class UnknownRecipeError(ValueError):
    pass


def _choose(kind: str, word: Any, known: tuple[str, ...]) -> str:
    if word in known:
        return word
    near = difflib.get_close_matches(str(word), known, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise UnknownRecipeError(f"unknown {kind} {word!r}; known: {', '.join(known)}.{hint}")


def family(method: str, phase: str) -> str:
    """What ``method`` (a method name, e.g. ``madx``, or a family name) trains in ``phase``."""
    phase = _choose("phase", phase, PHASES)
    if method in FAMILIES:
        return method
    if method not in VARIANTS:
        _choose("method", method, (*VARIANTS, *FAMILIES))
    variant = get_variant(method)
    if phase == "task":
        return "adapters" if variant.task_adapter else "full-model"
    if variant.language_adapters:
        return "adapters"
    if variant.full_model_mlm:
        return "full-model"
    with_mlm = ", ".join(name for name, v in VARIANTS.items() if v.needs_language_mlm)
    raise UnknownRecipeError(f"method {method!r} has no MLM phase (it trains on the task only); methods with one: {with_mlm}")


def tasks(phase: str = "task") -> tuple[str, ...]:
    """The tasks the table has settings for."""
    return tuple(dict.fromkeys(r.task for r in RECIPES if r.phase == phase and r.task is not None))


def recipe(method: str, phase: str, task: str | None = None) -> Recipe:
    """The paper's settings for ``method`` (a method name or family) in ``phase`` (and ``task``, for the task phase)."""
    chosen = family(method, phase)
    if phase == "mlm":
        if task is not None:
            raise UnknownRecipeError(f"the MLM phase is the same for every task: recipe({method!r}, 'mlm') takes no task "
                                     f"(got {task!r})")
        return _BY_KEY[(chosen, "mlm", None)]
    if task is None:
        raise UnknownRecipeError(f"recipe({method!r}, 'task') needs a task; known: {', '.join(tasks())}")
    return _BY_KEY[(chosen, "task", _choose("task", task, tasks()))]


def suite_defaults(phase: str, task: str | None = None) -> dict[str, Any]:
    """A suite's hyperparameter section for ``phase`` (``mlm:``) or ``task`` (``ner:``, ``qa:``): one learning
    rate per family (``lr_adapters``, ``lr_full_model``), the fields both families share once."""
    adapters, full = recipe("adapters", phase, task), recipe("full-model", phase, task)
    shared = ("steps", "batch_size", "max_length") if phase == "mlm" else ("epochs", "batch_size",
                                                                            "batch_size_low_resource", "max_length")
    for name in shared:
        if getattr(adapters, name) != getattr(full, name):  # a suite section has one of each
            raise ValueError(f"recipes ({phase}, {task}): {name} differs between families; a suite section has one")
    if phase == "mlm":
        return {"steps": adapters.steps, "batch_size": adapters.batch_size, "lr_adapters": adapters.learning_rate,
                "lr_full_model": full.learning_rate, "max_seq_length": adapters.max_length}
    section = {"epochs": adapters.epochs, "batch_size": adapters.batch_size}
    if adapters.batch_size_low_resource is not None:
        section["batch_size_low_resource"] = adapters.batch_size_low_resource
    return {**section, "lr_adapters": adapters.learning_rate, "lr_full_model": full.learning_rate,
            "max_length": adapters.max_length}
