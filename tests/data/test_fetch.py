"""madx.data.fetch against local dataset folders in the hub's layout (tests/data/hub_layout.py):
what it writes loads with the project's loaders, MLM text leaves out WikiANN test sentences, is
deduplicated and capped, the manifest describes every file, gaps are reported, re-runs skip."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from madx.data import fetch as fetch_module
from madx.data.fetch import (
    MANIFEST_NAME,
    SentenceFilter,
    Sources,
    fetch,
    read_manifest,
    sha256_file,
    squad_json,
    write_text,
    write_wikiann_tsv,
)
from madx.data.languages import UnknownLanguageError
from madx.data.mlm import read_text_files
from madx.data.squad import load_squad
from madx.data.wikiann import NER_TAGS, load_wikiann, read_wikiann, wikiann_path
from tests.data.hub_layout import SQUAD, WIKIANN, WIKIPEDIA, XQUAD, build_sources, wikiann_split, write_hub_dataset


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Sources:
    paths = build_sources(tmp_path_factory.mktemp("hub"))
    return Sources(wikiann=paths["wikiann"], wikipedia=paths["wikipedia"], squad=paths["squad"], xquad=paths["xquad"])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf-cache")


@pytest.fixture(scope="module")
def fetched(hub, cache, tmp_path_factory):
    """One full run: en and qu (both in WikiANN and Wikipedia, only en in XQuAD) and gn (in none)."""
    out = tmp_path_factory.mktemp("data")
    lines: list[str] = []
    report = fetch(out, languages=["en", "qu", "gn"], sources=hub, cache_dir=cache, progress=lines.append)
    return out, report, lines


def squashed(text: str) -> str:
    return "".join(text.casefold().split())


def reference_text(articles: list[str], test_sentences: list[list[str]], max_bytes: int | None, min_chars: int = 20) -> list[str]:
    """What text/{lang}.txt must hold, by brute force: paragraphs in order, first occurrences only,
    none containing a (long) test sentence or equal to a (short) one, cut before the cap."""
    tests = [squashed("".join(tokens)) for tokens in test_sentences]
    out, seen, size = [], set(), 0
    for article in articles:
        for line in (part.strip() for part in article.splitlines()):
            if not line or line in seen:
                continue
            seen.add(line)
            s = squashed(line)
            if any(s == t or (len(t) >= min_chars and t in s) for t in tests):
                continue
            size += len(line.encode()) + 1
            if max_bytes is not None and size > max_bytes:
                return out
            out.append(line)
    return out


# ---------------------------------------------------------------- the layout the suites read


def test_wikiann_files_load_with_the_project_loader(fetched):
    out, report, _ = fetched
    for lang, splits in WIKIANN.items():
        for name, split in (("train", "train"), ("dev", "validation"), ("test", "test")):
            path = wikiann_path(out / "wikiann", lang, name)  # how the NER task finds them
            assert path == out / "wikiann" / f"{name}-{lang}.tsv"
            ds = load_wikiann(path)
            assert ds["tokens"] == [tokens for tokens, _ in splits[split]]
            assert ds["ner_tags"] == [[NER_TAGS.index(t) for t in tags] for _, tags in splits[split]]


def test_squad_and_xquad_files_load_with_the_project_loader(fetched):
    out, _, _ = fetched
    for path, rows in ((out / "squad" / "train-v1.1.json", SQUAD["train"]), (out / "squad" / "dev-v1.1.json", SQUAD["validation"]),
                       (out / "xquad" / "xquad.en.json", XQUAD["en"])):
        ds = load_squad(path)
        assert ds["id"] == [r["id"] for r in rows]
        assert ds["context"] == [r["context"] for r in rows]
        assert [a["text"] for a in ds["answers"]] == [r["answers"]["text"] for r in rows]
        assert [a["answer_start"] for a in ds["answers"]] == [r["answers"]["answer_start"] for r in rows]
    train = json.loads((out / "squad" / "train-v1.1.json").read_text(encoding="utf-8"))
    assert train["version"] == "1.1"
    assert [a["title"] for a in train["data"]] == ["Amazon", "Kyoto"]
    assert [len(p["qas"]) for p in train["data"][0]["paragraphs"]] == [1, 2]  # questions grouped by context


def test_text_is_deduplicated_and_free_of_wikiann_test_sentences(fetched):
    out, report, _ = fetched
    for lang in ("en", "qu"):
        articles = [a for shard in WIKIPEDIA[lang] for a in shard]
        tests = [tokens for tokens, _ in WIKIANN[lang]["test"]]
        lines = read_text_files(out / "text" / f"{lang}.txt")  # the MLM reader
        assert lines == reference_text(articles, tests, max_bytes=None)
        assert len(lines) == len(set(lines))
        for tokens in tests:
            t = squashed("".join(tokens))
            assert not any(t in squashed(line) for line in lines if len(t) >= 20)
            assert t not in {squashed(line) for line in lines}
    en = read_text_files(out / "text" / "en.txt")
    # the long test sentence inside a paragraph removes the paragraph, whatever the case and spacing ...
    assert not any("flows through Peru" in line for line in en)
    assert "Saint Petersburg (Russia) is an old city" not in en
    # ... the short one ("Lima") only a line that is just it; every line break splits (\r\n, U+2028)
    assert "Lima" not in en and "Lima is the capital of Peru." in en
    assert ["It lies on the Neva.", "It was founded in 1703.", "Its old name was Petrograd."] == en[3:6]
    entry = read_manifest(out)["files"]["text/en.txt"]
    assert entry["excluded_lines"] == 3 and entry["duplicate_lines"] == 3 and entry["truncated"] is False
    assert entry["excludes"] == "wikiann/test-en.tsv" and entry["excludes_sha256"] == sha256_file(out / "wikiann" / "test-en.tsv")
    assert any("3 lines with one of the 3 WikiANN test sentences removed" in line for line in fetched[2])


def test_manifest_describes_every_file(fetched, hub):
    out, report, _ = fetched
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["complete"] is True
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    assert sorted(manifest["files"]) == on_disk
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for rel, entry in manifest["files"].items():
        path = out / rel
        assert entry["bytes"] == path.stat().st_size and entry["sha256"] == sha256_file(path)
        assert entry["resolved_revision"] and entry["revision"] is None
        assert entry["rows"] > 0
    train = manifest["files"]["wikiann/train-en.tsv"]
    assert (train["source"], train["config"], train["split"], train["rows"]) == (hub.wikiann, "en", "train", 3)
    assert train["fingerprint"]
    dev = manifest["files"]["squad/dev-v1.1.json"]
    assert (dev["source"], dev["config"], dev["resolved_config"]) == (hub.squad, None, "plain_text")
    assert (dev["split"], dev["rows"]) == ("validation", 1)
    text = manifest["files"]["text/qu.txt"]
    assert (text["source"], text["config"], text["split"]) == (hub.wikipedia, "20231101.qu", "train")
    assert text["rows"] == len(read_text_files(out / "text" / "qu.txt"))
    assert manifest["last_run"]["languages"] == {"ner": ["en", "qu", "gn"], "qa": ["en", "qu", "gn"], "mlm": ["en", "qu", "gn"]}


def test_languages_a_source_lacks_are_reported(fetched, hub):
    out, report, lines = fetched
    assert not report.ok
    got = sorted((m["task"], m["language"], m["file"]) for m in report.missing)
    assert got == [("mlm", "gn", "text/gn.txt"),
                   ("ner", "gn", "wikiann/dev-gn.tsv"), ("ner", "gn", "wikiann/test-gn.tsv"), ("ner", "gn", "wikiann/train-gn.tsv"),
                   ("qa", "gn", "xquad/xquad.gn.json"), ("qa", "qu", "xquad/xquad.qu.json")]
    qu = next(m for m in report.missing if m["language"] == "qu")
    assert qu["source"] == hub.xquad and qu["config"] == "xquad.qu" and "no config 'xquad.qu'" in qu["reason"]
    assert read_manifest(out)["missing"] == report.missing
    assert any(line.startswith("xquad/xquad.qu.json: MISSING (qa, qu)") for line in lines)
    assert not (out / "xquad" / "xquad.qu.json").exists() and not (out / "text" / "gn.txt").exists()


# ---------------------------------------------------------------- re-runs


def test_rerun_skips_what_is_up_to_date_and_redoes_the_rest(fetched, hub, cache, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "data"
    shutil.copytree(fetched[0], out)

    def no_download(*args, **kwargs):
        raise AssertionError("fetched although the file was up to date")

    for name in ("load_split", "stream_split"):
        monkeypatch.setattr(fetch_module, name, no_download)
    again = fetch(out, languages=["en", "qu"], tasks=["ner", "mlm"], sources=hub, cache_dir=cache)
    assert again.ok and again.written == [] and len(again.skipped) == 8
    manifest = read_manifest(out)
    # gn was not asked for this time: what was missing for it stays on record
    assert {m["language"] for m in manifest["missing"]} == {"qu", "gn"}
    monkeypatch.undo()

    # a changed file, a changed setting: only what they affect is fetched again
    before = sha256_file(out / "wikiann" / "dev-qu.tsv")
    (out / "wikiann" / "dev-qu.tsv").write_text("Lima\tB-LOC\n", encoding="utf-8")
    redo = fetch(out, languages=["en", "qu"], tasks=["ner", "mlm"], sources=hub, cache_dir=cache, max_text_bytes=60)
    assert sorted(w["file"] for w in redo.written) == ["text/en.txt", "text/qu.txt", "wikiann/dev-qu.tsv"]
    assert sha256_file(out / "wikiann" / "dev-qu.tsv") == before
    en = read_text_files(out / "text" / "en.txt")
    assert (out / "text" / "en.txt").stat().st_size <= 60 and read_manifest(out)["files"]["text/en.txt"]["truncated"]
    assert en == reference_text([a for s in WIKIPEDIA["en"] for a in s], [t for t, _ in WIKIANN["en"]["test"]], max_bytes=60)

    # another WikiANN test set: the text is filtered again, and no longer loses the old test sentence
    other = write_hub_dataset(tmp_path / "wikiann2", {"qu": {"test": [wikiann_split("qu", [(["Qusqu"], ["B-LOC"])])]}})
    moved = fetch(out, languages=["qu"], tasks=["mlm"], sources=replace(hub, wikiann=str(other)), cache_dir=cache)
    assert sorted(w["file"] for w in moved.written) == ["text/qu.txt", "wikiann/test-qu.tsv"]
    assert "Inka Atawallpa Kashamarkapi wañurqan, ñawpa pachapi." in read_text_files(out / "text" / "qu.txt")

    forced = fetch(out, languages=["qu"], tasks=["mlm"], sources=replace(hub, wikiann=str(other)), cache_dir=cache, force=True)
    assert sorted(w["file"] for w in forced.written) == ["text/qu.txt", "wikiann/test-qu.tsv"] and not forced.skipped


def test_text_cap_on_a_larger_corpus(tmp_path):
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "kappa", "sigma", "omega", "theta"]
    articles = ["\n\n".join(" ".join(rng.choices(words, k=rng.randint(3, 12))) for _ in range(5)) for _ in range(400)]
    for i in range(0, 400, 40):  # some lines with a test sentence, some repeated
        articles[i] += f"\n\nomega {i} gamma delta\tkappa Sigma alpha\n\nalpha beta gamma"
    tests = [["gamma", "delta", "kappa", "sigma"], ["beta"]]
    for cap in (1_000, 7_777, None):
        path = tmp_path / f"cap-{cap}.txt"
        read = []

        def documents():
            for a in articles:
                read.append(a)
                yield a

        stats = write_text(path, documents(), max_bytes=cap, exclude=SentenceFilter(("".join(t) for t in tests), 20))
        lines = read_text_files(path)
        assert lines == reference_text(articles, tests, cap)
        assert stats["rows"] == len(lines) and stats["bytes"] == path.stat().st_size
        if cap is not None:
            assert cap - 100 < path.stat().st_size <= cap and stats["truncated"]
            assert len(read) < len(articles)  # stops reading at the cap
        if cap is None:
            assert stats["excluded_lines"] >= 10 and stats["duplicate_lines"] >= 9 and not stats["truncated"]


def test_text_without_any_line_writes_nothing(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("old\n", encoding="utf-8")
    stats = write_text(path, ["\n  \n", "Lima"], max_bytes=None, exclude=SentenceFilter(["Lima"]))
    assert stats["rows"] == 0 and stats["excluded_lines"] == 1
    assert path.read_text(encoding="utf-8") == "old\n"  # left as it was
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- the pieces


def test_sentence_filter_agrees_with_brute_force():
    rng = random.Random(1)
    alphabet = "abcdé "
    sentences = ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(300)]
    filt = SentenceFilter(sentences, min_chars=20)
    keys = [squashed(s) for s in sentences]
    for _ in range(2000):
        if rng.random() < 0.3:  # a line built around a sentence, with whitespace moved about
            s = rng.choice(sentences)
            around = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(2)]
            line = around[0] + " ".join(s) + around[1]
        else:
            line = "".join(rng.choices(alphabet, k=rng.randint(0, 90)))
        s = squashed(line)
        expected = any(s == k or (len(k) >= 20 and k in s) for k in keys if k)
        assert filt.matches(line) == expected, line
    with pytest.raises(ValueError, match="min_chars"):
        SentenceFilter([], min_chars=5)


def test_wikiann_writer_keeps_the_format_readable(tmp_path):
    path = tmp_path / "w.tsv"
    stats = write_wikiann_tsv(path, [["a\tb", "", "c"], [" "], ["en:x", "y"]], [["B-PER", "O", "I-PER"], ["O"], ["O", "O"]])
    assert stats == {"rows": 2, "tokens_dropped": 2, "sentences_dropped": 1}
    tokens, tags = read_wikiann(path)
    assert tokens == [["a b", "c"], ["en:x", "y"]] and tags == [["B-PER", "I-PER"], ["O", "O"]]
    with pytest.raises(ValueError, match="unknown WikiANN tag"):
        write_wikiann_tsv(tmp_path / "bad.tsv", [["a"]], [["B-MISC"]])


def test_squad_json_groups_articles_and_paragraphs():
    rows = [{"id": 1, "context": "c1", "question": "q", "answers": {"text": ["c"], "answer_start": [0]}},
            {"id": 2, "context": "c1", "question": "q", "answers": {"text": ["1"], "answer_start": [1]}},
            {"id": 3, "context": "c2", "question": "q", "answers": {"text": ["c", "2"], "answer_start": [0, 1]}}]
    doc = squad_json(rows)
    assert len(doc["data"]) == 1 and doc["data"][0]["title"] == ""
    assert [[q["id"] for q in p["qas"]] for p in doc["data"][0]["paragraphs"]] == [["1", "2"], ["3"]]


def test_a_missing_split_is_reported(tmp_path, hub, cache):
    only_test = write_hub_dataset(tmp_path / "wikiann", {"qu": {"test": [wikiann_split("qu", [(["Qusqu"], ["B-LOC"])])]}})
    report = fetch(tmp_path / "data", languages=["qu"], tasks=["ner"], sources=replace(hub, wikiann=str(only_test)), cache_dir=cache)
    assert [(m["file"], m["reason"]) for m in report.missing] == [
        ("wikiann/train-qu.tsv", f"{only_test} config 'qu': no split 'train' (splits: test)"),
        ("wikiann/dev-qu.tsv", f"{only_test} config 'qu': no split 'validation' (splits: test)"),
    ]
    assert load_wikiann(tmp_path / "data" / "wikiann" / "test-qu.tsv")["tokens"] == [["Qusqu"]]


def test_unknown_language_and_task_say_what_exists(tmp_path, hub):
    with pytest.raises(UnknownLanguageError, match="Did you mean 'qu'"):
        fetch(tmp_path, languages=["quu"], sources=hub)
    with pytest.raises(ValueError, match="did you mean 'mlm'"):
        fetch(tmp_path, languages=["en"], tasks=["mlmm"], sources=hub)
    with pytest.raises(ValueError, match=r"\{lang\}"):
        Sources(xquad_config="xquad.en")
    with pytest.raises(ValueError, match="did you mean 'wikiann'"):
        Sources(revisions={"wikian": "main"})
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_a_broken_manifest_is_named(tmp_path, hub):
    (tmp_path / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="MANIFEST.json: not a valid manifest"):
        fetch(tmp_path, languages=["en"], tasks=["ner"], sources=hub)
