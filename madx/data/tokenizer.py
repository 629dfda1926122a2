"""Tiny tokenizers trained in-process, and deterministic pseudo-language text to train them on.

No checkpoint can be downloaded at test time, so tests and the offline smoke suite build a small
tokenizer here with the `tokenizers` library and pair it with a tiny random XLM-R/BERT config.
It behaves like XLM-R's fast tokenizer in everything the task code relies on:

- special tokens ``<s> <pad> </s> <unk> <mask>`` with ids 0, 1, 2, 3, 4 (XLM-R has ``<s>``=0,
  ``<pad>``=1, ``</s>``=2, ``<unk>``=3; its ``<mask>`` is the last id, here it is 4);
  cls = bos = ``<s>``, sep = eos = ``</s>``;
- RoBERTa-style templates: ``<s> A </s>`` and ``<s> A </s></s> B </s>``;
- the default model is Unigram over a Metaspace pre-tokenizer (SentencePiece-like, like XLM-R),
  so offsets of a word-initial piece include the preceding space, as XLM-R's do (``"▁world"``
  in ``"Hello world"`` has offsets (5, 11)); ``model="wordpiece"`` gives BERT-like pieces instead;
- offsets mapping, ``word_ids()`` and ``sequence_ids()`` (it is a fast tokenizer);
- no ``token_type_ids`` unless asked (XLM-R has none; ``token_type_ids=True`` gives BERT-like
  segment ids 0 for the first sequence and 1 for the second).

Training is deterministic for the same texts and settings (tested: same vocabulary, same ids).
"""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from madx.data.checks import check_int

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4, in this order
_MODELS = ("unigram", "wordpiece")


def build_tiny_tokenizer(
    texts: Iterable[str] | None = None,
    vocab_size: int = 1000,
    *,
    model: str = "unigram",
    lowercase: bool = False,
    model_max_length: int = 512,
    token_type_ids: bool = False,
    padding_side: str = "right",
) -> PreTrainedTokenizerFast:
    """Train a small fast tokenizer on ``texts`` with XLM-R-style special tokens.

    texts: training sentences; None trains on ``synthetic_corpus`` for a few languages.
    vocab_size: target size including the 5 special tokens (Unigram may stop below it on a
        small corpus; ``len(tokenizer)`` is the real size to put in a model config).
    model: "unigram" (SentencePiece/XLM-R-like, default) or "wordpiece" (BERT-like ``##`` pieces).
    token_type_ids: return segment ids (0 for A, 1 for B), as BERT does; XLM-R does not.
    """
    if model not in _MODELS:
        raise ValueError(f"unknown tokenizer model {model!r}; expected one of {list(_MODELS)}")
    check_int("vocab_size", vocab_size)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    check_int("model_max_length", model_max_length, minimum=1)
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if texts is None:
        texts = [s for lang in ("en", "de", "ru", "ar", "zh", "sw", "qu") for s in synthetic_corpus(lang, 300, seed=0)]
    # A list, so the trainer sees one fixed order (determinism) and empty lines are dropped.
    texts = [t for t in texts if t and not t.isspace()]
    if not texts:
        raise ValueError("build_tiny_tokenizer needs at least one non-blank training text")

    unk = "<unk>"
    norm = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
    if model == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = norm
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token=unk, show_progress=False
        )
        try:
            tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        except Exception as e:  # the library raises a bare Exception
            if "not large enough" not in str(e):
                raise
            n_chars = len(set(norm.normalize_str("".join(texts))) - {" "})
            raise ValueError(
                f"vocab_size={vocab_size} cannot hold the {n_chars} distinct characters of the texts "
                f"plus {len(SPECIAL_TOKENS)} special tokens; raise vocab_size"
            ) from None
        # Two things make the trained ids differ run to run: EM sums floats in thread/hash order
        # (scores differ in the last bits), and the characters that must stay in the vocabulary
        # but lost the EM are added, in hash order, with scores min, min + 1e-4, min + 2e-4, ...
        # So: give those characters one shared score below everything, round the other scores,
        # and sort by (score, piece).
        pieces = [(p, sc) for p, sc in json.loads(tok.to_str())["model"]["vocab"] if p not in SPECIAL_TOKENS]
        low = min(sc for _, sc in pieces)
        band = low + 1e-4 * (sum(len(p) == 1 for p, _ in pieces) + 1)
        learnt = sorted(
            ((p, round(low - 1.0 if len(p) == 1 and sc <= band else sc, 6)) for p, sc in pieces),
            key=lambda x: (-x[1], x[0]),
        )
        tok.model = models.Unigram([(t, 0.0) for t in SPECIAL_TOKENS] + learnt, unk_id=SPECIAL_TOKENS.index(unk))
    else:
        pre = pre_tokenizers.BertPreTokenizer()
        vocab = _wordpiece_vocab(texts, vocab_size, norm, pre)
        tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
        tok.normalizer = norm
        tok.pre_tokenizer = pre
        tok.decoder = decoders.WordPiece(prefix="##")

    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    assert [ids[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS))), ids
    b = 1 if token_type_ids else 0
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0 </s>:0",
        pair=f"<s>:0 $A:0 </s>:0 </s>:{b} $B:{b} </s>:{b}",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    input_names = ["input_ids", "token_type_ids", "attention_mask"] if token_type_ids else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token=unk,
        mask_token="<mask>",
        model_max_length=model_max_length,
        padding_side=padding_side,
        model_input_names=input_names,
    )


