"""What trains: freeze the base, unfreeze adapters and heads, in one call; and a summary of what trains.

    madx.train_adapter(model, Stack("en", "ner"))   # MAD-X task phase: only "ner" and its head train
    madx.train_adapter(model, "qu")                  # MLM phase: only the language adapter "qu" trains
    print(madx.trainable_parameters(model))          # trainable: 3,712 of 110,720 parameters (3.35 %) ...

``train_adapter`` activates the setup, freezes every parameter and unfreezes the adapter on top of the
stack (the task adapter if there is one, else the language adapter; ``train=`` names others) and, for a
task adapter, its own task head. ``set_trainable`` is the lower-level call it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from madx.compose.stack import Stack
from madx.inject.model import (_is_added, _unwrap_ddp, adapter_set, as_stack, get_state, is_attached, resolve,
                               set_active, task_heads)
from madx.inject.spec import spec_for_model_type


def set_trainable(
    model: nn.Module, adapters: Sequence[str] = (), task_head: bool = False, base: bool = False
) -> list[str]:
    """Freeze everything, then unfreeze the named adapters, the task head(s) and/or the whole base.

    ``task_head``: the heads of the named task adapters; with no task adapter named, the model's own heads.
    Returns the names of the parameters that now require grad."""
    model = _unwrap_ddp(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if base:
        for name, parameter in model.named_parameters():
            if not _is_added(name):
                parameter.requires_grad_(True)
    kinds = get_state(model).kinds if adapters else {}
    for name in adapters:
        adapter_set(model, name).requires_grad_(True)
    if task_head:
        tasks = [name for name in adapters if kinds.get(name) == "task"]
        heads = [head for task in tasks for head in task_heads(model, task).values()] if tasks else list(task_heads(model).values())
        if not heads:
            owner = f"task adapter(s) {tasks}" if tasks else type(model).__name__
            raise ValueError(f"{owner} has no task head ({', '.join(spec_for_model_type(model.config.model_type).task_heads)})")
        for head in heads:
            head.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def train_adapter(model: nn.Module, setup: Stack | str | Sequence[str], train: Sequence[str] | None = None) -> "TrainableParameters":
    """Prepare ``model`` to train ``setup``: activate it, freeze the base and every other adapter, unfreeze
    ``train`` (default: the stack's top adapter, i.e. its task adapter, else its language adapter) and the
    heads of the task adapters among them. Returns the summary of what now trains."""
    model = _unwrap_ddp(model)
    stack = as_stack(setup)
    if stack is None:
        raise ValueError("train_adapter needs a setup to train (a name, a list of names or a Stack)")
    if not is_attached(model):
        raise ValueError(f"no adapter is loaded on this model; add {stack.names[-1]!r} first (madx.add_task_adapter / add_language_adapter)")
    language, task = resolve(model, stack)
    train = list(train) if train is not None else [task if task is not None else language]
    unknown = [name for name in train if name not in stack.names]
    if unknown:
        raise ValueError(f"{unknown} are not part of {stack}; train the adapters of the setup that runs")
    set_active(model, stack)
    kinds = get_state(model).kinds
    has_task = any(kinds[name] == "task" for name in train)
    set_trainable(model, adapters=train, task_head=has_task and any(task_heads(model, n) for n in train if kinds[n] == "task"))
    return trainable_parameters(model)


@dataclass(frozen=True)
class TrainableParameters:
    trainable: int
    total: int
    groups: dict[str, int]  # trainable parameters by group: "base", "adapter <name>", "head of <name>"

    @property
    def percent(self) -> float:
        return 100 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        parts = ", ".join(f"{group} {count:,}" for group, count in self.groups.items())
        return f"trainable: {self.trainable:,} of {self.total:,} parameters ({self.percent:.2f} %)" + (f": {parts}" if parts else "")


def trainable_parameters(model: nn.Module) -> TrainableParameters:
    """How many parameters train, of how many, and where (each shared tensor counted once)."""
    model = _unwrap_ddp(model)
    groups: dict[str, int] = {}
    trainable = total = 0
    for name, parameter in model.named_parameters():  # shared tensors (tied weights, invertible adapters) once
        total += parameter.numel()
        if not parameter.requires_grad:
            continue
        trainable += parameter.numel()
        group = _group(name)
        groups[group] = groups.get(group, 0) + parameter.numel()
    return TrainableParameters(trainable, total, groups)


def print_trainable_parameters(model: nn.Module) -> None:
    """PEFT's one-line summary: ``trainable params: 3,712 || all params: 110,720 || trainable%: 3.3526``."""
    summary = trainable_parameters(model)
    print(f"trainable params: {summary.trainable:,} || all params: {summary.total:,} || trainable%: {summary.percent:.4f}")


def _group(name: str) -> str:
    parts = name.split(".")
    for index, part in enumerate(parts[:-1]):
        if part in ("madx_adapters", "madx_invertible"):
            return f"adapter {parts[index + 1]}"
        if part == "madx_heads":
            return f"head of {parts[index + 1]}"
    return "base"


def check_trainable(model: nn.Module) -> None:
    """Refuse a forgotten setup: adapters active while base weights train (call ``madx.train_adapter``), or
    nothing trains at all."""
    model = _unwrap_ddp(model)
    summary = trainable_parameters(model)
    if not summary.trainable:
        raise ValueError("nothing to train: no parameter requires grad (see madx.train_adapter)")
    active = get_state(model).active if is_attached(model) else None
    if active is not None and summary.groups.get("base"):
        raise ValueError(f"{summary.groups['base']:,} base parameters would train while {active} is active; "
                         f"prepare adapter training with madx.train_adapter(model, {active}), or deactivate the adapters "
                         "(madx.set_active(model, None)) to train the base")
