"""Suites as data: a YAML file names the base model, tasks, languages, methods, seeds, data
locations and hyperparameters (defaults, then per-method overrides). ``load_suite`` validates it
and names the file and field of every problem.

Strings may use ``${VAR}`` / ``${VAR:-default}`` (environment) and relative paths are relative
to the suite file, so one suite runs on any machine where its data lies.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from madx.adapters.config import AdapterConfig
from madx.data.languages import get_language
from madx.recipes import suite_defaults
from madx.runtime import COMPILE, MIXED_PRECISION
from madx.tasks.registry import UnknownTaskError, get_task, task_names
from madx.variants import VARIANTS

SUITES_DIR = Path(__file__).resolve().parent / "suites"
_SHARED_DEFAULTS: dict[str, Any] = {
    "adapters": AdapterConfig().to_dict(),
    "mlm": {**suite_defaults("mlm"), "eval_every": 10000},  # the paper's (madx.recipes); dev loss every 10k steps: ours
    # zero_group_size > 1: full-model jobs run data-parallel over that many processes with DeepSpeed ZeRO;
    # compile: torch.compile of the MLM step, "auto" (on CUDA), "yes" or "no" (the opt-out)
    "runtime": {"mixed_precision": "no", "cpu_threads_per_worker": 1, "lease_seconds": 120, "zero_stage": 2,
                "zero_group_size": 1, "compile": "auto"},
}


def default_hyperparameters() -> dict[str, Any]:
    """The suite defaults: shared sections, and one section per registered task (its spec's). The paper's
    settings (learning rates, steps/epochs, batch sizes, sequence lengths) come from ``madx.recipes``."""
    tasks = {name: dict(get_task(name).hyperparameters) for name in task_names()}
    return copy.deepcopy({"adapters": _SHARED_DEFAULTS["adapters"], "mlm": _SHARED_DEFAULTS["mlm"], **tasks,
                          "runtime": _SHARED_DEFAULTS["runtime"]})


class SuiteError(ValueError):
    pass


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path | None
    model: dict[str, Any]  # {"name_or_path": ...} or {"tiny": {...config...}}
    tasks: tuple[str, ...]
    sources: dict[str, tuple[str, ...]]  # task -> source languages
    targets: dict[str, tuple[str, ...]]  # task -> target languages
    methods: dict[str, tuple[str, ...]]  # task -> methods
    seeds: tuple[int, ...]
    mlm_trg_seeds: tuple[int, ...]  # the paper runs MLM-TRG once per pair
    data: dict[str, Any]
    hyperparameters: dict[str, Any]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> partial hyperparameters
    notes: tuple[str, ...] = ()

    def hyper(self, method: str | None = None) -> dict[str, Any]:
        merged = copy.deepcopy(self.hyperparameters)
        if method and method in self.overrides:
            _merge(merged, self.overrides[method])
        return merged


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: str, source: str) -> Any:
    if isinstance(value, str):
        def substitute(match):
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise SuiteError(f"{source}: {where} uses ${{{name}}}, which is not set (export it or give a default: ${{{name}:-...}})")
        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", source) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    return value


def resolve_suite_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = SUITES_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
    raise SuiteError(f"no suite {name_or_path!r}: not a file, and not one of the shipped suites ({', '.join(known)})")


def load_suite(name_or_path: str, check_paths: bool = True) -> Suite:
    path = resolve_suite_path(name_or_path)
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"{source}: no such suite file") from None
    except yaml.YAMLError as error:
        raise SuiteError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{source}: expected a mapping at the top level")
    raw = _expand(raw, "suite", source)
    return parse_suite(raw, source, path, check_paths)


def _require(raw: dict, key: str, kind, source: str, where: str = ""):
    if key not in raw:
        raise SuiteError(f"{source}: missing field {where}{key}")
    value = raw[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SuiteError(f"{source}: field {where}{key} must be {names}, got {type(value).__name__} {value!r}")
    return value


# Settings with a fixed set of values, by their path under hyperparameters. YAML reads a bare
# yes/no as a boolean, so compile takes true/false as well as its words.
CHOICES: dict[str, tuple[Any, ...]] = {
    "runtime.mixed_precision": MIXED_PRECISION,
    "runtime.compile": (*COMPILE, True, False),
    "runtime.zero_stage": (1, 2),
}
TOP_LEVEL_KEYS = ("name", "model", "data", "tasks", "seeds", "mlm_trg_seeds", "hyperparameters", "overrides", "notes")
SYNTHETIC_SIZES = ("ner_train", "ner_dev", "ner_test", "text_lines", "qa_train", "qa_eval")


def compile_setting(value: str | bool) -> str:
    """The runtime's compile word for a suite value (true/false as YAML reads yes/no)."""
    return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


def _check_hyper(value: Any, default: Any, where: str, source: str) -> None:
    setting = where.split(".", 1)[1] if "." in where else ""
    if setting in CHOICES:
        if value not in CHOICES[setting]:
            shown = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in CHOICES[setting])
            raise SuiteError(f"{source}: {where} must be one of {shown}, got {value!r}")
        return
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise SuiteError(f"{source}: {where} must be a mapping, got {value!r}")
        for key, sub in value.items():
            if key not in default:
                raise SuiteError(f"{source}: unknown hyperparameter {where}.{key}; known: {', '.join(default)}")
            _check_hyper(sub, default[key], f"{where}.{key}", source)
        return
    if value is None or default is None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SuiteError(f"{source}: {where} must be a number or null, got {value!r}")
        if value is not None and not value > 0:
            raise SuiteError(f"{source}: {where} must be positive or null, got {value!r}")
        return
    if isinstance(default, bool) or isinstance(default, str):
        if type(value) is not type(default):
            raise SuiteError(f"{source}: {where} must be {type(default).__name__}, got {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SuiteError(f"{source}: {where} must be a number, got {value!r}")
        if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise SuiteError(f"{source}: {where} must be a whole number, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not value > 0:
        raise SuiteError(f"{source}: {where} must be positive, got {value!r}")  # every size, rate and count here


def _did_you_mean(word: str, known) -> str:
    near = difflib.get_close_matches(str(word), list(known), n=1)
    return f" Did you mean {near[0]!r}?" if near else ""


def _check_synthetic(data: dict, source: str) -> None:
    languages = data.get("languages")
    if not isinstance(languages, list) or not languages:
        raise SuiteError(f"{source}: data.languages must be a non-empty list for a synthetic suite, got {languages!r}")
    for lang in languages:
        try:
            get_language(lang)  # also keeps file names derived from it inside the run directory
        except (KeyError, TypeError) as error:
            raise SuiteError(f"{source}: data.languages: {error}") from None
    for key in SYNTHETIC_SIZES:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SuiteError(f"{source}: data.{key} must be a positive whole number for a synthetic suite, got {value!r}")
    unknown = sorted(set(data) - {"kind", "languages", *SYNTHETIC_SIZES})
    if unknown:
        raise SuiteError(f"{source}: unknown field data.{unknown[0]} for a synthetic suite; known: "
                         f"languages, {', '.join(SYNTHETIC_SIZES)}.{_did_you_mean(unknown[0], SYNTHETIC_SIZES)}")


def parse_suite(raw: dict, source: str, path: Path | None = None, check_paths: bool = True) -> Suite:
    unknown = [key for key in raw if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise SuiteError(f"{source}: unknown top-level field {unknown[0]!r}; known: {', '.join(TOP_LEVEL_KEYS)}."
                         f"{_did_you_mean(unknown[0], TOP_LEVEL_KEYS)}")
    name = _require(raw, "name", str, source)
    model = _require(raw, "model", (str, dict), source)
    model = {"name_or_path": model} if isinstance(model, str) else model
    if not ({"name_or_path"} <= set(model) or {"tiny"} <= set(model)):
        raise SuiteError(f"{source}: model must be a hub name/path, or a mapping with 'tiny' (a config) or 'name_or_path'")
    tasks_raw = _require(raw, "tasks", dict, source)
    sources, targets, methods = {}, {}, {}
    for task, spec in tasks_raw.items():
        try:
            get_task(task)
        except UnknownTaskError as error:
            raise SuiteError(f"{source}: tasks: {error}") from None
        if not isinstance(spec, dict):
            raise SuiteError(f"{source}: tasks.{task} must be a mapping with sources, targets, methods")
        for key, store in (("sources", sources), ("targets", targets)):
            langs = _require(spec, key, list, source, f"tasks.{task}.")
            for lang in langs:
                try:
                    get_language(lang)
                except KeyError as error:
                    raise SuiteError(f"{source}: tasks.{task}.{key}: {error}") from None
            store[task] = tuple(langs)
        task_methods = _require(spec, "methods", list, source, f"tasks.{task}.")
        for method in task_methods:
            if method not in VARIANTS:
                raise SuiteError(f"{source}: tasks.{task}.methods: unknown method {method!r}; known: "
                                 f"{', '.join(VARIANTS)}.{_did_you_mean(method, VARIANTS)}")
        methods[task] = tuple(task_methods)
    seeds = _require(raw, "seeds", list, source)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SuiteError(f"{source}: seeds must be a non-empty list of integers, got {seeds!r}")
    mlm_trg_seeds = raw.get("mlm_trg_seeds", seeds[:1])
    if not isinstance(mlm_trg_seeds, list) or not mlm_trg_seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in mlm_trg_seeds):
        raise SuiteError(f"{source}: mlm_trg_seeds must be a non-empty list of integers, got {mlm_trg_seeds!r}")
    defaults = default_hyperparameters()
    hyper = copy.deepcopy(defaults)
    given = raw.get("hyperparameters", {}) or {}
    _check_hyper(given, defaults, "hyperparameters", source)
    _merge(hyper, given)
    overrides = raw.get("overrides", {}) or {}
    for method, update in overrides.items():
        if method not in VARIANTS:
            raise SuiteError(f"{source}: overrides: unknown method {method!r}; known: {', '.join(VARIANTS)}."
                             f"{_did_you_mean(method, VARIANTS)}")
        _check_hyper(update, defaults, f"overrides.{method}", source)
        if "runtime" in update:  # read once per worker (devices, ZeRO groups), never per method: it would be ignored
            raise SuiteError(f"{source}: overrides.{method}.runtime: runtime settings apply to every job of the run; "
                             f"set them under hyperparameters.runtime")
    data = _require(raw, "data", dict, source)
    if data.get("kind", "files") not in ("files", "synthetic"):
        raise SuiteError(f"{source}: data.kind must be 'files' (default) or 'synthetic', got {data.get('kind')!r}")
    if data.get("kind") == "synthetic":
        _check_synthetic(data, source)
    else:
        fields = {"text", *(field for task in tasks_raw for field in get_task(task).data_fields)}
        unknown = sorted(set(data) - fields - {"kind"})
        if unknown:
            raise SuiteError(f"{source}: unknown field data.{unknown[0]}; this suite's tasks read: "
                             f"{', '.join(sorted(fields))}.{_did_you_mean(unknown[0], fields)}")
    base_dir = path.parent if path is not None else Path.cwd()
    data = {k: (str((base_dir / v).resolve()) if isinstance(v, str) and k != "kind" and not v.startswith("hub:") else v) for k, v in data.items()}
    suite = Suite(name=name, path=path, model=model, tasks=tuple(tasks_raw), sources=sources, targets=targets,
                  methods=methods, seeds=tuple(seeds), mlm_trg_seeds=tuple(mlm_trg_seeds), data=data,
                  hyperparameters=hyper, overrides=overrides, notes=tuple(raw.get("notes", [])))
    if check_paths:
        check_data_paths(suite, source)
    return suite


def check_data_paths(suite: Suite, source: str) -> None:
    model = suite.model.get("name_or_path")
    if isinstance(model, str) and model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        raise SuiteError(f"{source}: model = {model} does not exist (a local path; hub names look like 'xlm-roberta-base')")
    if suite.data.get("kind") == "synthetic":
        return
    for key, value in suite.data.items():
        if key == "kind" or not isinstance(value, str) or value.startswith("hub:"):
            continue
        if not Path(value).exists():
            raise SuiteError(f"{source}: data.{key} = {value} does not exist")
    check_task_files(suite, source)


def check_task_files(suite: Suite, source: str) -> None:
    """Every file the suite's jobs will read: train/dev for each source, test for each target."""
    for task in suite.tasks:
        spec = get_task(task)
        fields = {name: suite.data.get(name) for name in spec.data_fields}
        if any(isinstance(v, str) and v.startswith("hub:") for v in fields.values()):
            continue  # resolved online by the loaders
        needed = [(lang, split) for lang in suite.sources[task] for split in ("train", "dev")]
        needed += [(lang, "test") for lang in suite.targets[task]]
        for lang, split in dict.fromkeys(needed):
            try:
                file = spec.data_file({k: v for k, v in fields.items() if v is not None}, lang, split)
            except KeyError as error:
                raise SuiteError(f"{source}: task {task} needs data.{error.args[0]} (it reads {', '.join(spec.data_fields)})") from None
            except FileNotFoundError as error:
                if split == "dev":
                    continue  # a missing dev split falls back to part of train
                raise SuiteError(f"{source}: task {task}, {split} for {lang}: {error}") from None
            if file is not None and not file.is_file():
                if split == "dev":
                    continue
                raise SuiteError(f"{source}: task {task}, {split} for {lang}: no file {file}")
