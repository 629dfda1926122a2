"""madx.data.mlm: fixed unpadded blocks, the on-disk cache, BERT masking rates, determinism."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import datasets
import pytest
import torch

from madx.data import corpus as textfiles
from madx.data import mlm
from madx.data.checks import TextFileError
from madx.data.mlm import MaskedLMCollator, build_mlm_dataset, load_text_corpus, read_text_files
from madx.data.tokenizer import build_tiny_tokenizer, synthetic_corpus

SPECIAL = {0, 1, 2, 3, 4}


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer(synthetic_corpus("qu", 300) + synthetic_corpus("en", 300), vocab_size=300)


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "qu.txt"
    lines = synthetic_corpus("qu", 120, seed=1)
    # blank and whitespace-only lines are skipped; surrounding whitespace is stripped
    p.write_text("\n".join(lines[:60]) + "\n\n   \n" + "\n".join("  " + s for s in lines[60:]) + "\n", encoding="utf-8")
    return p, lines


def test_read_text_files_skips_blank_lines(corpus, tmp_path):
    p, lines = corpus
    q = tmp_path / "b.txt"
    q.write_text("x y\r\n\r\nz\r\n", encoding="utf-8")
    assert read_text_files([p, q]) == lines + ["x y", "z"]
    assert load_text_corpus(p)["text"] == lines
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="every line is blank"):
        load_text_corpus(empty)


def test_blocks_are_full_framed_and_unpadded(corpus, tok, tmp_path):
    p, lines = corpus
    ds = build_mlm_dataset(p, tok, 32, cache_dir=tmp_path / "cache")
    blocks = ds["input_ids"]
    assert len(blocks) > 10
    for b in blocks:
        assert len(b) == 32 and b[0] == tok.cls_token_id and b[-1] == tok.sep_token_id
        assert tok.pad_token_id not in b
    # The bodies are the corpus stream: each line's ids followed by </s>, cut every 30 ids.
    stream = [i for s in lines for i in tok(s, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]]
    assert [i for b in blocks for i in b[1:-1]] == stream[: 30 * len(blocks)]
    assert len(stream) - 30 * len(blocks) < 30  # only the remainder is dropped


def test_second_call_is_a_cache_hit(corpus, tok, tmp_path, monkeypatch):
    p, _ = corpus
    cache = tmp_path / "cache"
    first = build_mlm_dataset(p, tok, 32, cache_dir=cache)
    files = sorted(cache.glob("mlm-*.arrow"))
    assert len(files) == 1 and first.cache_files[0]["filename"] == str(files[0])

    def boom(*args, **kwargs):
        raise AssertionError("re-tokenised although the cache should have been used")

    monkeypatch.setattr(mlm, "tokenize_range", boom)
    second = build_mlm_dataset(p, tok, 32, cache_dir=cache)
    assert second["input_ids"] == first["input_ids"]
    assert second.cache_files[0]["filename"] == str(files[0])
    # Anything that changes the result must miss the cache: settings, tokenizer, file content.
    for call in (
        lambda: build_mlm_dataset(p, tok, 48, cache_dir=cache),
        lambda: build_mlm_dataset(p, tok, 32, cache_dir=cache, separate_documents=False),
        lambda: build_mlm_dataset(p, build_tiny_tokenizer(synthetic_corpus("qu", 300), vocab_size=200), 32, cache_dir=cache),
    ):
        with pytest.raises(AssertionError, match="re-tokenised"):
            call()
    p.write_text(p.read_text(encoding="utf-8") + "Oqo ec.\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="re-tokenised"):
        build_mlm_dataset(p, tok, 32, cache_dir=cache)


def test_dataset_source_and_too_small_corpus(tok, tmp_path):
    texts = datasets.Dataset.from_dict({"text": synthetic_corpus("en", 50)})
    a = build_mlm_dataset(texts, tok, 16, cache_dir=tmp_path)
    b = build_mlm_dataset(datasets.Dataset.from_dict({"text": synthetic_corpus("en", 50)}), tok, 16, cache_dir=tmp_path)
    assert a.cache_files == b.cache_files  # in-memory datasets are keyed by their text
    with pytest.raises(ValueError, match="no full block of 512"):
        build_mlm_dataset(texts.select(range(2)), tok, 512, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'text' column"):
        build_mlm_dataset(texts.rename_column("text", "body"), tok, 16, cache_dir=tmp_path)


def _blocks(n=400, T=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(5, 300, (n, T - 2), generator=g)
    return [{"input_ids": [0, *row.tolist(), 2]} for row in body]


def test_masking_rates_and_special_tokens(tok):
    feats = _blocks()
    feats[0]["input_ids"][5] = tok.unk_token_id  # specials inside a block are never chosen either
    batch = MaskedLMCollator(tok, seed=0)(feats)
    orig = torch.tensor([f["input_ids"] for f in feats])
    ids, labels = batch["input_ids"], batch["labels"]
    assert set(batch) == {"input_ids", "labels"}, "packed blocks (no padding) carry no attention mask"
    assert ids.dtype == labels.dtype == torch.long and ids.shape == orig.shape
    chosen = labels != -100
    assert torch.equal(labels[chosen], orig[chosen])
    assert not chosen[:, 0].any() and not chosen[:, -1].any() and not chosen[0, 5]
    assert torch.equal(ids[~chosen], orig[~chosen])  # unchosen tokens are untouched
    n = chosen.sum().item()
    assert abs(n / orig[:, 1:-1].numel() - 0.15) < 0.01
    masked = (ids == tok.mask_token_id) & chosen
    kept = (ids == orig) & chosen
    randomised = chosen & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(kept.sum().item() / n - 0.1) < 0.02  # "keep" plus random draws equal to the original
    assert abs(randomised.sum().item() / n - 0.1) < 0.02
    assert not torch.isin(ids[randomised], torch.tensor(sorted(SPECIAL))).any()


def test_padding_and_determinism(tok):
    feats = [{"input_ids": [0, 10, 11, 12, 13, 2]}, {"input_ids": [0, 20, 2]}]
    a = MaskedLMCollator(tok, mlm_probability=0.5, generator=torch.Generator().manual_seed(3), pad_to_multiple_of=8)(feats)
    b = MaskedLMCollator(tok, mlm_probability=0.5, seed=3, pad_to_multiple_of=8)(feats)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["input_ids"].shape == (2, 8)
    assert a["attention_mask"].tolist() == [[1] * 6 + [0] * 2, [1] * 3 + [0] * 5]
    assert (a["input_ids"][1, 3:] == tok.pad_token_id).all() and (a["labels"][1, 3:] == -100).all()
    many = _blocks(50)
    c = MaskedLMCollator(tok, seed=4)
    assert not torch.equal(c(many)["labels"], MaskedLMCollator(tok, seed=5)(many)["labels"])
    assert not torch.equal(c(many)["labels"], c(many)["labels"])  # the generator advances


def test_collator_argument_checks(tok):
    with pytest.raises(ValueError, match="mlm_probability"):
        MaskedLMCollator(tok, mlm_probability=0.0)
    with pytest.raises(ValueError, match="sum <= 1"):
        MaskedLMCollator(tok, mask_replace_prob=0.8, random_replace_prob=0.3)
    with pytest.raises(ValueError, match="not both"):
        MaskedLMCollator(tok, seed=1, generator=torch.Generator())


def test_hub_text_loader(monkeypatch):
    calls = []

    def fake(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"content": ["a b", "  ", "", "c"], "id": [1, 2, 3, 4]})

    monkeypatch.setattr(mlm.datasets, "load_dataset", fake)
    ds = mlm.load_text_hub("someone/corpus", config="qu", text_column="content")
    assert calls == [("someone/corpus", "qu", "train")]
    assert ds.column_names == ["text"] and list(ds["text"]) == ["a b", "c"]


def test_packed_blocks_have_no_padding_and_no_mask(tok, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"document {i} " + "word " * (i % 17) for i in range(300)), encoding="utf-8")
    blocks = build_mlm_dataset(corpus, tok, max_seq_length=16, cache_dir=tmp_path / "cache")
    batch = MaskedLMCollator(tok, seed=0)([blocks[i] for i in range(8)])
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape == (8, 16)
    assert not (batch["input_ids"] == tok.pad_token_id).any(), "non-pad fraction 1.0"
    forced = MaskedLMCollator(tok, seed=0, always_attention_mask=True)([blocks[i] for i in range(8)])
    assert forced["attention_mask"].all() and torch.equal(forced["labels"], batch["labels"])


# --- malformed input: every error names the file, the line and the byte offset ---


def bad_file(tmp_path, data: bytes, name="bad.txt"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def text_error(paths) -> str:
    with pytest.raises(TextFileError) as e:
        read_text_files(paths)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert len(msg) < 300 + max(len(str(p)) for p in ([paths] if isinstance(paths, Path) else paths)), msg
    return msg


@pytest.mark.parametrize(
    "data, line, offset, what",
    [
        ("uno\ndos\nañu\n".encode("latin-1"), 3, 9, "not UTF-8: byte 0xf1"),
        ("x\n\u201cquoted\u201d\n".encode("cp1252"), 2, 2, "not UTF-8: byte 0x93"),
        ("texto\n".encode("utf-16"), 1, 0, "not UTF-8: byte 0xff"),
        ("texto\n".encode("utf-16-le"), 1, 1, "not text: a NUL byte"),
        (b"ok\nok\x00ok\n", 2, 5, "not text: a NUL byte"),
        ("uno\nKöln".encode()[:-3], 2, 5, "not UTF-8: byte 0xc3"),  # truncated inside ö
        (bytes(range(256)) * 4, 1, 0, "not text: a NUL byte"),  # binary garbage
        (bytes(range(255, 0, -1)), 1, 0, "not UTF-8: byte 0xff"),  # binary garbage without NUL
    ],
)
def test_not_utf8_names_file_line_and_offset(tmp_path, data, line, offset, what):
    p = bad_file(tmp_path, data)
    msg = text_error(p)
    assert msg.startswith(f"{p}:{line}: {what} at offset {offset}"), msg


def test_latin1_hint(tmp_path):
    p = bad_file(tmp_path, "Ñuqa\n".encode("latin-1"))
    assert "re-encode as UTF-8" in text_error(p)


def test_error_deep_in_a_big_file_has_the_right_line_and_offset(tmp_path):
    good = "Runasimi rimay.\n" * 50_000  # several of the text reader's chunks
    p = bad_file(tmp_path, good.encode() + "Ñuqa\n".encode("latin-1"))
    assert text_error(p).startswith(f"{p}:50001: not UTF-8: byte 0xd1 at offset {len(good)}")


def test_the_bad_file_among_several_is_named(tmp_path):
    a = bad_file(tmp_path, b"fine\n", name="a.txt")
    b = bad_file(tmp_path, b"fine\n\xe9\n", name="b.txt")
    assert text_error([a, b]).startswith(f"{b}:2: not UTF-8: byte 0xe9 at offset 5")


def test_bom_is_dropped_at_the_start_and_after_concatenation(tmp_path):
    p = bad_file(tmp_path, b"\xef\xbb\xbfuno\r\ndos\n\xef\xbb\xbf\n\xef\xbb\xbf  tres\n")
    assert read_text_files(p) == ["uno", "dos", "tres"]


def test_unicode_whitespace_and_separators_are_unchanged(tmp_path):
    p = bad_file(tmp_path, "a\u00a0b\u2028c\n\u3000x\u3000\n".encode())
    assert read_text_files(p) == ["a\u00a0b\u2028c", "x"]  # as before: open() splits at \n only; strip() trims U+3000


def test_empty_file_and_no_files(tmp_path):
    p = bad_file(tmp_path, b"")
    with pytest.raises(ValueError, match=rf"no text in {p}: every line is blank"):
        load_text_corpus(p)
    with pytest.raises(ValueError, match="every line is blank"):
        load_text_corpus(bad_file(tmp_path, b"\xef\xbb\xbf\n\n", name="bom-only.txt"))
    with pytest.raises(ValueError, match="no corpus files given"):
        load_text_corpus([])
    many = [bad_file(tmp_path, b"\n", name=f"e{i}.txt") for i in range(50)]
    with pytest.raises(ValueError, match="and 47 more: every line is blank") as e:
        load_text_corpus(many)
    assert len(str(e.value)) < 300 + 3 * len(str(many[0]))


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"^{tmp_path}: is a directory; expected a text file"):
        read_text_files(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"qu\.txt: no such text file"):
        load_text_corpus(tmp_path / "qu.txt")


def test_build_mlm_dataset_names_a_bad_file_and_caches_nothing(tok, tmp_path):
    p = bad_file(tmp_path, "uno dos\n".encode() * 100 + "año\n".encode("latin-1"), name="qu.txt")
    with pytest.raises(TextFileError, match=rf"^{p}:101: not UTF-8: byte 0xf1 at offset 801"):
        build_mlm_dataset(p, tok, 16, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # the files are read before anything is hashed or written
    with pytest.raises(IsADirectoryError, match="is a directory"):
        build_mlm_dataset(tmp_path, tok, 16, cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match=r"qu2\.txt: no such text file \(plain UTF-8 text, one document per line\)"):
        build_mlm_dataset(tmp_path / "qu2.txt", tok, 16, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_seq_length": "128"}, TypeError, "max_seq_length must be an int, got str"),
        ({"max_seq_length": 128.0}, TypeError, "max_seq_length must be an int, got float"),
        ({"max_seq_length": True}, TypeError, "max_seq_length must be an int, got bool"),
        ({"max_seq_length": 2}, ValueError, "max_seq_length must be >= 3"),
        ({"max_seq_length": -1}, ValueError, "max_seq_length must be >= 3"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"batch_size": 1.5}, TypeError, "batch_size must be an int"),
        ({"num_proc": 0}, ValueError, "num_proc must be >= 1, got 0"),
        ({"num_proc": "2"}, TypeError, "num_proc must be an int or None"),
    ],
)
def test_build_mlm_dataset_number_checks(tok, tmp_path, kwargs, error, match):
    texts = datasets.Dataset.from_dict({"text": ["a b"]})
    with pytest.raises(error, match=match):
        build_mlm_dataset(texts, tok, **{"max_seq_length": 16, **kwargs}, cache_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"mlm_probability": float("nan")}, ValueError, r"mlm_probability must be in \(0.0, 1.0\), got nan"),
        ({"mlm_probability": 1.0}, ValueError, "mlm_probability must be in"),
        ({"mlm_probability": "0.15"}, TypeError, "mlm_probability must be a number, got str"),
        ({"mlm_probability": True}, TypeError, "mlm_probability must be a number, got bool"),
        ({"mask_replace_prob": float("nan")}, ValueError, "mask_replace_prob must be in"),
        ({"random_replace_prob": -0.1}, ValueError, "random_replace_prob must be in"),
        ({"random_replace_prob": None}, TypeError, "random_replace_prob must be a number"),
        ({"pad_to_multiple_of": 0}, ValueError, "pad_to_multiple_of must be >= 1, got 0"),
        ({"pad_to_multiple_of": 8.0}, TypeError, "pad_to_multiple_of must be an int or None"),
        ({"seed": "1"}, TypeError, "seed must be an int or None, got str"),
        ({"seed": 1.0}, TypeError, "seed must be an int or None, got float"),
    ],
)
def test_collator_number_checks(tok, kwargs, error, match):
    with pytest.raises(error, match=match):
        MaskedLMCollator(tok, **kwargs)


# --- corpora of any size: streamed, cached by file identity, several processes, same blocks as before ---


@pytest.fixture
def messy_corpus(tmp_path):
    """Two files with what the reader must keep exactly as before: CRLF and CR line ends, blank and
    whitespace-only lines, byte-order marks, surrounding whitespace, documents with no token."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    lines = synthetic_corpus("qu", 700, seed=3)
    body = "\r\n".join(lines[:300]) + "\r\n\r\n  \n" + "\r".join(lines[300:400]) + "\n\ufeff  " + "\n".join(lines[400:])
    a.write_bytes(("\ufeff" + body + "\n\u3000\n").encode())
    b.write_text("\n".join(" ".join(lines[i : i + 3]) for i in range(0, 600, 3)) + "\n", encoding="utf-8")
    return [a, b]


