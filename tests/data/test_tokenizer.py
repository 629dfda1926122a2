"""madx.data.tokenizer: XLM-R-like specials and templates, offsets/word ids, determinism."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from madx.data.tokenizer import SPECIAL_TOKENS, build_tiny_tokenizer, synthetic_corpus

TEXTS = synthetic_corpus("en", 150, seed=0) + synthetic_corpus("ru", 150, seed=0)


@pytest.fixture(scope="module", params=["unigram", "wordpiece"])
def tok(request):
    return build_tiny_tokenizer(TEXTS, vocab_size=300, model=request.param)


def test_special_tokens_are_xlmr_style(tok):
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.cls_token == tok.bos_token == "<s>"
    assert tok.sep_token == tok.eos_token == "</s>"
    assert (tok.pad_token, tok.unk_token, tok.mask_token) == ("<pad>", "<unk>", "<mask>")
    assert (tok.pad_token_id, tok.mask_token_id) == (1, 4)
    assert 100 < len(tok) <= 300


def test_roberta_templates(tok):
    a = tok("Qa ro")["input_ids"]
    assert a[0] == 0 and a[-1] == 2 and 2 not in a[1:-1]
    pair = tok("Qa ro", "Ba")["input_ids"]
    n = len(a)
    assert pair[:n] == a and pair[n] == 2 and pair[-1] == 2  # <s> A </s></s> B </s>
    assert "token_type_ids" not in tok("x")


def test_offsets_word_ids_and_sequence_ids(tok):
    text = TEXTS[3]
    enc = tok(text, return_offsets_mapping=True)
    for (s, e), tid in zip(enc["offset_mapping"][1:-1], enc["input_ids"][1:-1]):
        assert 0 <= s <= e <= len(text)
    assert enc["offset_mapping"][0] == (0, 0) and enc["offset_mapping"][-1] == (0, 0)
    words = text.split()
    enc = tok(words, is_split_into_words=True)
    wids = enc.word_ids()
    assert wids[0] is None and wids[-1] is None
    assert sorted({w for w in wids if w is not None}) == list(range(len(words)))
    assert tok("a b", "c").sequence_ids()[-2] == 1


def test_decode_round_trip(tok):
    text = TEXTS[7]
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


@pytest.mark.parametrize("model", ["unigram", "wordpiece"])
def test_deterministic(model):
    a = build_tiny_tokenizer(TEXTS, vocab_size=300, model=model)
    b = build_tiny_tokenizer(TEXTS, vocab_size=300, model=model)
    assert a.get_vocab() == b.get_vocab()
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_token_type_ids_option():
    t = build_tiny_tokenizer(TEXTS, vocab_size=200, token_type_ids=True)
    enc = t("Qa ro", "Ba")
    first = len(t("Qa ro")["input_ids"])
    assert enc["token_type_ids"] == [0] * first + [1] * (len(enc["input_ids"]) - first)


def test_save_and_reload_offline(tmp_path):
    t = build_tiny_tokenizer(TEXTS, vocab_size=200, model="unigram")
    t.save_pretrained(tmp_path)
    r = AutoTokenizer.from_pretrained(tmp_path)
    assert r("Qa ro", "Ba")["input_ids"] == t("Qa ro", "Ba")["input_ids"]
    assert r.mask_token_id == 4 and r.pad_token_id == 1


def test_default_corpus_and_errors():
    assert len(build_tiny_tokenizer()) <= 1000  # default: synthetic text in seven languages
    with pytest.raises(ValueError, match="raise vocab_size"):
        build_tiny_tokenizer(vocab_size=120)  # fewer slots than distinct characters
    with pytest.raises(ValueError, match="raise vocab_size"):
        build_tiny_tokenizer(vocab_size=120, model="wordpiece")
    with pytest.raises(ValueError, match="unigram"):
        build_tiny_tokenizer(TEXTS, model="bpe")
    with pytest.raises(ValueError, match="non-blank"):
        build_tiny_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="special"):
        build_tiny_tokenizer(TEXTS, vocab_size=5)


def test_synthetic_corpus_is_deterministic_and_language_specific():
    assert synthetic_corpus("qu", 20, seed=3) == synthetic_corpus("qu", 20, seed=3)
    assert synthetic_corpus("qu", 20, seed=3) != synthetic_corpus("qu", 20, seed=4)
    chars = {lang: set("".join(synthetic_corpus(lang, 200))) - set(" .") for lang in ("en", "ru", "ar", "zh")}
    for a in chars:
        for b in chars:
            if a < b:
                assert not {c.lower() for c in chars[a]} & {c.lower() for c in chars[b]}, (a, b)
    # Two Latin-script languages still differ in their words.
    en = {w.lower().strip(".") for s in synthetic_corpus("en", 200) for w in s.split()}
    sw = {w.lower().strip(".") for s in synthetic_corpus("sw", 200) for w in s.split()}
    assert len(en & sw) < 0.2 * min(len(en), len(sw))
    assert all(s.endswith(".") for s in synthetic_corpus("xyz-unknown", 5))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"vocab_size": "300"}, TypeError, "vocab_size must be an int, got str"),
        ({"vocab_size": 300.0}, TypeError, "vocab_size must be an int, got float"),
        ({"model_max_length": 0}, ValueError, "model_max_length must be >= 1, got 0"),
        ({"model_max_length": None}, TypeError, "model_max_length must be an int"),
    ],
)
def test_tokenizer_number_checks(kwargs, error, match):
    with pytest.raises(error, match=match):
        build_tiny_tokenizer(TEXTS, **kwargs)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((2.5,), {}, TypeError, "n must be an int, got float"),
        ((-1,), {}, ValueError, "n must be >= 0, got -1"),
        ((3,), {"seed": "1"}, TypeError, "seed must be an int, got str"),
        ((3,), {"min_words": 0}, ValueError, "need 1 <= min_words <= max_words"),
        ((3,), {"max_words": 4.5}, TypeError, "max_words must be an int"),
    ],
)
def test_synthetic_corpus_number_checks(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        synthetic_corpus("qu", *args, **kwargs)
