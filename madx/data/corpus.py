"""MLM corpora on disk: text files read as a stream, and ``madx data mlm-corpus``.

**Reading.** A corpus is one or more UTF-8 text files, one document per line; each line is
stripped, blank lines are skipped, a byte-order mark at the start of a line is dropped. Nothing
holds a whole corpus: ``iter_documents`` yields the documents of a file range by range
(``byte_ranges``: ranges of about ``READ_CHUNK_BYTES`` that end at a newline), and
``tokenize_range`` turns one range into a flat array of token ids plus each document's length,
which is what ``madx.data.mlm`` runs in worker processes. This module imports nothing heavy, so a
spawned worker starts in about a second. ``inspect_text_file`` reads a file once, start to end:
it checks that it is UTF-8 text (``TextFileError`` naming file:line and the byte offset), that it
is not another format given by mistake (WikiANN ``token<TAB>tag`` TSV, JSON such as SQuAD/XQuAD:
``TextFileError`` naming the file and what was expected), and returns its sha256 and whether
it holds a non-blank line; ``madx.data.mlm`` records that hash beside its cache, keyed by the file's
identity, so a later run finds its blocks without reading the corpus again.

**mlm-corpus.** A language adapter needs unlabelled text in its language. WikiANN's train and
dev sentences are Wikipedia text, so they may join a language's MLM corpus; its test sentences
never may, or a language adapter would have read the sentences its NER model is scored on. Each
output file is the text file's lines, then the sentences of the chosen WikiANN splits (tokens
joined by spaces; without spaces for the character-split Chinese and Japanese), each distinct
line once, with every line that contains a WikiANN test sentence of that language dropped (the
same whitespace-blind matching as ``madx data fetch``).

    OUT/{lang}.txt      one line per sentence or paragraph (what the suites' ``data.text`` reads)
    OUT/MANIFEST.json   per language: inputs with their sha256, lines from each, dropped lines
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from madx.data.checks import BOM, TextFileError, check_file, excerpt, first_problem, not_text_error

READ_CHUNK_BYTES = 4 << 20  # text per range: one tokenisation task, a few MB of Python objects at most
TOKENIZE_DOCS = 512  # documents per tokenizer call inside a range
EXPECTED = "plain UTF-8 text, one document per line"
_SNIFF_BYTES = 1 << 16
_SNIFF_LINES = 20
_NER_TAG = re.compile(r"O|[BIES]-\S+")


class _NotText(Exception):
    """A range held bytes that are not UTF-8 text; the caller rescans the file for file:line."""


def text_error(path: Path) -> TextFileError:
    """The TextFileError for a file that is not UTF-8 text: its first bad byte found by a rescan (file:line, offset)."""
    with open(path, "rb") as f:
        head = f.read(1024)
        f.seek(0)
        problem = first_problem(f)
    if problem is None:  # cannot happen: the byte scan applies the same rules as the text read
        return TextFileError(f"{path}: not UTF-8 text")
    return not_text_error(path, problem, head, TextFileError)


def check_text_format(path: Path, head: bytes) -> None:
    """TextFileError when a corpus file's first bytes ``head`` look like WikiANN TSV or JSON."""
    text = head.decode("utf-8", errors="replace")
    body = text.lstrip().lstrip(BOM).lstrip()
    after = body[1:].lstrip()[:1]
    if (body[:1] == "{" and after in ('"', "}")) or (body[:1] == "[" and after in ("{", "[", '"', "]")):
        raise TextFileError(f"{path}: looks like JSON (it starts {excerpt(body[:40])}; SQuAD/XQuAD files are JSON), "
                            f"not a text corpus; expected {EXPECTED}")
    lines = text.split("\n")
    if len(head) >= _SNIFF_BYTES:
        lines = lines[:-1]  # the last one may be cut
    sample = [(n, s) for n, s in ((n, line.strip().lstrip(BOM)) for n, line in enumerate(lines, 1)) if s][:_SNIFF_LINES]
    if sample and all(len(s.split("\t")) >= 2 and _NER_TAG.fullmatch(s.split("\t")[-1].strip()) for _, s in sample):
        n, s = sample[0]
        raise TextFileError(f"{path}: looks like WikiANN NER data (token<TAB>tag on every line; line {n}: {excerpt(s)}), "
                            f"not a text corpus; expected {EXPECTED} (`madx data mlm-corpus --wikiann DIR` turns "
                            f"WikiANN train/dev files into MLM text)")


def inspect_text_file(path: str | Path) -> tuple[str, bool]:
    """Read a corpus file once and check it: its format (see the module doc), strict UTF-8 without
    NUL bytes. Returns (the sha256 of its bytes, whether any line is not blank); raises
    TextFileError (a ValueError), FileNotFoundError or IsADirectoryError naming the file."""
    path = check_file(path, f"text file ({EXPECTED})")
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    has_text = False
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        check_text_format(path, head)
        chunk = head
        while chunk:
            h.update(chunk)
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError:
                raise text_error(path) from None
            if b"\x00" in chunk:
                raise text_error(path)
            has_text = has_text or bool(text.replace(BOM, "").strip())
            chunk = f.read(READ_CHUNK_BYTES)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:  # the file ends inside a character
            raise text_error(path) from None
    return h.hexdigest(), has_text


