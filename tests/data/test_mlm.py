"""madx.data.mlm: fixed unpadded blocks, the on-disk cache, BERT masking rates, determinism."""

from __future__ import annotations

import datasets
import pytest
import torch

from madx.data import mlm
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

    monkeypatch.setattr(mlm, "_chunk_batch", boom)
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