def _wordpiece_vocab(texts, vocab_size, norm, pre, max_piece_chars: int = 12) -> dict[str, int]:
    """A deterministic WordPiece vocabulary (the library's WordPiece trainer breaks ties between
    equally frequent merges in hash order, so it is not reproducible run to run).

    Every character seen, word-initial and ``##``-continuation, so nothing maps to <unk>; then
    the most frequent word-initial prefixes and continuation substrings (weighted by word count),
    ties broken by the string itself.
    """
    words: Counter[str] = Counter()
    for t in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    chars = sorted({c for w in words for c in w})
    base = [*chars, *("##" + c for c in chars)]
    cand: Counter[str] = Counter()
    for w, n in words.items():
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + max_piece_chars) + 1):
                cand[w[i:j] if i == 0 else "##" + w[i:j]] += n
    ranked = sorted(cand.items(), key=lambda x: (-x[1], x[0]))
    room = vocab_size - len(SPECIAL_TOKENS) - len(base)
    if room < 0:
        raise ValueError(
            f"vocab_size={vocab_size} cannot hold the {len(chars)} distinct characters of the texts "
            f"(each word-initial and as ##continuation) plus {len(SPECIAL_TOKENS)} special tokens; raise vocab_size"
        )
    pieces = [*SPECIAL_TOKENS, *base, *(p for p, _ in ranked[:room])]
    return {p: i for i, p in enumerate(pieces)}


# --------------------------------------------------------------------------------------------
# Pseudo-languages. Each language code fixes a script, an alphabet subset with its own letter
# frequencies, a syllable shape and a Zipfian lexicon (all from crc32(lang), never from `seed`),
# so two languages differ in characters and words and a language adapter has something to learn;
# `seed` only picks which sentences are drawn.


def _chars(start: int, end: int) -> str:
    return "".join(chr(c) for c in range(start, end + 1))


_SCRIPTS: dict[str, tuple[str, str, bool]] = {
    # name: (consonant-like letters, vowel-like letters, has case)
    "latin": ("bcdfghjklmnpqrstvwxyz", "aeiou", True),
    "latin_ext": ("bcdfghjklmnprstvzčšžñç", "aeiouäöüéåø", True),
    "cyrillic": ("бвгджзйклмнпрстфхцчшщ", "аеиоуыэюяё", True),
    "greek": ("βγδζθκλμνξπρστφχψ", "αεηιουω", True),
    "arabic": ("بتثجحخدذرزسشصضطظعغفقكلمنه", "اوي", False),
    "devanagari": (_chars(0x0915, 0x0939), _chars(0x093E, 0x094C), False),
    "thai": (_chars(0x0E01, 0x0E2E), _chars(0x0E30, 0x0E39), False),
    "myanmar": (_chars(0x1000, 0x1020), _chars(0x102B, 0x1032), False),
    "kana": (_chars(0x304B, 0x3062), _chars(0x3042, 0x304A), False),
    "cjk": (_chars(0x4E00, 0x4EFF), _chars(0x5000, 0x501F), False),
}
_LANG_SCRIPT = {
    "en": "latin", "es": "latin", "it": "latin", "sw": "latin", "jv": "latin", "qu": "latin",
    "mi": "latin", "ilo": "latin", "gn": "latin_ext", "de": "latin_ext", "tr": "latin_ext",
    "vi": "latin_ext", "ro": "latin_ext", "is": "latin_ext", "tk": "latin_ext", "cdo": "latin_ext",
    "ru": "cyrillic", "mhr": "cyrillic", "el": "greek", "ar": "arabic", "hi": "devanagari",
    "th": "thai", "my": "myanmar", "ja": "kana", "zh": "cjk", "xmf": "greek",
}


def _language(lang: str) -> tuple[list[str], list[float], bool]:
    rng = random.Random(zlib.crc32(lang.encode("utf-8")))
    script = _LANG_SCRIPT.get(lang) or sorted(_SCRIPTS)[rng.randrange(len(_SCRIPTS))]
    cons, vows, cased = _SCRIPTS[script]
    cons = rng.sample(cons, k=max(4, (2 * len(cons)) // 3))
    vows = rng.sample(vows, k=max(2, (3 * len(vows)) // 4))
    cw = [rng.random() ** 2 + 0.05 for _ in cons]  # skewed letter frequencies
    vw = [rng.random() + 0.1 for _ in vows]
    shape = rng.choice(["CV", "CVC", "CVV", "VC"])
    max_syll = rng.randint(2, 4)
    lexicon: list[str] = []
    seen: set[str] = set()
    while len(lexicon) < 400:
        word = ""
        for _ in range(rng.randint(1, max_syll)):
            for slot in shape:
                word += rng.choices(cons, cw)[0] if slot == "C" else rng.choices(vows, vw)[0]
        if word not in seen:
            seen.add(word)
            lexicon.append(word)
    zipf = 0.8 + rng.random() * 0.6
    weights = [1.0 / (r + 1) ** zipf for r in range(len(lexicon))]
    return lexicon, weights, cased


def synthetic_corpus(lang: str, n: int, seed: int = 0, *, min_words: int = 4, max_words: int = 14) -> list[str]:
    """``n`` deterministic pseudo-``lang`` sentences (same (lang, n, seed) -> same list).

    Known codes (en, de, ru, ar, zh, ja, hi, th, my, sw, qu, ...) get a plausible script; any other
    string gets a script chosen from its hash. Sentences are space-separated words ending in ".".
    """
    check_int("n", n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    check_int("seed", seed)
    check_int("min_words", min_words)
    check_int("max_words", max_words)
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    lexicon, weights, cased = _language(lang)
    rng = random.Random(zlib.crc32(f"{lang}\x00{seed}".encode("utf-8")))
    out = []
    for _ in range(n):
        words = rng.choices(lexicon, weights, k=rng.randint(min_words, max_words))
        if cased:
            words[0] = words[0][:1].upper() + words[0][1:]
        out.append(" ".join(words) + ".")
    return out