def byte_ranges(path: str | Path, chunk: int | None = None) -> list[tuple[int, int]]:
    """(start, end) byte ranges of about ``chunk`` bytes (default ``READ_CHUNK_BYTES``) covering the
    file, each ending just after a newline (or at the end of the file)."""
    chunk = chunk or READ_CHUNK_BYTES
    ranges = []
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        start = 0
        while start < size:
            f.seek(min(start + chunk, size))
            f.readline()  # on to the end of the line the cut fell in
            end = min(f.tell(), size)
            ranges.append((start, end))
            start = end
    return ranges


def documents_in(path: Path, start: int, end: int) -> list[str]:
    """The documents (non-blank lines, stripped) of bytes [start, end) of a file, read as ``open(path,
    encoding="utf-8")`` would: newlines \\n, \\r\\n and \\r; a byte-order mark opening a line dropped."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _NotText() from None
    out = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        s = line.strip()
        if s and s[0] == BOM:
            s = s[1:].strip()
        if "\x00" in s:  # binary, or UTF-16 without a byte-order mark
            raise _NotText()
        if s:
            out.append(s)
    return out


def check_corpus_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The paths, each checked to be a file that does not look like WikiANN TSV or JSON (from its
    first 64 KB: cheap, for a command to call before it loads a model). Raises TextFileError,
    FileNotFoundError or IsADirectoryError naming the file and what a corpus should be."""
    out = []
    for path in as_paths(paths):
        path = check_file(path, f"text file ({EXPECTED})")
        with open(path, "rb") as f:
            check_text_format(path, f.read(_SNIFF_BYTES))
        out.append(path)
    return out


def iter_documents(paths: str | Path | Sequence[str | Path]) -> Iterator[str]:
    """The documents of the given files, in order, streamed: a few MB are in memory at a time.
    Every file is checked by ``check_corpus_files`` before any document is yielded."""
    for path in check_corpus_files(paths):
        for start, end in byte_ranges(path):
            try:
                docs = documents_in(path, start, end)
            except _NotText:
                raise text_error(path) from None
            yield from docs


def read_text_files(paths: str | Path | Sequence[str | Path]) -> list[str]:
    """All non-blank lines of the given UTF-8 files, stripped, in order (for small files: the list is
    in memory; ``iter_documents`` streams).

    Raises TextFileError (a ValueError) naming file:line and the byte offset for bytes that are
    not UTF-8 or a NUL byte, with a hint (e.g. re-encode as UTF-8), or naming the file when it looks
    like WikiANN TSV or JSON; FileNotFoundError or IsADirectoryError naming a path that is not a file.
    """
    return list(iter_documents(paths))


def as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("no corpus files given (an empty list of paths)")
    return out


def tokenize_documents(docs: Sequence[str], tokenizer: Any, separate_documents: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ids, lengths): every document's ids without special tokens, each followed by ``</s>`` when
    ``separate_documents`` and it has any, concatenated (int32); and each document's length in that
    stream (int64, 0 for a document without tokens). The ids are ``tokenizer(docs, add_special_tokens=False)``'s."""
    sep = tokenizer.sep_token_id
    ids_parts, len_parts = [], []
    for i in range(0, len(docs), TOKENIZE_DOCS):
        ids = tokenizer(list(docs[i : i + TOKENIZE_DOCS]), add_special_tokens=False, verbose=False)["input_ids"]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        if separate_documents:
            ids = [d + [sep] if d else d for d in ids]
            lengths += lengths > 0
        total = int(lengths.sum())
        ids_parts.append(np.fromiter((t for d in ids for t in d), dtype=np.int32, count=total))
        len_parts.append(lengths)
    if not ids_parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    return np.concatenate(ids_parts), np.concatenate(len_parts)


_worker_tokenizer: Any = None


def init_worker(tokenizer_pickle: bytes) -> None:
    """Pool initializer: one tokenizer thread per worker process (the processes are the parallelism)."""
    import os
    import pickle

    global _worker_tokenizer
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = pickle.loads(tokenizer_pickle)


def tokenize_range(task: tuple[str, int, int, bool], tokenizer: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``tokenize_documents`` of one byte range (path, start, end, separate_documents); None when the
    range is not UTF-8 text (the caller names the file:line)."""
    path, start, end, separate_documents = task
    try:
        docs = documents_in(Path(path), start, end)
    except _NotText:
        return None
    return tokenize_documents(docs, tokenizer if tokenizer is not None else _worker_tokenizer, separate_documents)


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
                     min_match_chars: int | None = None,
                     say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Writes ``out_dir/{lang}.txt`` per language and ``out_dir/MANIFEST.json``; returns the manifest.
    A language with no input at all is listed under ``missing`` (no file written).
    min_match_chars: see ``madx.data.fetch.SentenceFilter`` (default: fetch's)."""
    # here, not at the top: the reading half of this module is what tokenisation workers import
    from madx.atomic import atomic_write_json
    from madx.data.fetch import DEFAULT_MIN_MATCH_CHARS, SentenceFilter, sha256_file, write_text
    from madx.data.wikiann import read_wikiann

    min_match_chars = DEFAULT_MIN_MATCH_CHARS if min_match_chars is None else min_match_chars
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