@pytest.mark.parametrize("max_seq_length, batch_size, separate", [(32, 10_000, True), (16, 37, True), (24, 50, False)])
def test_blocks_equal_the_implementation_before_streaming(messy_corpus, tok, tmp_path, max_seq_length, batch_size, separate):
    """The same blocks in the same order as the reference (every line in a list, one datasets.map
    process), so the results of jobs run before are unchanged."""
    want = mlm._reference(messy_corpus, tok, max_seq_length, cache_file=tmp_path / "ref.arrow",
                          separate_documents=separate, batch_size=batch_size)["input_ids"]
    got = build_mlm_dataset(messy_corpus, tok, max_seq_length, cache_dir=tmp_path / "cache",
                            separate_documents=separate, batch_size=batch_size)
    assert len(want) > 50 and got["input_ids"] == want


def test_blocks_do_not_depend_on_the_number_of_processes(messy_corpus, tok, tmp_path, monkeypatch):
    """Byte ranges of ~2 KB tokenised by 1 or 2 worker processes: the reference's blocks every time
    (datasets' num_proc shards would drop a remainder at each shard's edge instead)."""
    monkeypatch.setattr(textfiles, "READ_CHUNK_BYTES", 2048)
    want = mlm._reference(messy_corpus, tok, 16, cache_file=tmp_path / "ref.arrow", batch_size=400)["input_ids"]
    assert len(textfiles.byte_ranges(messy_corpus[0])) > 10
    for n in (1, 2):
        got = build_mlm_dataset(messy_corpus, tok, 16, cache_dir=tmp_path / f"cache-{n}", batch_size=400, num_proc=n)
        assert got["input_ids"] == want, f"num_proc={n}"


