"""The methods compared in the paper (§5.1–5.2), as data, selectable by name.

Each variant says which adapters it uses, whether the whole model is first adapted with MLM (the
baselines MLM-SRC / MLM-TRG) and what each training phase trains:

* MLM phase of an adapter variant: the language adapter (+ invertible adapter) only; base and
  MLM head frozen.
* task phase of an adapter variant: the task adapter + the task head only; language and
  invertible adapters fixed.
* baselines: the whole model, in both phases.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from madx.compose.stack import Stack


# MLM jobs: a language adapter with its invertible adapter, one without, or the whole model
MLM_MODES = ("adapter+inv", "adapter", "full")


@dataclass(frozen=True)
class Variant:
    name: str
    paper_name: str
    language_adapters: bool
    invertible_adapters: bool
    task_adapter: bool
    full_model_mlm: Literal["source", "target"] | None = None  # baselines MLM-SRC / MLM-TRG

    def __post_init__(self) -> None:
        if self.invertible_adapters and not self.language_adapters:
            raise ValueError(f"{self.name}: invertible adapters belong to language adapters")
        if self.language_adapters and not self.task_adapter:
            raise ValueError(f"{self.name}: language adapters need a task adapter on top")
        if self.full_model_mlm and self.task_adapter:
            raise ValueError(f"{self.name}: full-model MLM baselines fine-tune the whole model")

    @property
    def mlm_mode(self) -> str | None:
        """What the method trains with MLM on a language's text (one of ``MLM_MODES``), or None."""
        if self.language_adapters:
            return "adapter+inv" if self.invertible_adapters else "adapter"
        return "full" if self.full_model_mlm else None

    @property
    def uses_adapters(self) -> bool:
        return self.task_adapter

    @property
    def needs_language_mlm(self) -> bool:
        """Does the variant train something with MLM on a language's text (adapters or full model)?"""
        return self.language_adapters or self.full_model_mlm is not None

    def task_setup(self, source: str, task: str) -> Stack | None:
        """The adapters active while training the task on ``source``."""
        if not self.task_adapter:
            return None
        return Stack(source, task) if self.language_adapters else Stack(task)

    def eval_setup(self, target: str, task: str) -> Stack | None:
        """The adapters active for zero-shot evaluation on ``target``: the target language swapped in."""
        return self.task_setup(target, task)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("madx", "MAD-X", language_adapters=True, invertible_adapters=True, task_adapter=True),
        Variant("madx-inv", "MAD-X –INV", language_adapters=True, invertible_adapters=False, task_adapter=True),
        Variant("madx-lad-inv", "MAD-X –LAD –INV", language_adapters=False, invertible_adapters=False, task_adapter=True),
        Variant("full-ft", "XLM-R", language_adapters=False, invertible_adapters=False, task_adapter=False),
        Variant("mlm-src", "XLM-R MLM-SRC", False, False, False, full_model_mlm="source"),
        Variant("mlm-trg", "XLM-R MLM-TRG", False, False, False, full_model_mlm="target"),
    )
}


# The paper's row order in Tables 2 and 5 (baselines first, MAD-X last): how reports sort methods.
PAPER_ROW_ORDER: tuple[str, ...] = ("full-ft", "mlm-src", "mlm-trg", "madx-lad-inv", "madx-inv", "madx")


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        nearest = difflib.get_close_matches(name, VARIANTS, n=1)
        hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
        raise ValueError(f"unknown method {name!r}; known: {', '.join(VARIANTS)}.{hint}") from None
