"""What a suite's jobs will need, checked when it loads, before the first job starts.

A suite that validates must not fail hours later for a reason visible now:

* the model: a tiny config's architecture exists in transformers and in ``madx.inject`` (adapters
  know where to go), its fields are the config's own (transformers accepts any name silently);
  a local model folder holds a ``config.json`` of a supported architecture; a hub name is looked
  up in the local hub cache (never online), and must be there when ``HF_HUB_OFFLINE`` is set;
* what the jobs will ask of that model: every sequence length (MLM blocks, task inputs) within its
  position embeddings, adapter sizes that divide its hidden size, ``leave_out`` within its layers;
* data: every folder and file each (task, language, split) will read (``check_task_files``), the
  MLM text folder a folder, and each method with at least one language it can run on.

Relative paths resolve against the working directory; messages say where they looked and how to
point ``MADX_DATA`` at the data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from madx.adapters.config import AdapterConfig
from madx.data.languages import LANGUAGES
from madx.tasks.registry import get_task
from madx.variants import get_variant

if TYPE_CHECKING:
    from bench.suite import Suite

MLM_MIN_LENGTH = 3  # madx.data.mlm.build_mlm_dataset: a block holds <s>, one token and </s>
TINY_PAD_ID = 1  # the tiny tokenizer's <pad> (madx.data.tokenizer.SPECIAL_TOKENS), passed to the config by prepare
TINY_OWN_KEYS = ("arch", "vocab_size")  # read by the prepare job itself (vocab_size: the tokenizer's size)
TASK_SETTINGS = ("epochs", "batch_size", "lr_adapters", "lr_full_model", "max_length")  # what bench.execute's task job reads
ROBERTA_TYPES = ("xlm-roberta", "roberta")  # positions start after the padding index: pad_token_id + 1 + length


class PreflightError(ValueError):
    """A suite that would fail in a job; ``bench.suite`` raises it as its SuiteError."""


def _error(message: str) -> PreflightError:
    return PreflightError(message)


def _did_you_mean(word: str, known) -> str:
    import difflib

    near = difflib.get_close_matches(str(word), list(known), n=1)
    return f" Did you mean {near[0]!r}?" if near else ""


# -- the model --------------------------------------------------------------------------------------------------
def tiny_config(tiny: Any, source: str) -> dict[str, Any]:
    """The config a synthetic suite's prepare job will build from ``model.tiny``, checked field by field."""
    from transformers import CONFIG_MAPPING

    from madx.inject.spec import ARCHITECTURES

    if not isinstance(tiny, dict):
        raise _error(f"{source}: model.tiny must be a mapping of config fields (arch, hidden_size, ...), got {tiny!r}")
    arch = tiny.get("arch", "xlm-roberta")
    supported = [t for spec in ARCHITECTURES.values() for t in spec.model_types]
    if not isinstance(arch, str) or arch not in supported:
        exists = isinstance(arch, str) and arch in CONFIG_MAPPING
        why = "madx has no architecture entry for it (madx/inject/spec.py)" if exists else "no such architecture"
        raise _error(f"{source}: model.tiny.arch = {arch!r}: {why}; supported: {', '.join(supported)}."
                     f"{_did_you_mean(arch, supported)}")
    defaults = CONFIG_MAPPING[arch]().to_dict()
    for key, value in tiny.items():
        if key in TINY_OWN_KEYS and key != "vocab_size":
            continue
        if key not in defaults:
            known = sorted(k for k, v in defaults.items() if isinstance(v, (int, float)) and not k.startswith("_"))
            raise _error(f"{source}: model.tiny.{key} is not a field of {arch}'s config (transformers would ignore it); "
                         f"numeric fields: {', '.join(known)}.{_did_you_mean(key, defaults)}")
        if isinstance(defaults[key], int) and not isinstance(defaults[key], bool):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise _error(f"{source}: model.tiny.{key} must be a positive whole number, got {value!r}")
        elif isinstance(defaults[key], float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _error(f"{source}: model.tiny.{key} must be a number, got {value!r}")
    config = {**defaults, **{k: v for k, v in tiny.items() if k != "arch"}, "model_type": arch, "pad_token_id": TINY_PAD_ID}
    if config["hidden_size"] % config["num_attention_heads"]:
        raise _error(f"{source}: model.tiny: hidden_size {config['hidden_size']} is not a multiple of "
                     f"num_attention_heads {config['num_attention_heads']}")
    return config


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def model_config(suite: "Suite", source: str, check_paths: bool) -> dict[str, Any] | None:
    """The base model's config as a dict, or None where it cannot be known offline (a hub name not in the cache)."""
    if "tiny" in suite.model:
        return tiny_config(suite.model["tiny"], source)
    name = suite.model["name_or_path"]
    if not check_paths:
        return None
    local = Path(name).expanduser()
    if local.exists():
        file = local / "config.json"
        if not file.is_file():
            raise _error(f"{source}: model = {name}: {local.resolve()} is not a model folder (no config.json)")
    elif name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise _error(f"{source}: model = {name} does not exist (looked for {local.resolve()}: a local path resolves "
                     f"against the working directory; hub names look like 'xlm-roberta-base' or 'org/name')")
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json")
        except ValueError as error:  # huggingface_hub's HFValidationError: not a repository id
            raise _error(f"{source}: model = {name}: no local folder {local.resolve()}, and not a hub name ({error})") from None
        if not isinstance(cached, str):
            if _hub_offline():
                raise _error(f"{source}: model = {name}: no local folder {local.resolve()} and not in the hub cache, "
                             f"and HF_HUB_OFFLINE is set: fetch it once online, or give a local folder")
            return None  # downloaded by the first job
        file = Path(cached)
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _error(f"{source}: model = {name}: cannot read {file}: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise _error(f"{source}: model = {name}: {file} names no model_type")
    return config


def check_model(suite: "Suite", source: str, check_paths: bool) -> None:
    """The settings every job reads, and what the jobs ask of the model where its config can be known offline."""
    config = model_config(suite, source, check_paths)
    if config is not None:
        from madx.inject.spec import spec_for_model_type

        field = "model.tiny.arch" if "tiny" in suite.model else f"model = {suite.model['name_or_path']}"
        try:
            spec_for_model_type(config["model_type"])
        except ValueError as error:
            raise _error(f"{source}: {field}: {error}") from None
    _check_lengths(suite, config or {}, source)
    if config is not None:
        _check_adapters(suite, config, source)


def _where(suite: "Suite", method: str, section: str, key: str) -> str:
    """The field that sets ``section.key`` for ``method``: its override, or the suite's hyperparameters."""
    if key in (suite.overrides.get(method) or {}).get(section, {}):
        return f"overrides.{method}.{section}.{key}"
    return f"hyperparameters.{section}.{key}"


def _check_lengths(suite: "Suite", config: dict, source: str) -> None:
    positions = config.get("max_position_embeddings")
    offset = config.get("pad_token_id", 1) + 1 if config.get("model_type") in ROBERTA_TYPES else 0
    model = "model.tiny" if "tiny" in suite.model else f"model {suite.model['name_or_path']}"
    for task in suite.tasks:
        spec = get_task(task)
        for method in suite.methods[task]:
            hyper = suite.hyper(method)
            missing = [key for key in TASK_SETTINGS if key not in hyper[task]]
            if missing:  # a registered task whose spec's hyperparameters lack what the task job reads
                raise _error(f"{source}: hyperparameters.{task}.{missing[0]} is missing (task {task}'s spec gives no default; add one "
                             f"to its TaskSpec.hyperparameters: the task job reads {', '.join(TASK_SETTINGS)})")
            lengths = [(task, "max_length", hyper[task]["max_length"], spec.min_length)]
            if get_variant(method).needs_language_mlm:
                lengths.append(("mlm", "max_seq_length", hyper["mlm"]["max_seq_length"], MLM_MIN_LENGTH))
            for section, key, length, least in lengths:
                where = _where(suite, method, section, key)
                if length < least:
                    raise _error(f"{source}: {where} = {length} is too short: {section} needs at least {least} tokens")
                if isinstance(positions, int) and length + offset > positions:
                    start = f" (its positions start at pad_token_id + 1 = {offset})" if offset else ""
                    raise _error(f"{source}: {where} = {length} needs {length + offset} position embeddings, but "
                                 f"{model} has max_position_embeddings = {positions}{start}: shorten it or use a "
                                 f"model with more positions")


def _check_adapters(suite: "Suite", config: dict, source: str) -> None:
    hidden, layers = config.get("hidden_size"), config.get("num_hidden_layers")
    for task in suite.tasks:
        for method in suite.methods[task]:
            variant = get_variant(method)
            if not variant.uses_adapters:
                continue
            try:
                adapters = variant.adapter_config(AdapterConfig.from_dict(suite.hyper(method)["adapters"]))
            except ValueError as error:
                where = "overrides." + method if "adapters" in (suite.overrides.get(method) or {}) else "hyperparameters"
                raise _error(f"{source}: {where}.adapters: {error}") from None
            sizes = [("task_reduction_factor", adapters.task_size)]
            if variant.language_adapters:
                sizes.append(("language_reduction_factor", adapters.language_size))
            if variant.invertible_adapters:
                sizes.append(("invertible_reduction_factor", adapters.invertible_size))
            try:
                if isinstance(hidden, int):
                    for _, size in sizes:
                        size(hidden)
                if isinstance(layers, int):
                    adapters.layers_left_out(layers)
            except ValueError as error:
                named = next((name for name, _ in sizes if name in str(error)), "leave_out")
                where = _where(suite, method, "adapters", named) if named != "leave_out" else f"method {method}"
                raise _error(f"{source}: {where}: {error} (hidden size {hidden}, {layers} layers)") from None


# -- data -------------------------------------------------------------------------------------------------------
def where_it_looked(suite: "Suite", key: str) -> str:
    """How ``data.key`` became the path it is, and how to point it elsewhere."""
    written, expanded = suite.data_templates.get(key, (None, None))
    parts = []
    names = suite.data_variables(key)
    if names:
        parts.append(f"written {written!r}")
        parts += [f"{name}={os.environ[name]}" if name in os.environ else f"{name} is not set" for name in names]
    if isinstance(expanded, str) and not Path(expanded).expanduser().is_absolute():
        parts.append(f"relative paths resolve against the working directory {Path.cwd()}")
    looked = f" ({'; '.join(parts)})" if parts else ""
    if names and "MADX_DATA" not in names:
        return f"{looked}. Set {names[0]} to the folder or write an absolute path"
    return (f"{looked}. Set MADX_DATA to your data folder (the one `madx data fetch --out DIR` wrote: "
            f"export MADX_DATA=DIR) or write an absolute path")


def check_data_paths(suite: "Suite", source: str) -> None:
    if suite.data.get("kind") == "synthetic":
        return
    for key, value in suite.data.items():
        if key == "kind" or not isinstance(value, str) or value.startswith("hub:"):
            continue
        if not Path(value).exists():
            raise _error(f"{source}: data.{key} = {value} does not exist{where_it_looked(suite, key)}")
    text = suite.data.get("text")
    if isinstance(text, str) and not text.startswith("hub:") and not Path(text).is_dir():
        raise _error(f"{source}: data.text = {text} is a file; it must be a folder of {{lang}}.txt files")
    check_task_files(suite, source)
    check_text_coverage(suite, source)


def _languages_with(spec, fields: dict, split: str) -> list[str]:
    """The language codes (never a folder's name) for which ``fields`` hold a ``split`` file."""
    found = []
    for code in LANGUAGES:
        try:
            file = spec.data_file(fields, code, split)
        except (FileNotFoundError, KeyError, ValueError):
            continue
        if file is not None and file.is_file():
            found.append(code)
    return found


def _subfolder_hint(spec, fields: dict, lang: str, split: str, shipped: bool) -> str:
    """A data folder whose subfolder holds the file (e.g. wikiann/rahimi-xtreme): say which to point at."""
    copy = " (in a copy of this shipped suite)" if shipped else ""
    for key, value in fields.items():
        folder = Path(value)
        if not folder.is_dir():
            continue
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                file = spec.data_file({**fields, key: str(sub)}, lang, split)
            except (FileNotFoundError, KeyError, ValueError):
                continue
            if file is not None and file.is_file():
                return f"; its subfolder {sub} has it: set data.{key} to that folder{copy}"
    return ""


def check_task_files(suite: "Suite", source: str) -> None:
    """Every file the suite's jobs will read: train/dev for each source, test for each target."""
    for task in suite.tasks:
        spec = get_task(task)
        fields = {name: suite.data.get(name) for name in spec.data_fields}
        if any(isinstance(v, str) and v.startswith("hub:") for v in fields.values()):
            continue  # resolved online by the loaders
        given = {k: v for k, v in fields.items() if v is not None}
        needed = [(lang, split) for lang in suite.sources[task] for split in ("train", "dev")]
        needed += [(lang, "test") for lang in suite.targets[task]]
        for lang, split in dict.fromkeys(needed):
            try:
                file = spec.data_file(given, lang, split)
                problem = None if file is None or file.is_file() else f"no file {file}"
            except KeyError as error:
                raise _error(f"{source}: task {task} needs data.{error.args[0]} (it reads {', '.join(spec.data_fields)})") from None
            except FileNotFoundError:
                problem = "no file"
            if problem is None or split == "dev":
                continue  # a missing dev split falls back to part of train
            have = _languages_with(spec, given, split)
            where = ", ".join(f"data.{k} = {v}" for k, v in given.items())
            raise _error(f"{source}: task {task}, {split} for {lang}: {problem} under {where}; languages with a {split} "
                         f"file there: {', '.join(have) if have else 'none'}{_subfolder_hint(spec, given, lang, split, suite.shipped)}")


def text_languages(suite: "Suite") -> set[str] | None:
    """The languages with MLM text in the suite's text folder; None when every language counts as having it."""
    text = suite.data.get("text")
    if suite.data.get("kind") == "synthetic" or not isinstance(text, str) or text.startswith("hub:") or not Path(text).is_dir():
        return None
    return {p.stem for p in Path(text).glob("*.txt")}


def check_text_coverage(suite: "Suite", source: str) -> None:
    """A method that trains on text (adapters, MLM-SRC/TRG) must have text for at least one source language: the
    graph leaves out what it cannot run, and a method left with no job at all is not what the suite asks for."""
    have = text_languages(suite)
    if have is None:
        return
    for task in suite.tasks:
        for method in suite.methods[task]:
            if get_variant(method).needs_language_mlm and not have & set(suite.sources[task]):
                raise _error(f"{source}: tasks.{task}.methods: {method} trains on each source's text, but data.text = "
                             f"{suite.data['text']} has no {{lang}}.txt for any source ({', '.join(suite.sources[task])}); "
                             f"it has: {', '.join(sorted(have)) or 'nothing'}")


def missing_text(suite: "Suite") -> dict[str, list[str]]:
    """Per method that trains on text: the suite's languages without text (their cells will stay missing)."""
    have = text_languages(suite)
    if have is None:
        return {}
    missing: dict[str, list[str]] = {}
    for task in suite.tasks:
        langs = dict.fromkeys([*suite.sources[task], *suite.targets[task]])
        for method in suite.methods[task]:
            lacking = [lang for lang in langs if lang not in have]
            if get_variant(method).needs_language_mlm and lacking:
                missing.setdefault(method, [])
                missing[method] += [lang for lang in lacking if lang not in missing[method]]
    return missing