def test_the_build_streams_the_corpus(tok, tmp_path, monkeypatch):
    """No list of every line, no in-memory dataset: the text is read range by range, and the blocks
    come back memory-mapped from the cache file."""
    p = tmp_path / "qu.txt"
    p.write_text("\n".join(synthetic_corpus("qu", 3000, seed=4)) + "\n", encoding="utf-8")
    monkeypatch.setattr(textfiles, "READ_CHUNK_BYTES", 8192)

    def whole(*args, **kwargs):
        raise AssertionError("the whole corpus was read into memory")

    for name in ("read_text_files", "load_text_corpus"):
        monkeypatch.setattr(mlm, name, whole)
    monkeypatch.setattr(datasets.Dataset, "from_dict", whole)
    read = []
    documents_in = textfiles.documents_in
    monkeypatch.setattr(textfiles, "documents_in", lambda path, start, end: read.append(end - start) or documents_in(path, start, end))
    blocks = build_mlm_dataset(p, tok, 32, cache_dir=tmp_path / "cache")
    assert sum(read) == p.stat().st_size and len(read) > 10 and max(read) < 8192 + 200
    assert isinstance(blocks.data, datasets.table.MemoryMappedTable)
    assert blocks.cache_files == [{"filename": str(next((tmp_path / "cache").glob("mlm-*.arrow")))}]


