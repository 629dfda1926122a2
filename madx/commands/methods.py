"""Does a method fit the adapters it is given? ``train-task`` and ``evaluate`` check ``--method``
against the adapter files before loading anything, and say what differs: a MAD-X -INV run with a
language adapter that has an invertible part would silently train (or evaluate) full MAD-X, and
MAD-X 2.0 leaves the last layer without adapters."""

from __future__ import annotations

from pathlib import Path

from madx.commands.common import UsageError
from madx.variants import VARIANTS, Variant, get_variant

# the methods whose task phase train-task runs (MLM-SRC / MLM-TRG: full-ft on their MLM-adapted model)
TASK_METHODS: tuple[str, ...] = tuple(name for name, v in VARIANTS.items() if v.full_model_mlm is None)


def _expected_leave_out(variant: Variant, num_layers: int) -> list[int]:
    return sorted({i % num_layers for i in variant.leave_out})


def _layers(indices) -> str:
    return "none" if not indices else "layer " + ", ".join(map(str, indices))


def _with_variant(variant: Variant, invertible: bool, leave_out: list[int], num_layers: int) -> str:
    """The method that matches an adapter of this shape, for the message."""
    for name, other in VARIANTS.items():
        if (other.language_adapters and other.invertible_adapters == invertible
                and _expected_leave_out(other, num_layers) == leave_out):
            return name
    return "another method"


def check_adapters_fit(method: str, language, task, language_path: Path | None, task_path: Path | None,
                       evaluating: bool = False) -> None:
    """``language`` / ``task``: the adapters' ``AdapterFileConfig`` (None where not given)."""
    variant = get_variant(method)
    verb = "evaluates" if evaluating else "trains"
    if variant.language_adapters and language is None:
        raise UsageError(f"--method {method} needs --language-adapter (the {'target' if evaluating else 'source'} "
                         "language's adapter, stacked under the task adapter)")
    if not variant.language_adapters and language is not None:
        raise UsageError(f"--method {method} uses no language adapter, but --language-adapter {language_path} is given; "
                         "drop it, or pick a MAD-X method (madx, madx-inv, madx2, madx2-inv)")
    if evaluating and variant.uses_adapters and task is None:
        raise UsageError(f"--method {method} needs --task-adapter (the task adapter, saved with its head)")
    if not variant.uses_adapters and task is not None:
        raise UsageError(f"--method {method} trains the whole model and has no task adapter, but --task-adapter "
                         f"{task_path} is given; pass the fine-tuned model as --model instead")
    if language is not None:
        invertible = language.invertible_bottleneck_size is not None
        if invertible != variant.invertible_adapters:
            match = _with_variant(variant, invertible, sorted(language.leave_out), language.num_layers)
            if variant.invertible_adapters:
                has, fix = "has none (train-lang --no-invertible made it)", "a language adapter trained without --no-invertible"
            else:
                has, fix = "has one", "a language adapter trained with --no-invertible"
            raise UsageError(f"--method {method} {verb} {'with' if variant.invertible_adapters else 'without'} an invertible "
                             f"adapter, but --language-adapter {language_path} {has}; use --method {match}, or {fix}")
        _check_leave_out(method, variant, language, language_path, "--language-adapter",
                         "train-lang --leave-out -1 makes MAD-X 2.0's language adapters")
    if task is not None and variant.uses_adapters:
        _check_leave_out(method, variant, task, task_path, "--task-adapter", "train-task --method madx2 makes MAD-X 2.0's")


def _check_leave_out(method: str, variant: Variant, config, path, flag: str, how: str) -> None:
    expected = _expected_leave_out(variant, config.num_layers)
    if sorted(config.leave_out) != expected:
        actual = sorted(config.leave_out)
        wants = f"leaves {_layers(expected)} without adapters" if expected else "puts adapters in every layer"
        has = f"leaves out {_layers(actual)}" if actual else "has adapters in every layer"
        raise UsageError(f"--method {method} {wants}, but {flag} {path} {has}; {how}")
