"""WikiANN NER (Pan et al. 2017) with the Rahimi et al. (2019) splits, as MAD-X uses it.

Two file layouts exist and both are read, auto-detected per file:

- original Rahimi (what users download): ``en:token<TAB>tag``, every token prefixed by its
  language code;
- XTREME: ``token<TAB>tag``, prefix stripped.

Sentences are separated by blank lines; a trailing blank line is optional, runs of blank lines
count as one. Tags are the 7-tag BIO set below, in the order of the Hugging Face ``wikiann``
dataset's ClassLabel, so ids agree with ``load_wikiann_hub``.

The layout is "Rahimi" when more than half of the first 50 token lines carry the same ``lang:``
prefix; every line must then carry it (a line without it, or with another language's prefix, is
an error naming file:line). When most of the first 50 carry a prefix but no one prefix has the
majority, the file mixes languages: an error naming the two prefixes and their lines. An XTREME
token that happens to look like a prefix ("en:x", "http://...") cannot trigger either unless
most of the first 50 tokens start alike.

Malformed input is an error naming file:line (``WikiANNFormatError``, a ValueError): bytes that
are not UTF-8 (with the byte offset and a hint), a line without exactly two tab-separated
columns, an unknown tag. A UTF-8 byte-order mark is dropped, never part of a token.
"""

from __future__ import annotations

import collections
import itertools
import logging
import re
from pathlib import Path

import datasets

from madx.data.checks import BOM, DataFileError, excerpt, read_text
from madx.data.languages import LANGUAGES

log = logging.getLogger(__name__)

NER_TAGS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
LABEL2ID: dict[str, int] = {t: i for i, t in enumerate(NER_TAGS)}
ID2LABEL: dict[int, str] = dict(enumerate(NER_TAGS))
label2id = LABEL2ID  # the name transformers configs use
id2label = ID2LABEL

HUB_REPO = "unimelb-nlp/wikiann"  # the legacy canonical name "wikiann" redirects here
LAYOUTS = ("auto", "rahimi", "xtreme")
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "test": "test"}
_PREFIX = re.compile(r"^([a-z]{2,12}(?:-[a-z]+)*):")  # en, zh-yue, be-x-old, simple
_DETECT_LINES = 50


_List = getattr(datasets, "List", None) or datasets.Sequence  # datasets>=4 has List; 3.x only Sequence


class WikiANNFormatError(DataFileError):
    """A WikiANN file that does not parse; the message names file:line (a ValueError)."""


def ner_features() -> datasets.Features:
    return datasets.Features(
        {
            "tokens": _List(datasets.Value("string")),
            "ner_tags": _List(datasets.ClassLabel(names=list(NER_TAGS))),
        }
    )


def _detect_prefix(lines: list[str], path: Path) -> tuple[str, int] | None:
    """The ``lang:`` prefix and the first line carrying it when most of the first token lines
    carry it (Rahimi), None when most carry none (XTREME); WikiANNFormatError when most carry a
    prefix but no one prefix has the majority (mixed languages in one file)."""
    firsts = list(itertools.islice(((i, line) for i, line in enumerate(lines, 1) if line.strip()), _DETECT_LINES))
    found = [(i, m.group(0)) for i, line in firsts if (m := _PREFIX.match(line))]
    if 2 * len(found) <= len(firsts):
        return None
    counts = collections.Counter(p for _, p in found)
    (top, n), *others = counts.most_common()
    if 2 * n > len(firsts):
        return top, next(i for i, p in found if p == top)
    second = others[0][0]
    at = {p: next(i for i, q in found if q == p) for p in (top, second)}
    raise WikiANNFormatError(
        f"{path}:{at[second]}: mixed language prefixes in one file: {excerpt(top, 30)} (line {at[top]}) and {excerpt(second, 30)} "
        f"(line {at[second]}); a Rahimi-layout file holds one language, every token prefixed by its code"
    )


def _columns_error(path: Path, lineno: int, raw: str, cols: list[str]) -> WikiANNFormatError:
    expected = "expected 'token<TAB>tag' (or 'lang:token<TAB>tag')"
    if len(cols) == 1:
        spaced = " (columns separated by spaces? they must be separated by one tab)" if " " in raw.strip() else ""
        return WikiANNFormatError(f"{path}:{lineno}: {expected}, found no tab in {excerpt(raw)}{spaced}")
    return WikiANNFormatError(f"{path}:{lineno}: {expected}: 2 tab-separated columns, found {len(cols)} in {excerpt(raw)}")


