"""WikiANN NER (Pan et al. 2017) with the Rahimi et al. (2019) splits, as MAD-X uses it.

Two file layouts exist and both are read, auto-detected per file:

- original Rahimi (what users download): ``en:token<TAB>tag``, every token prefixed by its
  language code;
- XTREME: ``token<TAB>tag``, prefix stripped.

Sentences are separated by blank lines; a trailing blank line is optional, runs of blank lines
count as one. Tags are the 7-tag BIO set below, in the order of the Hugging Face ``wikiann``
dataset's ClassLabel, so ids agree with ``load_wikiann_hub``.

The layout is "Rahimi" when the first token line starts with a ``lang:`` prefix and more than
half of the first 50 token lines carry the same one; every line must then carry it (a line
without it is an error naming file:line). An XTREME token that happens to look like a prefix
("en:x", "http://...") cannot trigger this unless most of the first 50 tokens start alike.
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path

import datasets

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


class WikiANNFormatError(ValueError):
    """A WikiANN file that does not parse; the message names file:line."""


def ner_features() -> datasets.Features:
    return datasets.Features(
        {
            "tokens": _List(datasets.Value("string")),
            "ner_tags": _List(datasets.ClassLabel(names=list(NER_TAGS))),
        }
    )


def _detect_prefix(lines: list[str]) -> str | None:
    """The ``lang:`` prefix when most of the first token lines carry it (Rahimi), else None."""
    firsts = list(itertools.islice((line for line in lines if line.strip()), _DETECT_LINES))
    m = _PREFIX.match(firsts[0]) if firsts else None
    if m is None:
        return None
    prefix = m.group(0)
    return prefix if 2 * sum(line.startswith(prefix) for line in firsts) > len(firsts) else None


def read_wikiann(path: str | Path, *, layout: str = "auto") -> tuple[list[list[str]], list[list[str]]]:
    """Parse one file into (sentences of tokens, sentences of tag strings).

    layout: "auto" (detect), "rahimi" (``lang:token``) or "xtreme" (``token``).
    Raises WikiANNFormatError naming file:line for a line without a tab, an unknown tag, a
    missing language prefix in a Rahimi file, an empty token, or a file without sentences.
    Tags ``I-X`` that do not continue an ``X`` entity are kept (seqeval/conlleval read them as
    the start of an entity) and reported once with their count and first file:line.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown WikiANN layout {layout!r}; expected one of {list(LAYOUTS)}")
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()  # handles \n and \r\n; no trailing empty element for a final \n
    if not any(line.strip() for line in lines):
        raise WikiANNFormatError(f"{path}: file is empty (no sentences); expected 'token<TAB>tag' lines")

    prefix = _detect_prefix(lines)
    if layout == "rahimi" and prefix is None:
        first = next(i for i, line in enumerate(lines, 1) if line.strip())
        raise WikiANNFormatError(
            f"{path}:{first}: layout='rahimi' but the first tokens do not share a 'lang:' prefix "
            f"(got {lines[first - 1]!r}); use layout='xtreme' or 'auto'"
        )
    if layout == "xtreme":
        prefix = None

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
        if "\t" not in raw:
            raise WikiANNFormatError(
                f"{path}:{lineno}: expected 'token<TAB>tag' (or 'lang:token<TAB>tag'), found no tab in {raw!r}"
            )
        token, tag = raw.rsplit("\t", 1)
        tag = tag.strip()
        if tag not in LABEL2ID:
            raise WikiANNFormatError(
                f"{path}:{lineno}: unknown tag {tag!r}; allowed tags are {', '.join(NER_TAGS)}"
            )
        if prefix is not None:
            if not token.startswith(prefix):
                raise WikiANNFormatError(
                    f"{path}:{lineno}: expected the language prefix {prefix!r} (original Rahimi layout, "
                    f"detected from the first lines), found {token!r}"
                )
            token = token[len(prefix) :]
        if token == "":
            raise WikiANNFormatError(f"{path}:{lineno}: empty token before the tab in {raw!r}")
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
    have = sorted({p.stem.split("-", 1)[1] for p in root.glob(f"{s}-*.tsv")} | {p.parent.name for p in root.glob(f"*/{s}")})
    hint = f"languages with a {s} split here: {', '.join(have)}" if have else f"no {s} files under {root}"
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
