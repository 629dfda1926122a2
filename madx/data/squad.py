"""SQuAD v1.1-format JSON (SQuAD, XQuAD, MLQA's SQuAD-style files) as a ``datasets.Dataset``.

Columns follow the Hugging Face ``squad`` schema: ``id``, ``title``, ``context``, ``question``,
``answers = {"text": [...], "answer_start": [...]}``; one row per question.

Every answer is checked: ``context[answer_start : answer_start + len(text)] == text``. A
mismatch is an error naming the file, the question id and what was found; with ``repair=True``
the answer is moved to the occurrence of its text nearest the given offset (a warning counts the
repairs), and it is an error only when the text occurs nowhere in the context. A missing key or a
wrong type names the file and the JSON path, e.g. ``data[3].paragraphs[0].qas[2].answers[1]``,
and what was expected there. A file that is not UTF-8 names the line and byte offset; invalid
JSON names line and column, with an excerpt. A UTF-8 byte-order mark is accepted.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Any

import datasets

from madx.data.checks import DataFileError, excerpt, read_text

log = logging.getLogger(__name__)

_List = getattr(datasets, "List", None) or datasets.Sequence  # datasets>=4 has List; 3.x only Sequence

# Short names for hub datasets in SQuAD format: name -> (repo, config or None).
HUB_DATASETS: dict[str, tuple[str, str | None]] = {
    "squad": ("rajpurkar/squad", None),
    **{
        f"xquad.{lang}": ("google/xquad", f"xquad.{lang}")
        for lang in ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
    },
}


class SquadFormatError(DataFileError):
    """A SQuAD-format file that does not validate; the message names the file and where (a ValueError)."""


def squad_features() -> datasets.Features:
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": {"text": _List(datasets.Value("string")), "answer_start": _List(datasets.Value("int32"))},
        }
    )


def _check_type(val: Any, typ: type | tuple[type, ...], file: Path, where: str) -> Any:
    typs = typ if isinstance(typ, tuple) else (typ,)
    # bool is an int subclass; an answer_start or id of true/false is a broken file, not 1/0.
    if not isinstance(val, typs) or (isinstance(val, bool) and bool not in typs):
        want = " or ".join(t.__name__ for t in typs)
        raise SquadFormatError(f"{file}: {where} should be {want}, found {type(val).__name__} {excerpt(val)}")
    return val


def _get(obj: Any, key: str, typ: type | tuple[type, ...], file: Path, where: str) -> Any:
    if not isinstance(obj, dict):
        if where == "<root>":
            raise SquadFormatError(
                f"{file}: the top level should be an object {{\"version\": ..., \"data\": [articles]}} (SQuAD v1.1), "
                f"found {type(obj).__name__}"
            )
        raise SquadFormatError(f"{file}: {where} should be an object, found {type(obj).__name__} {excerpt(obj)}")
    if key not in obj:
        raise SquadFormatError(f"{file}: missing key {where}.{key} (keys there: {excerpt(sorted(obj), 100)})")
    return _check_type(obj[key], typ, file, f"{where}.{key}")


def _parse_json(path: Path) -> Any:
    text = read_text(path, "SQuAD-format JSON file", SquadFormatError)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if not text.strip():
            hint = "; the file is empty"
        elif e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
            hint = "; the file ends early (truncated?)"
        else:
            hint = f", near {excerpt(text[max(0, e.pos - 20) : e.pos + 20])}"
        raise SquadFormatError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}){hint}") from None
    except RecursionError:
        raise SquadFormatError(f"{path}: not valid SQuAD JSON: nested too deeply to parse") from None


def _nearest(context: str, text: str, start: int) -> int:
    """Start of the occurrence of ``text`` in ``context`` nearest ``start``; -1 if none."""
    best, pos = -1, context.find(text)
    while pos != -1:
        if best == -1 or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1)
    return best


def read_squad(path: str | Path, *, repair: bool = False) -> list[dict]:
    """Parse and validate a SQuAD v1.1-format file into a list of rows (see module docstring).

    Questions marked ``is_impossible`` (SQuAD 2.0 style) may have no answers; any other question
    without answers is an error. Question ids must be unique within the file.
    """
    path = Path(path)
    raw = _parse_json(path)
    articles = _get(raw, "data", list, path, "<root>")
    rows: list[dict] = []
    seen: dict[str, str] = {}
    repaired = 0
    for i, art in enumerate(articles):
        aw = f"data[{i}]"
        title = art.get("title", "") if isinstance(art, dict) else ""
        if title is not None:
            _check_type(title, str, path, f"{aw}.title")
        for j, para in enumerate(_get(art, "paragraphs", list, path, aw)):
            pw = f"{aw}.paragraphs[{j}]"
            context = _get(para, "context", str, path, pw)
            for k, qa in enumerate(_get(para, "qas", list, path, pw)):
                qw = f"{pw}.qas[{k}]"
                qid = str(_get(qa, "id", (str, int), path, qw))
                question = _get(qa, "question", str, path, qw)
                if qid in seen:
                    raise SquadFormatError(f"{path}: question id {excerpt(qid)} at {qw} was already used at {seen[qid]}")
                seen[qid] = qw
                answers = _get(qa, "answers", list, path, qw)
                impossible = _check_type(qa.get("is_impossible", False), bool, path, f"{qw}.is_impossible")
                if not answers and not impossible:
                    raise SquadFormatError(f"{path}: question {excerpt(qid)} ({qw}) has no answers and is not marked is_impossible")
                texts, starts = [], []
                for a, ans in enumerate(answers):
                    ww = f"{qw}.answers[{a}]"
                    text = _get(ans, "text", str, path, ww)
                    start = _get(ans, "answer_start", int, path, ww)
                    if not text and not impossible:
                        raise SquadFormatError(f"{path}: question {excerpt(qid)} ({ww}.text): the answer text is empty")
                    found = context[start : start + len(text)] if start >= 0 else ""
                    if found != text:
                        pos = _nearest(context, text, start)
                        if not repair or pos == -1:
                            where = (
                                "; the text occurs nowhere in the context"
                                if pos == -1
                                else f"; the text occurs at {pos} (pass repair=True to move it there)"
                            )
                            there = (
                                f"found {excerpt(found, 40)} there"
                                if 0 <= start < len(context)
                                else f"outside the context (length {len(context)})"
                            )
                            raise SquadFormatError(
                                f"{path}: question {excerpt(qid, 40)} ({ww}.answer_start): answer {excerpt(text, 40)} "
                                f"expected at answer_start={start}, {there}{where}"
                            )
                        start = pos
                        repaired += 1
                    texts.append(text)
                    starts.append(start)
                rows.append(
                    {
                        "id": qid,
                        "title": title,
                        "context": context,
                        "question": question,
                        "answers": {"text": texts, "answer_start": starts},
                    }
                )
    if not rows:
        raise SquadFormatError(f"{path}: no questions found (expected data[i].paragraphs[j].qas[k])")
    if repaired:
        log.warning("%s: %d answer(s) were not at their answer_start; moved to the nearest occurrence of their text", path, repaired)
    return rows


def load_squad(path: str | Path, *, repair: bool = False) -> datasets.Dataset:
    """A SQuAD v1.1-format JSON file as a Dataset in the HF ``squad`` schema."""
    rows = read_squad(path, repair=repair)
    cols = {c: [r[c] for r in rows] for c in ("id", "title", "context", "question", "answers")}
    return datasets.Dataset.from_dict(cols, features=squad_features())


load_squad_json = load_squad


def load_squad_hub(name: str, split: str = "validation", **kwargs) -> datasets.Dataset:
    """A SQuAD-format dataset from the hub (needs internet), in the same schema as ``load_squad``.

    name: a short name in ``HUB_DATASETS`` ("squad", "xquad.de", ...) or any "owner/repo" whose
    columns follow the squad schema (pass ``name=`` for a config through kwargs).
    XQuAD has only a "validation" split. kwargs go to ``datasets.load_dataset``.
    """
    if name in HUB_DATASETS:
        repo, config = HUB_DATASETS[name]
    elif "/" in name:
        repo, config = name, kwargs.pop("name", None)
    else:
        near = difflib.get_close_matches(name, list(HUB_DATASETS), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ValueError(f"unknown SQuAD-format dataset {name!r}: known short names are {sorted(HUB_DATASETS)}, or pass 'owner/repo'{hint}")
    ds = datasets.load_dataset(repo, config, split=split, **kwargs)
    missing = [c for c in ("id", "context", "question", "answers") if c not in ds.column_names]
    if missing:
        raise ValueError(f"{repo} ({config}) split {split!r} lacks squad columns {missing}; has {ds.column_names}")
    if "title" not in ds.column_names:
        ds = ds.add_column("title", [""] * len(ds))
    ds = ds.select_columns(["id", "title", "context", "question", "answers"])
    return ds.cast(squad_features())