def read_wikiann(path: str | Path, *, layout: str = "auto") -> tuple[list[list[str]], list[list[str]]]:
    """Parse one file into (sentences of tokens, sentences of tag strings).

    layout: "auto" (detect), "rahimi" (``lang:token``) or "xtreme" (``token``).
    Raises WikiANNFormatError naming file:line for bytes that are not UTF-8 text (with the byte
    offset), a line without exactly two tab-separated columns, an unknown tag, a missing or a
    different language prefix in a Rahimi file, an empty token, or a file without sentences.
    A byte-order mark (U+FEFF) at the start of a line is dropped (files saved with one, or
    concatenated from such files). Lines end at "\n", "\r\n" or "\r".
    Tags ``I-X`` that do not continue an ``X`` entity are kept (seqeval/conlleval read them as
    the start of an entity) and reported once with their count and first file:line.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown WikiANN layout {layout!r}; expected one of {list(LAYOUTS)}")
    path = Path(path)
    text = read_text(path, "WikiANN file (token<TAB>tag lines)", WikiANNFormatError)
    if "\r" in text:  # universal newlines, as open() reads lines
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if BOM in text:
        lines = [line[1:] if line.startswith(BOM) else line for line in lines]
    if not any(line.strip() for line in lines):
        raise WikiANNFormatError(f"{path}: file is empty (no sentences); expected 'token<TAB>tag' lines")

    detected = _detect_prefix(lines, path) if layout != "xtreme" else None
    if layout == "rahimi" and detected is None:
        first = next(i for i, line in enumerate(lines, 1) if line.strip())
        raise WikiANNFormatError(
            f"{path}:{first}: layout='rahimi' but the first tokens do not share a 'lang:' prefix "
            f"(got {excerpt(lines[first - 1])}); use layout='xtreme' or 'auto'"
        )
    prefix, prefix_line = detected or (None, 0)

    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    tok_s: list[str] = []
    tag_s: list[str] = []
    bad_i = 0
    first_bad_i = None
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            if tok_s:
                sentences.append(tok_s)
                tags.append(tag_s)
                tok_s, tag_s = [], []
            continue
        cols = raw.split("\t")
        if len(cols) != 2:
            raise _columns_error(path, lineno, raw, cols)
        token, tag = cols
        tag = tag.strip()
        if tag not in LABEL2ID:
            swapped = "; the columns look swapped (expected token<TAB>tag)" if token.strip() in LABEL2ID else ""
            raise WikiANNFormatError(
                f"{path}:{lineno}: unknown tag {excerpt(tag)}; allowed tags are {', '.join(NER_TAGS)}{swapped}"
            )
        if prefix is not None:
            if not token.startswith(prefix):
                m = _PREFIX.match(token)
                if m is not None:
                    raise WikiANNFormatError(
                        f"{path}:{lineno}: mixed language prefixes in one file: {excerpt(prefix, 30)} (line {prefix_line}) "
                        f"and {excerpt(m.group(0), 30)} (line {lineno}); a Rahimi-layout file holds one language"
                    )
                raise WikiANNFormatError(
                    f"{path}:{lineno}: expected the language prefix {excerpt(prefix, 30)} (original Rahimi layout, "
                    f"detected from the first lines), found {excerpt(token)}"
                )
            token = token[len(prefix) :]
        if token == "":
            raise WikiANNFormatError(f"{path}:{lineno}: empty token before the tab in {excerpt(raw)}")
        if tag.startswith("I-"):
            prev = tag_s[-1] if tag_s else "O"
            if prev[2:] != tag[2:]:
                bad_i += 1
                first_bad_i = first_bad_i or f"{path}:{lineno}"
        tok_s.append(token)
        tag_s.append(tag)
    if tok_s:
        sentences.append(tok_s)
        tags.append(tag_s)
    if bad_i:
        log.warning(
            "%d 'I-X' tag(s) do not continue an X entity (first at %s); kept as is, "
            "seqeval/conlleval treat them as the start of an entity",
            bad_i,
            first_bad_i,
        )
    return sentences, tags


def load_wikiann(path: str | Path, *, layout: str = "auto") -> datasets.Dataset:
    """One WikiANN file as a Dataset with ``tokens`` (list[str]) and ``ner_tags`` (list[int],
    ids into ``NER_TAGS``)."""
    sentences, tags = read_wikiann(path, layout=layout)
    return datasets.Dataset.from_dict(
        {"tokens": sentences, "ner_tags": [[LABEL2ID[t] for t in s] for s in tags]},
        features=ner_features(),
    )


def wikiann_path(root: str | Path, lang: str, split: str) -> Path:
    """Find the file for (lang, split) under ``root``: XTREME names ``{split}-{lang}.tsv`` or a
    Rahimi folder ``{lang}/{split}``. ``split`` may be train, dev/validation, or test."""
    root = Path(root)
    if split not in _SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_ALIASES)}")
    s = _SPLIT_ALIASES[split]
    for cand in (root / f"{s}-{lang}.tsv", root / lang / s, root / lang / f"{s}.tsv"):
        if cand.is_file():
            return cand
    found = {p.stem.split("-", 1)[1] for p in root.glob(f"{s}-*.tsv")} | {p.parent.name for p in root.glob(f"*/{s}")}
    have = sorted(name for name in found if name in LANGUAGES)  # a folder such as rahimi-original-en is no language
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in LANGUAGES) if root.is_dir() else []
    hint = f"languages with a {s} split here: {', '.join(have)}" if have else f"no {s} files for a language under {root}"
    if folders and not have:
        hint += f"; its subfolders {', '.join(folders)} may hold the files: point at one of them"
    raise FileNotFoundError(f"no WikiANN {s} file for language {lang!r} under {root}; {hint}")


def load_wikiann_hub(lang: str, split: str, *, repo: str = HUB_REPO, **kwargs) -> datasets.Dataset:
    """WikiANN from the Hugging Face hub (needs internet), same columns and tag ids as
    ``load_wikiann``. split: train, dev/validation, or test. kwargs go to ``load_dataset``."""
    if split not in _SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_ALIASES)}")
    hub_split = {"train": "train", "dev": "validation", "test": "test"}[_SPLIT_ALIASES[split]]
    ds = datasets.load_dataset(repo, lang, split=hub_split, **kwargs)
    names = ds.features["ner_tags"].feature.names
    if list(names) != list(NER_TAGS):
        raise ValueError(f"{repo}/{lang}: tag names {names} differ from NER_TAGS {list(NER_TAGS)}")
    ds = ds.select_columns(["tokens", "ner_tags"])
    return ds.cast(ner_features())
