"""MLM corpora from local text plus the WikiANN training sentences: ``madx data mlm-corpus``.

A language adapter needs unlabelled text in its language. WikiANN's train and dev sentences are
Wikipedia text, so they may join a language's MLM corpus; its test sentences never may, or a
language adapter would have read the sentences its NER model is scored on. Each output file is
the text file's lines, then the sentences of the chosen WikiANN splits (tokens joined by
spaces; without spaces for the character-split Chinese and Japanese), each distinct line once,
with every line that contains a WikiANN test sentence of that language dropped (the same
whitespace-blind matching as ``madx data fetch``).

    OUT/{lang}.txt      one line per sentence or paragraph (what the suites' ``data.text`` reads)
    OUT/MANIFEST.json   per language: inputs with their sha256, lines from each, dropped lines
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from madx.atomic import atomic_write_json
from madx.data.fetch import DEFAULT_MIN_MATCH_CHARS, SentenceFilter, sha256_file, write_text
from madx.data.mlm import read_text_files
from madx.data.wikiann import read_wikiann

WIKIANN_TRAINING_SPLITS = ("train", "dev")
# WikiANN splits Chinese and Japanese text into single characters; joined by spaces they would
# read as spaced-out characters, unlike any text the tokenizer was trained on.
JOINED_WITHOUT_SPACES = frozenset({"ja", "zh", "zh-yue", "wuu", "gan", "lzh"})
FORMAT_VERSION = 1


def languages_in(text_dir: Path | None, wikiann_dir: Path | None, splits: Sequence[str]) -> list[str]:
    """Every language with a ``{lang}.txt`` in ``text_dir`` or a ``{split}-{lang}.tsv`` of ``splits`` in ``wikiann_dir``."""
    found = set()
    if text_dir is not None:
        found |= {p.stem for p in text_dir.glob("*.txt")}
    if wikiann_dir is not None:
        for split in splits:
            found |= {p.stem.split("-", 1)[1] for p in wikiann_dir.glob(f"{split}-*.tsv")}
    return sorted(found)


def build_mlm_corpus(out_dir: str | Path, languages: Iterable[str] | None = None, *, text_dir: str | Path | None = None,
                     wikiann_dir: str | Path | None = None, splits: Sequence[str] = WIKIANN_TRAINING_SPLITS,
                     min_match_chars: int = DEFAULT_MIN_MATCH_CHARS,
                     say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Writes ``out_dir/{lang}.txt`` per language and ``out_dir/MANIFEST.json``; returns the manifest.
    A language with no input at all is listed under ``missing`` (no file written)."""
    if text_dir is None and wikiann_dir is None:
        raise ValueError("nothing to build from: give a text folder, a WikiANN folder or both")
    bad = [s for s in splits if s not in WIKIANN_TRAINING_SPLITS]
    if bad:
        raise ValueError(f"WikiANN splits {bad}: only {list(WIKIANN_TRAINING_SPLITS)} may join an MLM corpus (never test)")
    text_dir = Path(text_dir) if text_dir is not None else None
    wikiann_dir = Path(wikiann_dir) if wikiann_dir is not None else None
    for name, folder in (("text", text_dir), ("WikiANN", wikiann_dir)):
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"{folder}: the {name} folder does not exist")
    out_dir = Path(out_dir)
    if out_dir.resolve() in {d.resolve() for d in (text_dir, wikiann_dir) if d is not None}:
        raise ValueError(f"{out_dir}: the output folder must differ from the input folders (the files would be replaced)")
    languages = list(languages) if languages is not None else languages_in(text_dir, wikiann_dir, splits)
    manifest: dict[str, Any] = {"format": FORMAT_VERSION, "text_dir": str(text_dir) if text_dir else None,
                                "wikiann_dir": str(wikiann_dir) if wikiann_dir else None, "splits": list(splits),
                                "min_match_chars": min_match_chars, "languages": {}, "missing": []}
    for lang in languages:
        inputs: list[dict[str, Any]] = []
        parts: list[list[str]] = []
        text_file = text_dir / f"{lang}.txt" if text_dir is not None else None
        if text_file is not None and text_file.is_file():
            lines = read_text_files([text_file])
            inputs.append({"file": str(text_file), "sha256": sha256_file(text_file), "lines": len(lines)})
            parts.append(lines)
        for split in splits if wikiann_dir is not None else ():
            path = wikiann_dir / f"{split}-{lang}.tsv"
            if path.is_file():
                sentences, _ = read_wikiann(path)
                inputs.append({"file": str(path), "sha256": sha256_file(path), "lines": len(sentences)})
                joiner = "" if lang in JOINED_WITHOUT_SPACES else " "
                parts.append([joiner.join(tokens) for tokens in sentences])
        if not inputs:
            manifest["missing"].append(lang)
            say(f"{lang}: no text and no WikiANN {'/'.join(splits)} sentences; no corpus written")
            continue
        test = wikiann_dir / f"test-{lang}.tsv" if wikiann_dir is not None else None
        exclude = None
        if test is not None and test.is_file():
            sentences, _ = read_wikiann(test)
            exclude = SentenceFilter(("".join(tokens) for tokens in sentences), min_match_chars)
        path = out_dir / f"{lang}.txt"
        stats = write_text(path, (line for part in parts for line in part), max_bytes=None, exclude=exclude)
        manifest["languages"][lang] = {
            "inputs": inputs, "excludes": str(test) if exclude is not None else None,
            "excludes_sha256": sha256_file(test) if exclude is not None else None,
            **{k: stats[k] for k in ("rows", "bytes", "duplicate_lines", "excluded_lines")},
            **({"sha256": sha256_file(path)} if stats["rows"] else {})}
        if stats["rows"] == 0:  # write_text wrote nothing; a file from an earlier build would stay, so name it
            manifest["missing"].append(lang)
            stale = f"; {path} from an earlier build is left as it was" if path.exists() else ""
            say(f"{lang}: no line left after {stats['duplicate_lines']} duplicates and {stats['excluded_lines']} lines "
                f"with a WikiANN test sentence were dropped; no corpus written{stale}")
            continue
        excluded = (f"{stats['excluded_lines']} with a WikiANN test sentence dropped" if exclude is not None
                    else "no WikiANN test set to exclude")
        sources = " + ".join(f"{i['lines']} {Path(i['file']).name}" for i in inputs)
        say(f"{path}: {stats['rows']} lines ({sources}); "
            f"{stats['duplicate_lines']} duplicates, {excluded}")
    atomic_write_json(out_dir / "MANIFEST.json", manifest)
    return manifest
