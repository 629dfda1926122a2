"""``JobContext.test_set``: a worker reads and tokenises a target's test set once, whatever the method,
source and seed of the evaluation job, and again only for another file, tokenizer, length or cap."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import bench.execute
from bench.execute import JobContext
from madx.data import synthetic
from madx.data.tokenizer import build_tiny_tokenizer
from madx.runtime import Runtime


def eval_job(root: Path, source: str) -> SimpleNamespace:
    return SimpleNamespace(kind="eval", name=f"eval/ner/{source}->qu", deps=(), params={"data": {"wikiann": str(root)}})


def test_a_test_set_is_tokenised_once_per_key(tmp_path, monkeypatch):
    wikiann = tmp_path / "wikiann"
    synthetic.write_wikiann(wikiann / "test-qu.tsv", "qu", 12)
    synthetic.write_wikiann(wikiann / "test-en.tsv", "en", 5)
    tokenizer_dir = tmp_path / "tokenizer"
    texts = [" ".join(tokens) for lang in ("en", "qu") for tokens, _ in synthetic.ner_sentences(lang, 30)]
    build_tiny_tokenizer(texts, vocab_size=200, model="wordpiece").save_pretrained(tokenizer_dir)
    calls = []
    prepare = bench.execute.prepare_task_data
    monkeypatch.setattr(bench.execute, "prepare_task_data", lambda *a, **k: calls.append(k["max_length"]) or prepare(*a, **k))
    ctx = JobContext(store=None, jobs_by_id={}, runtime=Runtime.local("cpu"), tb_root=tmp_path, progress=print)

    examples, features = ctx.test_set(eval_job(wikiann, "en"), "ner", "qu", str(tokenizer_dir), 32, None)
    assert len(examples) == len(features) == 12 and "word_ids" in features.column_names
    again = ctx.test_set(eval_job(wikiann, "sw"), "ner", "qu", str(tokenizer_dir), 32, None)  # another job, same test set
    assert again[0] is examples and again[1] is features and calls == [32]

    capped = ctx.test_set(eval_job(wikiann, "en"), "ner", "qu", str(tokenizer_dir), 32, 4)
    longer = ctx.test_set(eval_job(wikiann, "en"), "ner", "qu", str(tokenizer_dir), 48, None)
    english = ctx.test_set(eval_job(wikiann, "en"), "ner", "en", str(tokenizer_dir), 32, None)
    assert len(capped[1]) == 4 and len(longer[1]) == 12 and len(english[1]) == 5 and calls == [32, 32, 48, 32]
    fresh = prepare("ner", examples, ctx.tokenizer(str(tokenizer_dir)), train=False, max_length=32)
    assert features["input_ids"] == fresh["input_ids"] and features["labels"] == fresh["labels"]
