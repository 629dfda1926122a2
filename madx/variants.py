"""The methods compared in the paper (§5.1–5.2), as data, selectable by name.

Each variant says which adapters it uses, whether the whole model is first adapted with MLM (the
baselines MLM-SRC / MLM-TRG) and what each training phase trains:

* MLM phase of an adapter variant: the language adapter (+ invertible adapter) only; base and
  MLM head frozen.
* task phase of an adapter variant: the task adapter + the task head only; language and
  invertible adapters fixed.
* baselines: the whole model, in both phases.

MAD-X 2.0 (``madx2``, ``madx2-inv``) is MAD-X (–INV) with the language and task adapters left out of
the last transformer layer (``leave_out=(-1,)``, AdapterHub's setting): its language adapters are
other MLM jobs than MAD-X's (``mlm_mode`` says which layers they leave out).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from madx.adapters.config import AdapterConfig
from madx.compose.stack import Stack


@dataclass(frozen=True)
class Variant:
    name: str
    paper_name: str
    language_adapters: bool
    invertible_adapters: bool
    task_adapter: bool
    full_model_mlm: Literal["source", "target"] | None = None  # baselines MLM-SRC / MLM-TRG
    leave_out: tuple[int, ...] = ()  # layers without language and task adapters (AdapterConfig.leave_out); MAD-X 2.0: (-1,)

    def __post_init__(self) -> None:
        if self.invertible_adapters and not self.language_adapters:
            raise ValueError(f"{self.name}: invertible adapters belong to language adapters")
        if self.language_adapters and not self.task_adapter:
            raise ValueError(f"{self.name}: language adapters need a task adapter on top")
        if self.full_model_mlm and self.task_adapter:
            raise ValueError(f"{self.name}: full-model MLM baselines fine-tune the whole model")
        if self.leave_out and not self.task_adapter:
            raise ValueError(f"{self.name}: leave_out places adapters; this method has none")
        AdapterConfig(leave_out=self.leave_out)  # validates the indices

    @property
    def mlm_mode(self) -> str | None:
        """What the method trains with MLM on a language's text (one of ``MLM_MODES``), or None: a language
        adapter with its invertible adapter ("adapter+inv"), one without ("adapter"), either without
        adapters in some layers ("adapter+inv,leave_out=-1"), or the whole model ("full")."""
        if self.language_adapters:
            mode = "adapter+inv" if self.invertible_adapters else "adapter"
            return mode + (f",leave_out={','.join(map(str, self.leave_out))}" if self.leave_out else "")
        return "full" if self.full_model_mlm else None

    def adapter_config(self, settings: Mapping[str, Any] | AdapterConfig = AdapterConfig()) -> AdapterConfig:
        """The adapters this method creates: ``settings`` (a suite's ``adapters`` section or a config) with the
        method's own settings (``leave_out``) put over them."""
        config = settings if isinstance(settings, AdapterConfig) else AdapterConfig.from_dict(dict(settings))
        return dataclasses.replace(config, leave_out=self.leave_out) if self.leave_out else config

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
        # MAD-X 2.0: no language or task adapter in the last layer (added after the paper; last, so the
        # order of the rows above, e.g. in Table 4, is what it was)
        Variant("madx2", "MAD-X 2.0", language_adapters=True, invertible_adapters=True, task_adapter=True, leave_out=(-1,)),
        Variant("madx2-inv", "MAD-X 2.0 –INV", language_adapters=True, invertible_adapters=False, task_adapter=True, leave_out=(-1,)),
    )
}

# What MLM jobs train, in the order of the methods that need them (see ``Variant.mlm_mode``).
MLM_MODES: tuple[str, ...] = tuple(dict.fromkeys(v.mlm_mode for v in VARIANTS.values() if v.mlm_mode))


# The paper's row order in Tables 2 and 5 (baselines first, MAD-X last): how reports sort methods.
# MAD-X 2.0 is not in the paper; its rows come after.
PAPER_ROW_ORDER: tuple[str, ...] = ("full-ft", "mlm-src", "mlm-trg", "madx-lad-inv", "madx-inv", "madx", "madx2-inv", "madx2")


def mlm_variant(mode: str) -> Variant:
    """The first method whose MLM job is ``mode`` (all methods of one mode train the same thing with MLM)."""
    for variant in VARIANTS.values():
        if variant.mlm_mode == mode:
            return variant
    raise ValueError(f"unknown MLM mode {mode!r}; known: {', '.join(MLM_MODES)}")


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        nearest = difflib.get_close_matches(name, VARIANTS, n=1)
        hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
        raise ValueError(f"unknown method {name!r}; known: {', '.join(VARIANTS)}.{hint}") from None