def _age(path: Path, seconds: float = 60.0) -> None:
    """Make the file look written ``seconds`` ago (a corpus fetched earlier, not just now)."""
    t = path.stat().st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(t, t))


def _same_size_edit(data: bytes) -> bytes:
    first, rest = data.split(b"\n", 1)
    return first[::-1] + b"\n" + rest  # the first document written backwards (ASCII text)


def test_a_cached_call_does_not_read_the_corpus(corpus, tok, tmp_path, monkeypatch):
    p, _ = corpus
    _age(p)
    cache = tmp_path / "cache"
    first = build_mlm_dataset(p, tok, 32, cache_dir=cache)
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        opened.append(Path(file).resolve() if isinstance(file, (str, Path)) else file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    monkeypatch.setattr(Path, "read_bytes", lambda self: opened.append(self.resolve()) or b"")
    second = build_mlm_dataset(p, tok, 32, cache_dir=cache)
    assert p.resolve() not in opened, "the corpus was read again"
    monkeypatch.undo()
    assert second["input_ids"] == first["input_ids"]
    # the hash it used was computed once and recorded beside the cache, under the file's identity
    (record,) = (cache / "sources").glob("*.json")
    st = p.stat()
    known = json.loads(record.read_text())
    assert (known["ino"], known["size"], known["mtime_ns"]) == (st.st_ino, st.st_size, st.st_mtime_ns)
    assert known["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_a_changed_file_is_hashed_again(corpus, tok, tmp_path, monkeypatch):
    p, _ = corpus
    _age(p)
    cache = tmp_path / "cache"
    first = build_mlm_dataset(p, tok, 32, cache_dir=cache)
    # an edit that keeps the size: the new mtime tells
    p.write_bytes(_same_size_edit(p.read_bytes()))
    _age(p, 30)
    assert list(build_mlm_dataset(p, tok, 32, cache_dir=cache)["input_ids"]) != list(first["input_ids"])
    assert len(list(cache.glob("mlm-*.arrow"))) == 2


def test_a_record_made_right_after_a_write_is_not_trusted(corpus, tok, tmp_path):
    """An edit in the same timestamp tick as the write before it, same size, would leave the identity
    unchanged: a record made within RACY_NS of the file's mtime is checked again next time."""
    p, _ = corpus
    cache = tmp_path / "cache"
    first = build_mlm_dataset(p, tok, 32, cache_dir=cache)  # p was written just now: a racy record
    st = p.stat()
    p.write_bytes(_same_size_edit(p.read_bytes()))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime as recorded
    assert list(build_mlm_dataset(p, tok, 32, cache_dir=cache)["input_ids"]) != list(first["input_ids"])


def test_an_empty_file_among_others_is_fine_but_all_blank_is_an_error(corpus, tok, tmp_path):
    p, lines = corpus
    blank = bad_file(tmp_path, b"\n \n", name="blank.txt")
    assert build_mlm_dataset([blank, p], tok, 32, cache_dir=tmp_path / "c")["input_ids"] == \
        mlm._reference([blank, p], tok, 32, cache_file=tmp_path / "ref.arrow")["input_ids"]
    with pytest.raises(ValueError, match=rf"no text in {blank}: every line is blank"):
        build_mlm_dataset(blank, tok, 32, cache_dir=tmp_path / "c")
