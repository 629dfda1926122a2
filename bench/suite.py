"""Suites as data: a YAML file names the base model, tasks, languages, methods, seeds, data
locations and hyperparameters (defaults, then per-method overrides). ``load_suite`` validates it
and names the file and field of every problem.

Strings may use ``${VAR}`` / ``${VAR:-default}`` (environment). Relative data paths resolve against
the working directory, not the suite file's folder: the shipped suites read ``${MADX_DATA:-data}``,
the folder ``madx data fetch --out`` writes, so one suite runs on any machine where its data lies.

What validates runs: besides the file's structure, ``bench.preflight`` checks before the first job
what the jobs will need (the model and its architecture, sequence lengths against its positions,
adapter sizes, languages, data files).
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

from bench import preflight
from bench.preflight import PreflightError
from madx.adapters.config import INITS, AdapterConfig
from madx.data.languages import get_language
from madx.recipes import suite_defaults
from madx.runtime import COMPILE, MIXED_PRECISION
from madx.tasks.registry import UnknownTaskError, get_task, task_names
from madx.variants import VARIANTS, get_variant

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
    # data as the file writes it (``${MADX_DATA}``) and after expansion, before resolution: for messages
    data_templates: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def shipped(self) -> bool:
        """One of the suites in ``bench/suites/`` (not a user's file)."""
        return self.path is not None and Path(self.path).resolve().parent == SUITES_DIR

    def data_variables(self, key: str) -> list[str]:
        """The environment variables ``data.key`` names as the file writes it (``${MADX_DATA}``)."""
        written = self.data_templates.get(key, (None, None))[0]
        return [match.group(1) for match in _VAR.finditer(written)] if isinstance(written, str) else []

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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys and drops the first without a word: refuse them."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"field {key!r} appears twice in one mapping (lines {seen[key]} and {line}); "
                                f"YAML would keep only the second", key_node.start_mark)
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def read_suite_text(path: Path, source: str) -> str:
    """The file's text (UTF-8, a BOM allowed); a file in another encoding names the line, column and byte."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SuiteError(f"{source}: no such suite file") from None
    except OSError as error:
        raise SuiteError(f"{source}: cannot read the suite file: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line, column = data.count(b"\n", 0, error.start) + 1, error.start - line_start + 1
        raise SuiteError(f"{source}: line {line}, column {column} (byte {error.start}): not UTF-8 text (byte "
                         f"0x{data[error.start]:02x}); save the suite file as UTF-8") from None


def load_suite(name_or_path: str, check_paths: bool = True) -> Suite:
    path = resolve_suite_path(name_or_path)
    source = str(path)
    text = read_suite_text(path, source)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise SuiteError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{source}: expected a mapping at the top level")
    templates = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    raw = _expand(raw, "suite", source)
    return parse_suite(raw, source, path, check_paths, templates=templates)


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
    "adapters.init_weights": INITS,
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
        if isinstance(value, float) and not value.is_integer():  # every such setting counts steps or examples
            raise SuiteError(f"{source}: {where} must be a whole number or null, got {value!r}")
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


TASK_KEYS = ("sources", "targets", "methods")


def _listed(spec: dict, key: str, source: str, where: str) -> list:
    """A non-empty list with no value twice (the graph would silently run it once)."""
    values = _require(spec, key, list, source, where)
    if not values:
        raise SuiteError(f"{source}: {where}{key} is empty: the suite would run nothing for it")
    repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if repeated is not None:
        raise SuiteError(f"{source}: {where}{key} lists {repeated!r} twice")
    return values


def _parse_tasks(raw: dict, source: str) -> tuple[dict, dict, dict]:
    tasks_raw = _require(raw, "tasks", dict, source)
    if not tasks_raw:
        raise SuiteError(f"{source}: tasks is empty; known tasks: {', '.join(task_names())}")
    sources, targets, methods = {}, {}, {}
    for task, spec in tasks_raw.items():
        try:
            get_task(task)
        except UnknownTaskError as error:
            raise SuiteError(f"{source}: tasks: {error}") from None
        if not isinstance(spec, dict):
            raise SuiteError(f"{source}: tasks.{task} must be a mapping with sources, targets, methods")
        unknown = [key for key in spec if key not in TASK_KEYS]
        if unknown:
            raise SuiteError(f"{source}: unknown field tasks.{task}.{unknown[0]}; known: {', '.join(TASK_KEYS)}."
                             f"{_did_you_mean(unknown[0], TASK_KEYS)}")
        for key, store in (("sources", sources), ("targets", targets)):
            langs = _listed(spec, key, source, f"tasks.{task}.")
            for lang in langs:
                try:
                    get_language(lang)
                except KeyError as error:
                    raise SuiteError(f"{source}: tasks.{task}.{key}: {error}") from None
            store[task] = tuple(langs)
        task_methods = _listed(spec, "methods", source, f"tasks.{task}.")
        for method in task_methods:
            if method not in VARIANTS:
                raise SuiteError(f"{source}: tasks.{task}.methods: unknown method {method!r}; known: "
                                 f"{', '.join(VARIANTS)}.{_did_you_mean(method, VARIANTS)}")
        methods[task] = tuple(task_methods)
    return sources, targets, methods


def _seeds(raw: dict, key: str, default: list | None, source: str) -> list[int]:
    seeds = raw[key] if key in raw or default is None else default
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SuiteError(f"{source}: {key} must be a non-empty list of integers, got {seeds!r}")
    return _listed({key: seeds}, key, source, "")


def _mapping(raw: dict, key: str, source: str) -> dict:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(f"{source}: {key} must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _check_task_sections(update: dict, where: str, tasks: dict, source: str) -> None:
    """Settings of a task the suite does not run would change nothing: most likely the task is missing."""
    for key in update:
        if key in task_names() and key not in tasks:
            raise SuiteError(f"{source}: {where}.{key}: this suite runs no {key} task (its tasks: {', '.join(tasks)}); "
                             f"the settings would change nothing")


def _parse_model(raw: dict, source: str) -> dict[str, Any]:
    model = _require(raw, "model", (str, dict), source)
    model = {"name_or_path": model} if isinstance(model, str) else model
    unknown = [key for key in model if key not in ("name_or_path", "tiny")]
    if unknown or len(model) != 1:
        extra = f"unknown field model.{unknown[0]}{_did_you_mean(unknown[0], ('name_or_path', 'tiny'))}; " if unknown else ""
        raise SuiteError(f"{source}: {extra}model must be a hub name or local folder, or a mapping with one of "
                         f"'name_or_path' or 'tiny' (a config)")
    if "name_or_path" in model and (not isinstance(model["name_or_path"], str) or not model["name_or_path"].strip()):
        raise SuiteError(f"{source}: model.name_or_path must be a hub name or a folder, got {model['name_or_path']!r}")
    return model


def _check_data(data: dict, model: dict, tasks: dict, sources: dict, targets: dict, methods: dict, source: str) -> None:
    if data.get("kind", "files") not in ("files", "synthetic"):
        raise SuiteError(f"{source}: data.kind must be 'files' (default) or 'synthetic', got {data.get('kind')!r}")
    if data.get("kind") == "synthetic":
        _check_synthetic(data, source)
        if "tiny" not in model:
            raise SuiteError(f"{source}: model: a synthetic suite's prepare job builds a tiny random model from "
                             f"model.tiny (a config); with a real model give data files (data.kind: files)")
        for task in tasks:
            for key, langs in (("sources", sources[task]), ("targets", targets[task])):
                absent = [lang for lang in langs if lang not in data["languages"]]
                if absent:
                    raise SuiteError(f"{source}: tasks.{task}.{key}: {', '.join(absent)} not among data.languages "
                                     f"({', '.join(data['languages'])}): the synthetic data has nothing for it")
        return
    fields = {"text", *(field for task in tasks for field in get_task(task).data_fields)}
    unknown = sorted(set(data) - fields - {"kind"})
    if unknown:
        raise SuiteError(f"{source}: unknown field data.{unknown[0]}; this suite's tasks read: "
                         f"{', '.join(sorted(fields))}.{_did_you_mean(unknown[0], fields)}")
    if "tiny" in model:
        raise SuiteError(f"{source}: model.tiny: only a synthetic suite (data.kind: synthetic) builds a tiny model; "
                         f"with data files give model: a hub name or a local folder")
    texts = sorted({m for ms in methods.values() for m in ms if get_variant(m).needs_language_mlm})
    if texts and data.get("text") is None:
        raise SuiteError(f"{source}: data.text is missing: {', '.join(texts)} train on each language's text "
                         f"(data.text: a folder of {{lang}}.txt files)")


def _resolve(value: Any, key: str) -> Any:
    """A data path, relative to the working directory (``${MADX_DATA}`` in the suite makes it machine-independent)."""
    if key == "kind" or not isinstance(value, str) or value.startswith("hub:"):
        return value
    return str((Path.cwd() / Path(value).expanduser()).resolve())


def parse_suite(raw: dict, source: str, path: Path | None = None, check_paths: bool = True,
                templates: dict | None = None) -> Suite:
    """``templates``: the data section as the file writes it (before ``${VAR}`` expansion), for messages."""
    unknown = [key for key in raw if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise SuiteError(f"{source}: unknown top-level field {unknown[0]!r}; known: {', '.join(TOP_LEVEL_KEYS)}."
                         f"{_did_you_mean(unknown[0], TOP_LEVEL_KEYS)}")
    name = _require(raw, "name", str, source)
    if not name.strip():
        raise SuiteError(f"{source}: name is empty")
    model = _parse_model(raw, source)
    sources, targets, methods = _parse_tasks(raw, source)
    tasks = dict.fromkeys(methods)
    run = {m for ms in methods.values() for m in ms}
    seeds = _seeds(raw, "seeds", None, source)
    mlm_trg_seeds = _seeds(raw, "mlm_trg_seeds", seeds[:1], source)
    if "mlm_trg_seeds" in raw and "mlm-trg" not in run:
        raise SuiteError(f"{source}: mlm_trg_seeds: no task of this suite runs mlm-trg, the only method they seed")
    defaults = default_hyperparameters()
    hyper = copy.deepcopy(defaults)
    given = _mapping(raw, "hyperparameters", source)
    _check_hyper(given, defaults, "hyperparameters", source)
    _check_task_sections(given, "hyperparameters", tasks, source)
    _merge(hyper, given)
    overrides = _mapping(raw, "overrides", source)
    for method, update in overrides.items():
        if method not in VARIANTS:
            raise SuiteError(f"{source}: overrides: unknown method {method!r}; known: {', '.join(VARIANTS)}."
                             f"{_did_you_mean(method, VARIANTS)}")
        if method not in run:
            raise SuiteError(f"{source}: overrides.{method}: no task of this suite runs {method} "
                             f"(methods: {', '.join(sorted(run))}); the override would change nothing")
        _check_hyper(update, defaults, f"overrides.{method}", source)
        _check_task_sections(update, f"overrides.{method}", tasks, source)
        if "runtime" in update:  # read once per worker (devices, ZeRO groups), never per method: it would be ignored
            raise SuiteError(f"{source}: overrides.{method}.runtime: runtime settings apply to every job of the run; "
                             f"set them under hyperparameters.runtime")
    notes = raw.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise SuiteError(f"{source}: notes must be a list of strings (one per note), got {notes!r}")
    data = _require(raw, "data", dict, source)
    _check_data(data, model, tasks, sources, targets, methods, source)
    written = {k: ((templates or data).get(k, v), v) for k, v in data.items()}
    suite = Suite(name=name, path=path, model=model, tasks=tuple(tasks), sources=sources, targets=targets,
                  methods=methods, seeds=tuple(seeds), mlm_trg_seeds=tuple(mlm_trg_seeds),
                  data={k: _resolve(v, k) for k, v in data.items()}, hyperparameters=hyper, overrides=overrides,
                  notes=tuple(notes), data_templates=written)
    try:
        preflight.check_model(suite, source, check_paths)
        if check_paths:
            preflight.check_data_paths(suite, source)
    except PreflightError as error:
        raise SuiteError(str(error)) from None
    return suite
