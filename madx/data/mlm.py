"""Masked-language-modelling data for language adapters: corpora, fixed-length blocks, masking.

Corpus -> blocks. Each line of a text file is one document (blank lines skipped). Documents
are tokenised without special tokens, concatenated with ``</s>`` after each one (RoBERTa's
FULL-SENTENCES packing), and cut into blocks of exactly ``max_seq_length`` tokens:
``<s>`` + ``max_seq_length - 2`` corpus tokens + ``</s>``. No block is padded; documents are
packed in batches of ``batch_size`` documents and the tokens left over at the end of each batch
(fewer than one block) are dropped, as in transformers' ``run_mlm.py`` (whose ``datasets.map``
batches this reproduces: the blocks are those of one process mapping the corpus in batches).

No corpus is held in memory. The text files are read range by range (``madx.data.corpus``),
tokenised in several processes when the corpus is large (``num_proc``; the blocks do not depend
on it), and the blocks are written as they come to an Arrow file that ``datasets`` memory-maps:
peak memory is a few ranges and one batch of documents, whatever the corpus size.

The cache: the blocks' file name is a hash of the tokenizer (its full serialisation), the corpus
content and every setting that changes the result; any change gives a new file. A text file's
content hash is computed once, in the pass that also checks the file (UTF-8, not WikiANN TSV or
JSON, not blank), and recorded in ``<cache_dir>/sources/`` under the file's identity (device,
inode, size, modification time in ns). A later call that finds the same identity takes the
recorded hash and opens the cached blocks without reading the corpus. A record is trusted only
when the file had not been modified within ``RACY_NS`` of the hashing (git's "racily clean" rule:
an edit in the same timestamp tick, same size, would otherwise go unseen).

Masking (``MaskedLMCollator``): BERT's recipe, 15% of the non-special tokens are chosen; of
those 80% become ``<mask>``, 10% a random token, 10% stay. It is written here rather than reusing
``transformers.DataCollatorForLanguageModeling`` because that collator (a) draws its random
replacements from the whole vocabulary, special tokens included, so ``<s>``/``<pad>``/``<mask>``
can be inserted as "random words", and (b) takes only an integer seed, not a caller's
``torch.Generator``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from madx.atomic import atomic_write, atomic_write_json
from madx.data.checks import check_file, check_int, check_real
from madx.data.corpus import (EXPECTED, as_paths, byte_ranges, init_worker, inspect_text_file, iter_documents,
                              read_text_files, text_error, tokenize_documents, tokenize_range)

log = logging.getLogger(__name__)

__all__ = ["MaskedLMCollator", "build_mlm_dataset", "iter_documents", "load_text_corpus", "load_text_hub",
           "read_text_files", "tokenizer_fingerprint"]

_List = getattr(datasets, "List", None) or datasets.Sequence  # datasets>=4 has List; 3.x only Sequence
BLOCKS_FORMAT = "2"  # bump when the blocks written change, so old caches are not reused
FEATURES = datasets.Features({"input_ids": _List(datasets.Value("int32"))})
RACY_NS = 2_000_000_000  # a source record made within this of the file's mtime is re-checked next time
PARALLEL_MIN_BYTES = 64 << 20  # below this, worker start-up (about a second each) costs more than it saves
MAX_AUTO_PROCESSES = 8
DATASET_ROWS = 10_000  # rows of a Dataset source tokenised per call


def load_text_corpus(paths: str | Path | Sequence[str | Path]) -> datasets.Dataset:
    """Plain text files (one document per line) as an in-memory Dataset with one ``text`` column
    (small corpora; ``build_mlm_dataset`` streams the files instead)."""
    lines = read_text_files(paths)
    if not lines:
        names = [str(p) for p in as_paths(paths)]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise ValueError(f"no text in {shown}: every line is blank")
    return datasets.Dataset.from_dict({"text": lines}, features=datasets.Features({"text": datasets.Value("string")}))


def load_text_hub(name: str, split: str = "train", *, config: str | None = None, text_column: str = "text", **kwargs) -> datasets.Dataset:
    """A hub text dataset (needs internet) reduced to one ``text`` column, blank rows dropped.
    kwargs go to ``datasets.load_dataset``."""
    ds = datasets.load_dataset(name, config, split=split, **kwargs)
    if text_column not in ds.column_names:
        raise ValueError(f"{name} ({config}) split {split!r} has no column {text_column!r}; columns: {ds.column_names}")
    ds = ds.select_columns([text_column])
    if text_column != "text":
        ds = ds.rename_column(text_column, "text")
    return ds.filter(lambda t: bool(t and t.strip()), input_columns="text")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash that changes whenever the tokenizer would tokenise differently."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode("utf-8"))
        h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    else:  # a slow tokenizer: let datasets hash the object
        h.update(datasets.fingerprint.Hasher.hash(tokenizer).encode())
    return h.hexdigest()


def file_record(path: Path, cache_dir: Path) -> dict[str, Any]:
    """A corpus file's identity, ``sha256`` and ``has_text``: recorded under ``cache_dir/sources``
    by the file's identity, or computed by ``inspect_text_file`` (which checks the file) and recorded."""
    st = check_file(path, f"text file ({EXPECTED})").stat()
    where = str(path.resolve())
    identity = {"path": where, "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    record = cache_dir / "sources" / f"{hashlib.sha256(where.encode()).hexdigest()[:32]}.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = None
    if (isinstance(known, dict) and all(known.get(k) == v for k, v in identity.items())
            and known.get("hashed_at_ns", 0) - st.st_mtime_ns > RACY_NS and isinstance(known.get("sha256"), str)):
        return known
    hashed_at = time.time_ns()  # before reading: an edit during the read makes the mtime later than this
    digest, has_text = inspect_text_file(path)
    known = {**identity, "sha256": digest, "has_text": has_text, "hashed_at_ns": hashed_at}
    atomic_write_json(record, known)
    return known


def _content_fingerprint(source: Any, cache_dir: Path) -> str:
    h = hashlib.sha256()
    if isinstance(source, datasets.Dataset):
        if source.cache_files:  # backed by arrow files (hub, load_from_disk): fingerprint is stable
            h.update(f"dataset:{source._fingerprint}".encode())
        else:  # in memory: its fingerprint is random per process, so hash the text itself
            for t in source["text"]:
                h.update(t.encode("utf-8"))
                h.update(b"\n")
        return h.hexdigest()
    records = [file_record(p, cache_dir) for p in source]
    if not any(r.get("has_text") for r in records):
        shown = ", ".join(map(str, source[:3])) + (f" and {len(source) - 3} more" if len(source) > 3 else "")
        raise ValueError(f"no text in {shown}: every line is blank")
    for r in records:
        h.update(b"file\x00" + r["sha256"].encode())
    return h.hexdigest()


class _BlockCutter:
    """Pieces of the token stream in, blocks out: ``add(ids, lengths)`` takes the next documents
    (their ids concatenated, and each one's length); every ``batch_size`` documents the batch's
    stream is cut into blocks of ``block`` (``<s>`` + block - 2 ids + ``</s>``), the rest dropped."""

    def __init__(self, write, block: int, batch_size: int, cls: int, sep: int):
        self.write, self.block, self.batch_size, self.cls, self.sep = write, block, batch_size, cls, sep
        self.parts: list[np.ndarray] = []
        self.in_batch = 0
        self.documents = self.blocks = self.tokens = 0

    def add(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.documents += len(lengths)
        self.tokens += len(ids)
        doc = tok = 0
        while doc < len(lengths):
            take = min(self.batch_size - self.in_batch, len(lengths) - doc)
            n = int(lengths[doc : doc + take].sum())
            self.parts.append(ids[tok : tok + n])
            doc, tok, self.in_batch = doc + take, tok + n, self.in_batch + take
            if self.in_batch == self.batch_size:
                self.cut()

    def cut(self) -> None:
        stream = np.concatenate(self.parts) if self.parts else np.zeros(0, np.int32)
        self.parts, self.in_batch = [], 0
        body = self.block - 2
        n = len(stream) // body
        if n == 0:
            return
        blocks = np.empty((n, self.block), dtype=np.int32)  # (n, T)
        blocks[:, 0], blocks[:, -1] = self.cls, self.sep
        blocks[:, 1:-1] = stream[: n * body].reshape(n, body)
        offsets = np.arange(0, (n + 1) * self.block, self.block, dtype=np.int32)
        self.write(pa.table({"input_ids": pa.ListArray.from_arrays(offsets, blocks.reshape(-1))}))
        self.blocks += n


def _processes(num_proc: int | None, total_bytes: int, tasks: int) -> int:
    if num_proc is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        num_proc = min(cpus, MAX_AUTO_PROCESSES) if total_bytes >= PARALLEL_MIN_BYTES else 1
    return max(1, min(num_proc, tasks))


def _file_pieces(paths: list[Path], tokenizer: Any, separate_documents: bool, num_proc: int | None) -> Iterator[tuple]:
    """(ids, lengths) per byte range of the files, in order; tokenised in worker processes when
    there are several (spawned: a forked child of a process that used the tokenizer's threads may hang)."""
    tasks = [(str(p), start, end, separate_documents) for p in paths for start, end in byte_ranges(p)]
    processes = _processes(num_proc, sum(p.stat().st_size for p in paths), len(tasks))
    log.info("tokenising %d ranges of %s in %d process(es)", len(tasks), ", ".join(map(str, paths)), processes)
    if processes == 1:
        results: Iterable = (tokenize_range(task, tokenizer) for task in tasks)
        yield from _checked(tasks, results)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=init_worker, initargs=(pickle.dumps(tokenizer),)) as pool:
        yield from _checked(tasks, pool.imap(tokenize_range, tasks))


def _checked(tasks: list[tuple], results: Iterable) -> Iterator[tuple]:
    for task, result in zip(tasks, results):
        if result is None:  # the file changed since it was checked, or a recorded check was wrong
            raise text_error(Path(task[0]))
        yield result


def _dataset_pieces(source: datasets.Dataset, tokenizer: Any, separate_documents: bool) -> Iterator[tuple]:
    for start in range(0, len(source), DATASET_ROWS):
        yield tokenize_documents(source[start : start + DATASET_ROWS]["text"], tokenizer, separate_documents)


def build_mlm_dataset(
    source: str | Path | Sequence[str | Path] | datasets.Dataset,
    tokenizer: Any,
    max_seq_length: int = 256,
    *,
    cache_dir: str | Path | None = None,
    separate_documents: bool = True,
    batch_size: int = 10_000,
    num_proc: int | None = None,
    load_from_cache: bool = True,
) -> datasets.Dataset:
    """Tokenise a corpus into fixed blocks of ``max_seq_length`` ids (column ``input_ids``), a
    memory-mapped Dataset.

    source: a text file, a list of them, or a Dataset with a ``text`` column (``load_text_hub``).
    cache_dir: where the blocks are cached (default ``<datasets cache>/madx_mlm``).
    batch_size: documents per packing batch; the remainder (< one block) of each batch is dropped.
    num_proc: tokenising processes for text files (default: the CPUs available, at most
        ``MAX_AUTO_PROCESSES``, for corpora of ``PARALLEL_MIN_BYTES`` or more; else one). The
        blocks are the same for any value.
    Raises ValueError when the corpus is too small for a single block; TextFileError (a
    ValueError) naming a file that is not UTF-8 text or looks like WikiANN TSV or JSON, before
    anything is written.
    """
    check_int("max_seq_length", max_seq_length)
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be >= 3 (<s>, a token, </s>), got {max_seq_length}")
    check_int("batch_size", batch_size, minimum=1)
    check_int("num_proc", num_proc, minimum=1, allow_none=True)
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("the tokenizer needs cls (<s>) and sep (</s>) tokens to frame blocks")
    is_dataset = isinstance(source, datasets.Dataset)
    if is_dataset and "text" not in source.column_names:
        raise ValueError(f"the corpus dataset needs a 'text' column; it has {source.column_names}")
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "madx_mlm"
    paths = None if is_dataset else [Path(p) for p in as_paths(source)]
    settings = {"blocks": BLOCKS_FORMAT, "max_seq_length": max_seq_length, "separate_documents": separate_documents,
                "batch_size": batch_size}
    # Each file is checked (and hashed) before anything is written; later calls find its record.
    content = _content_fingerprint(source if is_dataset else paths, cache_dir)
    key = hashlib.sha256(
        "\x00".join([tokenizer_fingerprint(tokenizer), content, json.dumps(settings, sort_keys=True)]).encode()
    ).hexdigest()[:32]
    cache_file = cache_dir / f"mlm-{key}.arrow"
    if load_from_cache and cache_file.is_file():
        return datasets.Dataset.from_file(str(cache_file))

    started = time.perf_counter()
    pieces = (_dataset_pieces(source, tokenizer, separate_documents) if is_dataset
              else _file_pieces(paths, tokenizer, separate_documents, num_proc))
    stats: dict[str, int] = {}

    def write(tmp: str) -> None:
        with datasets.arrow_writer.ArrowWriter(features=FEATURES, path=tmp) as writer:
            cutter = _BlockCutter(writer.write_table, max_seq_length, batch_size, tokenizer.cls_token_id,
                                  tokenizer.sep_token_id)
            for ids, lengths in pieces:
                cutter.add(ids, lengths)
            cutter.cut()  # the last, partial batch
            if cutter.blocks == 0:
                raise ValueError(f"the corpus gives no full block of {max_seq_length} tokens ({cutter.documents} "
                                 f"documents); lower max_seq_length or add text")
            writer.finalize()
        stats.update(documents=cutter.documents, tokens=cutter.tokens, blocks=cutter.blocks)

    atomic_write(cache_file, write)
    seconds = time.perf_counter() - started
    log.info("%s: %d documents, %d tokens, %d blocks of %d in %.1f s (%.0f tokens/s)", cache_file, stats["documents"],
             stats["tokens"], stats["blocks"], max_seq_length, seconds, stats["tokens"] / max(seconds, 1e-9))
    return datasets.Dataset.from_file(str(cache_file))


def _reference(source: str | Path | Sequence[str | Path], tokenizer: Any, max_seq_length: int = 256, *,
               cache_file: str | Path, separate_documents: bool = True, batch_size: int = 10_000) -> datasets.Dataset:
    """The blocks as the implementation before streaming made them (every line in a Python list, an
    in-memory Dataset, one ``datasets.map`` process in batches of ``batch_size`` writing ``cache_file``):
    the oracle ``build_mlm_dataset`` is tested against and the benchmark's "before". Memory: the corpus, many times."""
    lines = read_text_files(source)
    texts = datasets.Dataset.from_dict({"text": lines}, features=datasets.Features({"text": datasets.Value("string")}))
    cls, sep, body = tokenizer.cls_token_id, tokenizer.sep_token_id, max_seq_length - 2

    def chunk(batch: dict) -> dict:
        docs = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
        stream: list[int] = []
        for ids in docs:
            stream.extend(ids)
            if separate_documents and ids:
                stream.append(sep)
        return {"input_ids": [[cls, *stream[i * body : (i + 1) * body], sep] for i in range(len(stream) // body)]}

    return texts.map(chunk, batched=True, batch_size=batch_size, remove_columns=["text"], features=FEATURES,
                     cache_file_name=str(cache_file), load_from_cache_file=False)


class MaskedLMCollator:
    """Pad a list of ``{"input_ids": [...]}`` and mask it for MLM (BERT's 15% with 80/10/10).

    Returns ``input_ids``, ``attention_mask`` and ``labels`` (the original id where a token was
    chosen, -100 elsewhere), all (B, T) int64. A packed batch (every sequence of the same length:
    ``build_mlm_dataset``'s blocks) has no padding, and then no ``attention_mask`` is returned, so
    attention runs without a mask tensor (SDPA's flash kernel is eligible); pass
    ``always_attention_mask=True`` to get the all-ones mask anyway. Special tokens (``tokenizer.all_special_ids``,
    padding included) are never chosen, and random replacements are drawn from the non-special
    vocabulary only. Given a ``torch.Generator`` (or ``seed``) the masks are reproducible; with
    neither it uses torch's global RNG. In a multi-worker DataLoader give each worker its own
    generator, or they draw the same masks.
    """

    def __init__(
        self,
        tokenizer: Any,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        pad_to_multiple_of: int | None = None,
        always_attention_mask: bool = False,
    ):
        check_real("mlm_probability", mlm_probability, low=0.0, high=1.0, open_low=True, open_high=True)
        check_real("mask_replace_prob", mask_replace_prob, low=0.0, high=1.0)
        check_real("random_replace_prob", random_replace_prob, low=0.0, high=1.0)
        check_int("pad_to_multiple_of", pad_to_multiple_of, minimum=1, allow_none=True)
        check_int("seed", seed, allow_none=True)
        if mask_replace_prob + random_replace_prob > 1:
            raise ValueError(
                f"need mask_replace_prob, random_replace_prob >= 0 with sum <= 1, got {mask_replace_prob}, {random_replace_prob}"
            )
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("MLM needs a tokenizer with mask and pad tokens")
        if generator is not None and seed is not None:
            raise ValueError("pass generator or seed, not both")
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.pad_to_multiple_of = pad_to_multiple_of
        self.always_attention_mask = always_attention_mask
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        vocab = torch.arange(len(tokenizer), dtype=torch.long)
        self.random_pool = vocab[~torch.isin(vocab, self.special_ids)]  # (V',)
        if len(self.random_pool) == 0:
            raise ValueError("the tokenizer has no non-special tokens to draw random replacements from")

    def _rand(self, shape: torch.Size) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator)

    def __call__(self, features: Iterable[dict]) -> dict[str, torch.Tensor]:
        seqs = [torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features]
        if not seqs:
            raise ValueError("MaskedLMCollator got an empty batch")
        T = max(len(s) for s in seqs)
        if self.pad_to_multiple_of:
            T = -(-T // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = s
            attention_mask[i, : len(s)] = 1

        eligible = ~torch.isin(input_ids, self.special_ids) & attention_mask.bool()
        chosen = (self._rand(input_ids.shape) < self.mlm_probability) & eligible
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        # One uniform draw splits the chosen tokens into mask / random / keep.
        u = self._rand(input_ids.shape)
        to_mask = chosen & (u < self.mask_replace_prob)
        to_random = chosen & (u >= self.mask_replace_prob) & (u < self.mask_replace_prob + self.random_replace_prob)
        random_ids = self.random_pool[
            torch.randint(len(self.random_pool), input_ids.shape, generator=self.generator)
        ]
        input_ids = torch.where(to_mask, torch.full_like(input_ids, self.mask_id), input_ids)
        input_ids = torch.where(to_random, random_ids, input_ids)
        if not self.always_attention_mask and bool(attention_mask.all()):
            return {"input_ids": input_ids, "labels": labels}  # packed: nothing to mask out
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
