"""Download the paper's data from the Hugging Face hub into the layout the shipped suites read.

    report = fetch("data", languages=["en", "qu"], tasks=["ner", "mlm"])   # what `madx data fetch` runs

Under ``out`` (``$MADX_DATA`` for the suites)::

    wikiann/{train,dev,test}-{lang}.tsv    WikiANN, Rahimi splits, XTREME layout (token<TAB>tag)
    text/{lang}.txt                        Wikipedia text for MLM: one paragraph per line
    squad/train-v1.1.json, dev-v1.1.json   SQuAD v1.1 (SQuAD JSON)
    xquad/xquad.{lang}.json                XQuAD (SQuAD JSON)
    MANIFEST.json                          per file: source, config, split, revision, rows, bytes, sha256

Everything goes through ``datasets`` (``load_dataset_builder`` then ``download_and_prepare`` /
``as_dataset``, or ``as_streaming_dataset`` for Wikipedia: the calls ``load_dataset`` makes), and
the dataset names are parameters (``Sources``), so a local folder in the hub's layout (one folder
per config, parquet per split, configs declared in README.md) works the same as the hub.

Each written file is read back with the project's loader before it replaces anything, and is
written atomically (temp + ``os.replace``); its manifest entry is written after it, so an entry
always describes a complete file. An entry records the request that made the file (source,
config, split, requested revision, settings); a re-run skips a file whose entry has the same
request and whose bytes still hash to the recorded sha256. The manifest's ``complete`` is true
only once a run has gone through everything it was asked for.

A language whose source lacks data (no such config or split) is recorded under ``missing`` with
the reason, never skipped silently. Network and other errors propagate.

MLM text: every article is split into paragraphs (lines); a line is kept once (exact duplicates
dropped), never when it contains a WikiANN test sentence of that language (whitespace ignored; a
test sentence shorter than ``min_match_chars`` characters only removes a line equal to it, since
a short name like "Lima" occurs in countless unrelated lines), and the file stops before the
line that would pass ``max_bytes``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets

from madx.atomic import atomic_write, atomic_write_json
from madx.data.checks import check_int
from madx.data.languages import NER_LANGUAGES, XQUAD_PAPER_LANGUAGES, get_languages
from madx.data.squad import read_squad
from madx.data.wikiann import NER_TAGS, read_wikiann

FORMAT_VERSION = 1  # bump when a written file's bytes change for the same source data
MANIFEST_NAME = "MANIFEST.json"
TASKS = ("ner", "qa", "mlm")
SOURCE_KINDS = ("wikiann", "wikipedia", "squad", "xquad")
WIKIANN_SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # our file name -> hub split
SQUAD_FILES = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}  # hub split -> file name
DEFAULT_MAX_TEXT_BYTES = 100_000_000
DEFAULT_MIN_MATCH_CHARS = 20
_K = 12  # characters per index key of SentenceFilter
_STRIDE = 8  # a line is probed every _STRIDE characters; needs sentences of >= _K + _STRIDE - 1 characters
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Sources:
    """Where each kind of data comes from: hub names (or local folders in the hub's layout) and
    config templates, ``{lang}`` standing for the language code."""

    wikiann: str = "unimelb-nlp/wikiann"
    wikiann_config: str = "{lang}"
    wikipedia: str = "wikimedia/wikipedia"
    wikipedia_config: str = "20231101.{lang}"
    wikipedia_split: str = "train"
    wikipedia_text_column: str = "text"
    squad: str = "rajpurkar/squad"
    squad_config: str | None = None  # None: the dataset's default config (plain_text)
    xquad: str = "google/xquad"
    xquad_config: str = "xquad.{lang}"
    xquad_split: str = "validation"
    # source kind -> git revision (branch, tag or commit) on the hub; absent: the default branch
    revisions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("wikiann_config", "wikipedia_config", "xquad_config"):
            template = getattr(self, name)
            if "{lang}" not in template:
                raise ValueError(f"{name} {template!r} must contain '{{lang}}' (one config per language)")
        for kind in self.revisions:
            if kind not in SOURCE_KINDS:
                raise ValueError(f"revision for unknown source {kind!r}; sources are {', '.join(SOURCE_KINDS)}"
                                 f"{_near(kind, SOURCE_KINDS)}")

    def revision(self, kind: str) -> str | None:
        return self.revisions.get(kind)


@dataclass
class FetchReport:
    """What one ``fetch`` call did. ``missing`` entries are dicts (task, language, source, config,
    split, file, reason), as in the manifest."""

    out: Path
    written: list[dict] = field(default_factory=list)  # manifest entries of the files written now
    skipped: list[dict] = field(default_factory=list)  # entries of files already up to date
    missing: list[dict] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.missing


# ---------------------------------------------------------------- small helpers


def _near(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _squash(text: str) -> str:
    """Text as compared: case and whitespace ignored (WikiANN splits punctuation off: "Lima , Peru")."""
    return "".join(unicodedata.normalize("NFC", text).casefold().split())


def _versions() -> dict[str, str | None]:
    out = {}
    for package in ("madx-bench", "datasets", "huggingface_hub"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


# ---------------------------------------------------------------- reading sources


def config_names(dataset: str, *, revision: str | None = None) -> tuple[str, ...]:
    """The configs a hub dataset (or local folder in the hub's layout) declares."""
    return tuple(datasets.get_dataset_config_names(dataset, revision=revision))


class _NoSplit(LookupError):
    pass


def _builder(dataset: str, config: str | None, split: str, *, revision: str | None, cache_dir: str | Path | None):
    builder = datasets.load_dataset_builder(dataset, config, revision=revision,
                                            cache_dir=str(cache_dir) if cache_dir is not None else None)
    files = builder.config.data_files
    if files is not None and split not in files:
        raise _NoSplit(f"no split {split!r} (splits: {', '.join(files) or 'none'})")
    return builder


def load_split(dataset: str, config: str | None, split: str, *, revision: str | None = None,
               cache_dir: str | Path | None = None) -> tuple[Any, dict]:
    """(the split as a ``datasets.Dataset``, where it came from): what ``load_dataset(dataset, config,
    split=split, revision=revision)`` returns, plus {"resolved_revision": the hub commit it read (for a
    local folder, ``datasets``' hash of its files), "resolved_config": the config (the default one
    when ``config`` is None)}."""
    builder = _builder(dataset, config, split, revision=revision, cache_dir=cache_dir)
    builder.download_and_prepare()
    return builder.as_dataset(split=split), _origin(builder)


def stream_split(dataset: str, config: str | None, split: str, *, revision: str | None = None) -> tuple[Any, dict]:
    """Like ``load_split`` but an ``IterableDataset``: only what is read is downloaded."""
    builder = _builder(dataset, config, split, revision=revision, cache_dir=None)
    return builder.as_streaming_dataset(split=split), _origin(builder)


def _origin(builder) -> dict:
    return {"resolved_revision": builder.hash, "resolved_config": builder.config.name}


# ---------------------------------------------------------------- writers


def write_wikiann_tsv(path: str | Path, tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> dict:
    """Sentences as an XTREME-layout file (``token<TAB>tag``, a blank line between sentences),
    read back with ``read_wikiann`` before it replaces ``path``. Whitespace control characters
    inside a token (tab, newline) become spaces; empty tokens and empty sentences are dropped and
    counted. Returns {"rows", "tokens_dropped", "sentences_dropped"}."""
    blocks: list[str] = []
    dropped_tokens = dropped_sentences = 0
    for sent, sent_tags in zip(tokens, tags, strict=True):
        lines = []
        for token, tag in zip(sent, sent_tags, strict=True):
            if tag not in NER_TAGS:
                raise ValueError(f"unknown WikiANN tag {tag!r}; expected one of {', '.join(NER_TAGS)}")
            token = re.sub(r"[\t\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", " ", token)
            if not token.strip():  # an empty or blank token would read as a sentence break
                dropped_tokens += 1
                continue
            lines.append(f"{token}\t{tag}\n")
        if lines:
            blocks.append("".join(lines))
        else:
            dropped_sentences += 1
    if not blocks:
        raise ValueError(f"{path}: no sentences to write")

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(blocks))
        back, _ = read_wikiann(tmp)  # what the suites will read (layout auto-detected)
        if len(back) != len(blocks):
            raise ValueError(f"{path}: wrote {len(blocks)} sentences but read back {len(back)}")

    atomic_write(path, write)
    return {"rows": len(blocks), "tokens_dropped": dropped_tokens, "sentences_dropped": dropped_sentences}


def squad_json(rows: Iterable[Mapping[str, Any]], version: str = "1.1") -> dict:
    """Rows in the HF squad schema (id, title, context, question, answers{text, answer_start}) as
    SQuAD v1.1 JSON: consecutive rows with the same title form an article, consecutive rows with
    the same context a paragraph (the order the hub keeps them in)."""
    data: list[dict] = []
    for row in rows:
        title = row.get("title") or ""
        if not data or data[-1]["title"] != title:
            data.append({"title": title, "paragraphs": []})
        paragraphs = data[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != row["context"]:
            paragraphs.append({"context": row["context"], "qas": []})
        answers = row["answers"]
        paragraphs[-1]["qas"].append({
            "id": str(row["id"]),
            "question": row["question"],
            "answers": [{"text": t, "answer_start": int(s)} for t, s in zip(answers["text"], answers["answer_start"], strict=True)],
        })
    return {"version": version, "data": data}


def write_squad_json(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> dict:
    """``squad_json(rows)`` written to ``path``, validated with ``read_squad`` first. Returns {"rows"}."""
    doc = squad_json(rows)
    count = sum(len(p["qas"]) for a in doc["data"] for p in a["paragraphs"])
    if count == 0:
        raise ValueError(f"{path}: no questions to write")

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        read_squad(tmp)  # every answer must sit at its answer_start, as the suites require

    atomic_write(path, write)
    return {"rows": count}


class _NothingWritten(Exception):
    pass


class SentenceFilter:
    """Tells whether a line contains any of a set of sentences, whitespace ignored.

    Sentences of at least ``min_chars`` characters (whitespace removed) match anywhere in a line;
    shorter ones only a whole line. Long sentences are found without scanning every position: each
    is indexed by its ``_K``-character pieces at offsets 0.._STRIDE-1, and a line is probed every
    ``_STRIDE`` characters, which meets any occurrence at one of those offsets.
    """

    def __init__(self, sentences: Iterable[str], min_chars: int = DEFAULT_MIN_MATCH_CHARS):
        check_int("min_chars", min_chars, minimum=_K + _STRIDE - 1)
        self.exact: set[str] = set()
        self.long: list[str] = []
        self.index: dict[str, list[tuple[int, int]]] = {}
        for sentence in sentences:
            s = _squash(sentence)
            if not s or s in self.exact:
                continue
            self.exact.add(s)
            if len(s) >= min_chars:
                for offset in range(_STRIDE):
                    self.index.setdefault(s[offset : offset + _K], []).append((len(self.long), offset))
                self.long.append(s)

    def __len__(self) -> int:
        return len(self.exact)

    def matches(self, line: str) -> bool:
        s = _squash(line)
        if s in self.exact:
            return True
        for q in range(0, len(s) - _K + 1, _STRIDE):
            for sid, offset in self.index.get(s[q : q + _K], ()):
                if q >= offset and s.startswith(self.long[sid], q - offset):
                    return True
        return False


def write_text(path: str | Path, documents: Iterable[str], *, max_bytes: int | None,
               exclude: SentenceFilter | None = None) -> dict:
    """One line per paragraph of ``documents`` (split at any line break, stripped, blank dropped),
    each distinct line once, none matching ``exclude``, stopping before the line that would take the
    file past ``max_bytes`` (UTF-8, newlines counted; None: no cap). Stops reading ``documents``
    there. Returns counts: rows (lines written), bytes, documents read, duplicates, excluded, truncated."""
    check_int("max_bytes", max_bytes, minimum=1, allow_none=True)
    stats = {"rows": 0, "bytes": 0, "documents_read": 0, "duplicate_lines": 0, "excluded_lines": 0, "truncated": False}

    def lines() -> Iterable[str]:
        for doc in documents:
            stats["documents_read"] += 1
            for raw in (doc or "").splitlines():  # every line break, so none is left inside a line
                line = raw.replace("\ufeff", "").replace("\x00", "").strip()
                if line:
                    yield line

    def write(tmp: str) -> None:
        seen: set[bytes] = set()
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines():
                data = (line + "\n").encode("utf-8")
                key = hashlib.blake2b(data, digest_size=16).digest()
                if key in seen:
                    stats["duplicate_lines"] += 1
                    continue
                seen.add(key)
                if exclude is not None and exclude.matches(line):
                    stats["excluded_lines"] += 1
                    continue
                if max_bytes is not None and stats["bytes"] + len(data) > max_bytes:
                    stats["truncated"] = True
                    break
                f.write(line + "\n")
                stats["rows"] += 1
                stats["bytes"] += len(data)
        if stats["rows"] == 0:
            raise _NothingWritten

    try:
        atomic_write(path, write)
    except _NothingWritten:
        pass  # nothing kept: no file, and an older one stays as it was
    return stats


def _column(rows: Iterable[Mapping[str, Any]], column: str, where: str) -> Iterable[str]:
    for row in rows:
        if column not in row:
            raise ValueError(f"{where}: no column {column!r}; columns: {list(row)}")
        yield row[column]


# ---------------------------------------------------------------- the manifest


def read_manifest(out: str | Path) -> dict:
    """The manifest under ``out`` ({"files": {}, "missing": []} when there is none yet)."""
    path = Path(out) / MANIFEST_NAME
    if not path.exists():
        return {"files": {}, "missing": []}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a valid manifest ({e}); delete it to fetch everything again") from None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) and isinstance(manifest.get("missing", []), list)):
        raise ValueError(f"{path}: not a madx data manifest (expected an object with 'files' and 'missing'); "
                         f"delete it to fetch everything again")
    return manifest


def _up_to_date(entry: Mapping[str, Any] | None, request: Mapping[str, Any], path: Path) -> bool:
    if entry is None or any(entry.get(k) != v for k, v in request.items()):
        return False
    return path.is_file() and path.stat().st_size == entry.get("bytes") and sha256_file(path) == entry.get("sha256")


# ---------------------------------------------------------------- one run


def default_languages(task: str) -> tuple[str, ...]:
    """What the shipped suites read: NER on Table 1's 16 languages, QA on XQuAD's 11 (Table 3),
    MLM text for all of them."""
    return {"ner": NER_LANGUAGES, "qa": XQUAD_PAPER_LANGUAGES,
            "mlm": tuple(dict.fromkeys(NER_LANGUAGES + XQUAD_PAPER_LANGUAGES))}[task]


def check_tasks(tasks: Iterable[str]) -> tuple[str, ...]:
    tasks = tuple(dict.fromkeys(tasks))
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; fetch knows {', '.join(TASKS)}{_near(task, TASKS)}")
    if not tasks:
        raise ValueError(f"no tasks given; choose from {', '.join(TASKS)}")
    return tasks


class _Fetcher:
    def __init__(self, out: Path, sources: Sources, *, cache_dir, force: bool, progress, max_text_bytes, min_match_chars):
        self.out = out
        self.sources = sources
        self.cache_dir = cache_dir
        self.force = force
        self.say = progress or (lambda message: None)
        self.max_text_bytes = max_text_bytes
        self.min_match_chars = min_match_chars
        previous = read_manifest(out)
        self.entries: dict[str, dict] = dict(previous["files"])
        self.previous_missing: list[dict] = list(previous.get("missing", []))
        self.report = FetchReport(out=out)
        self.done: dict[str, tuple[dict | None, str | None]] = {}  # file -> (entry, why absent)
        self.considered: set[tuple[str, str]] = set()  # (task, file) asked for in this run
        self.configs: dict[tuple[str, str | None], tuple[str, ...]] = {}

    # A file: skip it when up to date, else check its config exists and make it.
    def job(self, rel: str, request: dict, make: Callable[[Path], dict | str]) -> tuple[dict | None, str | None]:
        if rel in self.done:
            return self.done[rel]
        path = self.out / rel
        entry = self.entries.get(rel)
        if not self.force and _up_to_date(entry, request, path):
            self.say(f"{rel}: up to date")
            self.report.skipped.append({"file": rel, **entry})
            self.done[rel] = (entry, None)
            return self.done[rel]
        why = self.unavailable(request["source"], request["config"], request["revision"])
        if why is None:
            self.say(f"{rel}: fetching {request['source']} {request['config'] or ''} {request['split']}".replace("  ", " "))
            try:
                result = make(path)
            except _NoSplit as e:
                result = f"{request['source']} config {request['config']!r}: {e}"
            why = result if isinstance(result, str) else None
        if why is not None:
            self.done[rel] = (None, why)
            return self.done[rel]
        entry = {**request, **result, "bytes": path.stat().st_size, "sha256": sha256_file(path), "fetched_at": _now()}
        entry.setdefault("fingerprint", None)
        self.entries[rel] = entry
        self.report.written.append({"file": rel, **entry})
        self.write_manifest(complete=False)  # after the file: an entry always describes a whole file
        self.done[rel] = (entry, None)
        return self.done[rel]

    def unavailable(self, dataset: str, config: str | None, revision: str | None) -> str | None:
        if config is None:
            return None
        key = (dataset, revision)
        if key not in self.configs:
            self.configs[key] = config_names(dataset, revision=revision)
        names = self.configs[key]
        if config in names:
            return None
        return f"{dataset} has no config {config!r} ({len(names)} configs{_near(config, names).replace('; did', ', did')})"

    def need(self, task: str, language: str, rel: str, request: dict, make) -> dict | None:
        self.considered.add((task, rel))
        entry, why = self.job(rel, request, make)
        if entry is None:
            missing = {"task": task, "language": language, "source": request["source"], "config": request["config"],
                       "split": request["split"], "file": rel, "reason": why}
            self.report.missing.append(missing)
            self.say(f"{rel}: MISSING ({task}, {language}): {why}")
        return entry

    # ------------------------------------------------------------ the sources

    def wikiann(self, lang: str, name: str) -> tuple[str, dict, Callable]:
        s = self.sources
        request = {"kind": "wikiann", "language": lang, "source": s.wikiann, "config": s.wikiann_config.format(lang=lang),
                   "split": WIKIANN_SPLITS[name], "revision": s.revision("wikiann"), "format": FORMAT_VERSION}

        def make(path: Path) -> dict:
            ds, origin = load_split(s.wikiann, request["config"], request["split"], revision=request["revision"],
                                    cache_dir=self.cache_dir)
            feature = getattr(ds.features.get("ner_tags"), "feature", None)
            names = getattr(feature, "names", None)
            if names is None or "tokens" not in ds.column_names:
                raise ValueError(f"{s.wikiann} {request['config']} {request['split']}: expected columns tokens and ner_tags "
                                 f"(a list of ClassLabel); found {ds.features}")
            unknown = sorted(set(names) - set(NER_TAGS))
            if unknown:
                raise ValueError(f"{s.wikiann} {request['config']}: tags {unknown} are not WikiANN's {list(NER_TAGS)}")
            columns = ds.select_columns(["tokens", "ner_tags"])[:]
            tags = [[names[i] for i in sentence] for sentence in columns["ner_tags"]]
            stats = write_wikiann_tsv(path, columns["tokens"], tags)
            self.say(f"{path.relative_to(self.out)}: {_n(stats['rows'], 'sentence')}")
            return {**origin, "fingerprint": ds._fingerprint, **stats}

        return f"wikiann/{name}-{lang}.tsv", request, make

    def squad_like(self, kind: str, lang: str, dataset: str, config: str | None, split: str, rel: str):
        request = {"kind": kind, "language": lang, "source": dataset, "config": config, "split": split,
                   "revision": self.sources.revision(kind), "format": FORMAT_VERSION}

        def make(path: Path) -> dict:
            ds, origin = load_split(dataset, config, split, revision=request["revision"], cache_dir=self.cache_dir)
            lacking = [c for c in ("id", "context", "question", "answers") if c not in ds.column_names]
            if lacking:
                raise ValueError(f"{dataset} {config or ''} {split}: lacks the squad columns {lacking}; has {ds.column_names}")
            stats = write_squad_json(path, iter(ds))
            self.say(f"{path.relative_to(self.out)}: {_n(stats['rows'], 'question')}")
            return {**origin, "fingerprint": ds._fingerprint, **stats}

        return rel, request, make

    def text(self, lang: str) -> tuple[str, dict, Callable]:
        s = self.sources
        test_rel, test_request, test_make = self.wikiann(lang, "test")
        test_entry, _ = self.job(test_rel, test_request, test_make)  # its absence is NER's to report
        request = {"kind": "text", "language": lang, "source": s.wikipedia, "config": s.wikipedia_config.format(lang=lang),
                   "split": s.wikipedia_split, "revision": s.revision("wikipedia"), "text_column": s.wikipedia_text_column,
                   "max_bytes": self.max_text_bytes, "min_match_chars": self.min_match_chars,
                   "excludes": test_rel if test_entry else None, "excludes_sha256": test_entry["sha256"] if test_entry else None,
                   "format": FORMAT_VERSION}

        def make(path: Path) -> dict | str:
            exclude = None
            if test_entry:
                sentences, _ = read_wikiann(self.out / test_rel)
                exclude = SentenceFilter(("".join(tokens) for tokens in sentences), self.min_match_chars)
            stream, origin = stream_split(s.wikipedia, request["config"], request["split"], revision=request["revision"])
            column = s.wikipedia_text_column
            if stream.features is not None and column not in stream.features:
                raise ValueError(f"{s.wikipedia} {request['config']}: no column {column!r}; columns: {list(stream.features)}")
            stats = write_text(path, _column(stream, column, f"{s.wikipedia} {request['config']}"), max_bytes=self.max_text_bytes,
                               exclude=exclude)
            if stats["rows"] == 0:
                return (f"{s.wikipedia} {request['config']}: no text left ({stats['documents_read']} documents, "
                        f"{stats['duplicate_lines']} duplicate and {stats['excluded_lines']} WikiANN-test lines dropped)")
            excluded = (f"{_n(stats['excluded_lines'], 'line')} with one of the {_n(len(exclude), 'WikiANN test sentence')} removed"
                        if exclude is not None else "no WikiANN test set to exclude")
            cap = f"; stopped at the {self.max_text_bytes / 1e6:g} MB cap" if stats["truncated"] else ""
            self.say(f"{path.relative_to(self.out)}: {_n(stats['rows'], 'line')} from {_n(stats['documents_read'], 'document')}; "
                     f"{_n(stats['duplicate_lines'], 'duplicate line')} dropped; {excluded}{cap}")
            return {**origin, "fingerprint": None, "test_sentences": len(exclude) if exclude else 0, **stats}

        return f"text/{lang}.txt", request, make

    # ------------------------------------------------------------ the manifest

    def write_manifest(self, *, complete: bool, run: dict | None = None) -> Path:
        files = {rel: e for rel, e in sorted(self.entries.items()) if (self.out / rel).is_file()}
        kept = [m for m in self.previous_missing if (m.get("task"), m.get("file")) not in self.considered]
        manifest = {
            "format": FORMAT_VERSION,
            "complete": complete,
            "updated_at": _now(),
            "created_by": _versions(),
            "files": files,
            "missing": kept + self.report.missing,
        }
        if run is not None:
            manifest["last_run"] = run
        return atomic_write_json(self.out / MANIFEST_NAME, manifest)


def fetch(
    out: str | Path,
    *,
    languages: Sequence[str] | None = None,
    tasks: Iterable[str] = TASKS,
    sources: Sources = Sources(),
    max_text_bytes: int | None = DEFAULT_MAX_TEXT_BYTES,
    min_match_chars: int = DEFAULT_MIN_MATCH_CHARS,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FetchReport:
    """Fetch what ``tasks`` need for ``languages`` into ``out`` (see the module docstring).

    languages: codes from the language table (an unknown code is an error with a did-you-mean);
        None: each task's ``default_languages``.
    max_text_bytes: the cap of each ``text/{lang}.txt`` (None: no cap).
    cache_dir: ``datasets``' cache (default: its own); force: refetch files that are up to date.
    progress: called with one line per step.
    Returns a FetchReport; ``report.missing`` lists what the sources lack (``report.ok`` is False then).
    """
    tasks = check_tasks(tasks)
    codes = None
    if languages is not None:
        codes = tuple(dict.fromkeys(lang.code for lang in get_languages(languages)))
        if not codes:
            raise ValueError("no languages given")
    check_int("max_text_bytes", max_text_bytes, minimum=1, allow_none=True)
    check_int("min_match_chars", min_match_chars, minimum=_K + _STRIDE - 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    f = _Fetcher(out, sources, cache_dir=cache_dir, force=force, progress=progress, max_text_bytes=max_text_bytes,
                 min_match_chars=min_match_chars)
    s = sources
    run = {"tasks": list(tasks), "languages": {}, "sources": asdict(s), "max_text_bytes": max_text_bytes}
    for task in TASKS:
        if task not in tasks:
            continue
        langs = codes or default_languages(task)
        run["languages"][task] = list(langs)
        if task == "ner":
            for lang in langs:
                for name in WIKIANN_SPLITS:
                    f.need("ner", lang, *f.wikiann(lang, name))
        elif task == "qa":
            for split, filename in SQUAD_FILES.items():
                f.need("qa", "en", *f.squad_like("squad", "en", s.squad, s.squad_config, split, f"squad/{filename}"))
            for lang in langs:
                f.need("qa", lang, *f.squad_like("xquad", lang, s.xquad, s.xquad_config.format(lang=lang), s.xquad_split,
                                                 f"xquad/xquad.{lang}.json"))
        else:
            for lang in langs:
                f.need("mlm", lang, *f.text(lang))
    f.report.manifest = f.write_manifest(complete=True, run=run)
    return f.report
