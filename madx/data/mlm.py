"""Masked-language-modelling data for language adapters: corpora, fixed-length blocks, masking.

Corpus -> blocks. Each line of a text file is one document (blank lines skipped). Documents
are tokenised without special tokens, concatenated with ``</s>`` after each one (RoBERTa's
FULL-SENTENCES packing), and cut into blocks of exactly ``max_seq_length`` tokens:
``<s>`` + ``max_seq_length - 2`` corpus tokens + ``</s>``. No block is padded; the tokens left
over at the end of each map batch (fewer than one block) are dropped, as in transformers'
``run_mlm.py``.

The blocks are cached on disk by ``datasets``: the cache file's name is a hash of the tokenizer
(its full serialisation), the corpus content (file bytes, or a hub dataset's fingerprint) and
every setting that changes the result, so a second run with the same inputs reads the blocks
back instead of re-tokenising, and any change produces a new file.

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch

from madx.data.checks import BOM, TextFileError, check_file, check_int, check_real, first_problem, not_text_error

log = logging.getLogger(__name__)

_List = getattr(datasets, "List", None) or datasets.Sequence  # datasets>=4 has List; 3.x only Sequence
_CHUNKER_VERSION = "1"  # bump when _chunk_batch's output changes, so old caches are not reused
_HASH_CHUNK = 1 << 20


def _read_lines(path: Path) -> list[str]:
    """The non-blank lines of one UTF-8 file, stripped; a byte-order mark at the start of a line
    (a file saved with one, or files concatenated from such) is dropped."""
    check_file(path, "text file (UTF-8, one document per line)")
    out: list[str] = []
    bad = False
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                s = line.strip()
                if s and s[0] == BOM:
                    s = s[1:].strip()
                if "\x00" in s:  # binary, or UTF-16 without a byte-order mark
                    bad = True
                    break
                if s:
                    out.append(s)
    except UnicodeDecodeError:
        bad = True
    if bad:  # the text decoder's offsets are per chunk: scan the bytes again for line and file offset
        with open(path, "rb") as f:
            head = f.read(1024)
            f.seek(0)
            problem = first_problem(f)
        if problem is None:  # cannot happen: the byte scan applies the same rules as the text read
            raise TextFileError(f"{path}: not UTF-8 text") from None
        raise not_text_error(path, problem, head, TextFileError) from None
    return out


def read_text_files(paths: str | Path | Sequence[str | Path]) -> list[str]:
    """All non-blank lines of the given UTF-8 files, stripped, in order.

    Raises TextFileError (a ValueError) naming file:line and the byte offset for bytes that are
    not UTF-8 or a NUL byte, with a hint (e.g. re-encode as UTF-8); FileNotFoundError or
    IsADirectoryError naming a path that is not a file.
    """
    out: list[str] = []
    for p in _as_paths(paths):
        out.extend(_read_lines(p))
    return out


def load_text_corpus(paths: str | Path | Sequence[str | Path]) -> datasets.Dataset:
    """Plain text files (one document per line) as a Dataset with one ``text`` column."""
    lines = read_text_files(paths)
    if not lines:
        names = [str(p) for p in _as_paths(paths)]
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


def _as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("no corpus files given (an empty list of paths)")
    return out


def _content_fingerprint(source: Any) -> str:
    h = hashlib.sha256()
    if isinstance(source, datasets.Dataset):
        if source.cache_files:  # backed by arrow files (hub, load_from_disk): fingerprint is stable
            h.update(f"dataset:{source._fingerprint}".encode())
        else:  # in memory: its fingerprint is random per process, so hash the text itself
            for t in source["text"]:
                h.update(t.encode("utf-8"))
                h.update(b"\n")
        return h.hexdigest()
    for p in _as_paths(source):
        h.update(b"file\x00")
        with open(p, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _chunk_batch(batch: dict, tokenizer: Any, block: int, separate_documents: bool) -> dict:
    docs = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
    stream: list[int] = []
    for ids in docs:
        stream.extend(ids)
        if separate_documents and ids:
            stream.append(tokenizer.sep_token_id)
    body = block - 2
    n = len(stream) // body
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return {"input_ids": [[cls, *stream[i * body : (i + 1) * body], sep] for i in range(n)]}


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
    """Tokenise a corpus into fixed blocks of ``max_seq_length`` ids (column ``input_ids``).

    source: a text file, a list of them, or a Dataset with a ``text`` column (``load_text_hub``).
    cache_dir: where the blocks are cached (default ``<datasets cache>/madx_mlm``).
    batch_size: documents per map batch; the remainder (< one block) of each batch is dropped.
    Raises ValueError when the corpus is too small for a single block.
    """
    check_int("max_seq_length", max_seq_length)
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be >= 3 (<s>, a token, </s>), got {max_seq_length}")
    check_int("batch_size", batch_size, minimum=1)
    check_int("num_proc", num_proc, minimum=1, allow_none=True)
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("the tokenizer needs cls (<s>) and sep (</s>) tokens to frame blocks")
    if isinstance(source, datasets.Dataset) and "text" not in source.column_names:
        raise ValueError(f"the corpus dataset needs a 'text' column; it has {source.column_names}")
    # Read (and so validate) the files before hashing them: a bad file is named, never cached.
    texts = source if isinstance(source, datasets.Dataset) else load_text_corpus(source)
    settings = {
        "chunker": _CHUNKER_VERSION,
        "max_seq_length": max_seq_length,
        "separate_documents": separate_documents,
        "batch_size": batch_size,
        "num_proc": num_proc or 1,
    }
    key = hashlib.sha256(
        "\x00".join(
            [tokenizer_fingerprint(tokenizer), _content_fingerprint(source), json.dumps(settings, sort_keys=True)]
        ).encode()
    ).hexdigest()[:32]
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "madx_mlm"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"mlm-{key}.arrow"

    blocks = texts.map(
        _chunk_batch,
        batched=True,
        batch_size=batch_size,
        remove_columns=texts.column_names,
        fn_kwargs={"tokenizer": tokenizer, "block": max_seq_length, "separate_documents": separate_documents},
        features=datasets.Features({"input_ids": _List(datasets.Value("int32"))}),
        cache_file_name=str(cache_file),
        new_fingerprint=key,
        load_from_cache_file=load_from_cache,
        num_proc=num_proc,
        desc=f"tokenise+chunk into blocks of {max_seq_length}",
    )
    if len(blocks) == 0:
        raise ValueError(
            f"the corpus gives no full block of {max_seq_length} tokens ({len(texts)} documents); "
            f"lower max_seq_length or add text"
        )
    return blocks


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
