"""Small synthetic multilingual data in the real file formats, for the offline smoke suite.

Every language gets its own filler vocabulary (from ``synthetic_corpus``), while entity names
are shared across languages, as real names largely are — so a task learned in one language can
transfer to another, and a language adapter has a language-specific distribution to learn.
Files are written in the formats the real loaders read: WikiANN (XTREME layout) TSV, SQuAD v1.1
JSON and one-sentence-per-line text. Same arguments, same bytes.
"""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

from madx.atomic import atomic_write_text
from madx.data.checks import check_int
from madx.data.tokenizer import synthetic_corpus

_PER = ["Amara", "Bodo", "Chen", "Dalia", "Ekon", "Farid", "Gaia", "Hiro", "Ines", "Juma", "Kiri", "Lupe"]
_ORG = ["Unesco", "Banco", "Telma", "Norvik", "Sapura", "Koma", "Vireo", "Altis"]
_LOC = ["Lima", "Nairobi", "Osaka", "Quito", "Reykjavik", "Cusco", "Mombasa", "Kyoto", "Asuncion"]


def _rng(*parts) -> random.Random:
    return random.Random(zlib.crc32("\x00".join(map(str, parts)).encode()))


def _fillers(lang: str) -> list[str]:
    words = sorted({w.strip(".").lower() for s in synthetic_corpus(lang, 200, seed=7) for w in s.split()})
    return [w for w in words if w] or ["la"]


def _check_counts(n: int, seed: int) -> None:
    check_int("n", n, minimum=0)
    check_int("seed", seed)


def ner_sentences(lang: str, n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    _check_counts(n, seed)
    rng, fillers = _rng("ner", lang, seed), _fillers(lang)
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 3)):
            for _ in range(rng.randint(1, 3)):
                tokens.append(rng.choice(fillers)), tags.append("O")
            kind, names = rng.choice([("PER", _PER), ("ORG", _ORG), ("LOC", _LOC)])
            for i in range(rng.randint(1, 2)):
                tokens.append(rng.choice(names)), tags.append(("B-" if i == 0 else "I-") + kind)
        tokens.append("."), tags.append("O")
        out.append((tokens, tags))
    return out


def write_wikiann(path: str | Path, lang: str, n: int, seed: int = 0) -> Path:
    text = "\n\n".join("\n".join(f"{t}\t{g}" for t, g in zip(tokens, tags)) for tokens, tags in ner_sentences(lang, n, seed))
    return atomic_write_text(path, text + "\n")


def squad_examples(lang: str, n: int, seed: int = 0) -> dict:
    _check_counts(n, seed)
    rng, fillers = _rng("qa", lang, seed), _fillers(lang)
    paragraphs = []
    for p in range(n):
        person, place = rng.choice(_PER), rng.choice(_LOC)
        before = " ".join(rng.choice(fillers) for _ in range(rng.randint(3, 8)))
        after = " ".join(rng.choice(fillers) for _ in range(rng.randint(3, 8)))
        context = f"{before} {person} {rng.choice(fillers)} {place} . {after} ."
        question = f"{rng.choice(fillers)} {person} ?"
        paragraphs.append({
            "context": context,
            "qas": [{"id": f"{lang}-{seed}-{p}", "question": question,
                     "answers": [{"text": place, "answer_start": context.index(f" {place} .") + 1}]}],
        })
    return {"version": "1.1", "data": [{"title": f"synthetic-{lang}", "paragraphs": paragraphs}]}


def write_squad(path: str | Path, lang: str, n: int, seed: int = 0) -> Path:
    return atomic_write_text(path, json.dumps(squad_examples(lang, n, seed), ensure_ascii=False, indent=1))


def write_text(path: str | Path, lang: str, n: int, seed: int = 0) -> Path:
    return atomic_write_text(path, "\n".join(synthetic_corpus(lang, n, seed=seed)) + "\n")
