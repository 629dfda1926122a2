"""madx data mlm-corpus: text files plus WikiANN train/dev sentences, never a test sentence."""

from __future__ import annotations

import json

import pytest

from madx.cli import main
from madx.data.corpus import build_mlm_corpus
from madx.data.mlm import read_text_files


def write_wikiann(path, sentences):
    """XTREME layout: token<TAB>tag, a blank line between sentences."""
    path.write_text("\n\n".join("\n".join(f"{token}\tO" for token in s.split()) for s in sentences) + "\n", encoding="utf-8")


LONG_TEST = "Tupac Amaru was born in Tinta in the province of Canchis"


@pytest.fixture
def inputs(tmp_path):
    text, wikiann = tmp_path / "text", tmp_path / "wikiann"
    text.mkdir()
    wikiann.mkdir()
    (text / "qu.txt").write_text("Allin p'unchaw\nqhichwa simi\nAllin p'unchaw\n", encoding="utf-8")
    (text / "mi.txt").write_text("Kia ora\n", encoding="utf-8")
    write_wikiann(wikiann / "train-qu.tsv", ["Qusqu llaqta", f"He said : {LONG_TEST} in 1738", "qhichwa simi"])
    write_wikiann(wikiann / "dev-qu.tsv", ["Lima llaqta"])
    write_wikiann(wikiann / "test-qu.tsv", [LONG_TEST, "Puno"])
    write_wikiann(wikiann / "train-ja.tsv", ["東 京 都"])  # WikiANN splits Japanese into characters
    write_wikiann(wikiann / "test-xmf.tsv", ["ტბილისი"])  # a test set only: no corpus can be made
    return text, wikiann


def test_text_then_wikiann_train_and_dev_without_duplicates_or_test_sentences(inputs, tmp_path):
    text, wikiann = inputs
    manifest = build_mlm_corpus(tmp_path / "out", ["qu", "mi", "ja"], text_dir=text, wikiann_dir=wikiann)
    assert read_text_files(tmp_path / "out" / "qu.txt") == ["Allin p'unchaw", "qhichwa simi", "Qusqu llaqta", "Lima llaqta"]
    qu = manifest["languages"]["qu"]
    assert (qu["rows"], qu["duplicate_lines"], qu["excluded_lines"]) == (4, 2, 1)
    assert [(i["file"].rsplit("/", 1)[1], i["lines"]) for i in qu["inputs"]] == [("qu.txt", 3), ("train-qu.tsv", 3), ("dev-qu.tsv", 1)]
    assert qu["excludes"].endswith("test-qu.tsv") and len(qu["excludes_sha256"]) == 64
    assert read_text_files(tmp_path / "out" / "mi.txt") == ["Kia ora"]
    assert manifest["languages"]["mi"]["excludes"] is None  # no test set for mi here: nothing to exclude, and said so
    assert read_text_files(tmp_path / "out" / "ja.txt") == ["東京都"]
    assert json.loads((tmp_path / "out" / "MANIFEST.json").read_text()) == manifest


def test_only_one_split_when_asked_and_every_language_found_by_default(inputs, tmp_path):
    text, wikiann = inputs
    manifest = build_mlm_corpus(tmp_path / "out", text_dir=text, wikiann_dir=wikiann, splits=["dev"])
    assert sorted(manifest["languages"]) == ["mi", "qu"]  # ja has train only; xmf a test set only: never a source
    assert read_text_files(tmp_path / "out" / "qu.txt") == ["Allin p'unchaw", "qhichwa simi", "Lima llaqta"]


def test_a_language_without_any_input_is_reported_and_gets_no_file(inputs, tmp_path, capsys):
    text, wikiann = inputs
    status = main(["data", "mlm-corpus", "--text", str(text), "--wikiann", str(wikiann), "--out", str(tmp_path / "out"),
                   "--languages", "qu,xmf"])
    assert status == 1
    assert "MISSING (1): no input for xmf" in capsys.readouterr().out
    assert not (tmp_path / "out" / "xmf.txt").exists() and (tmp_path / "out" / "qu.txt").exists()
    assert json.loads((tmp_path / "out" / "MANIFEST.json").read_text())["missing"] == ["xmf"]


def test_test_sentences_can_never_be_asked_for(inputs, tmp_path):
    text, wikiann = inputs
    with pytest.raises(ValueError, match=r"WikiANN splits \['test'\].*never test"):
        build_mlm_corpus(tmp_path / "out", text_dir=text, wikiann_dir=wikiann, splits=["train", "test"])


def test_bad_folders_are_named(inputs, tmp_path):
    text, wikiann = inputs
    with pytest.raises(FileNotFoundError, match="nowhere: the WikiANN folder does not exist"):
        build_mlm_corpus(tmp_path / "out", text_dir=text, wikiann_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="must differ from the input folders"):
        build_mlm_corpus(text, text_dir=text, wikiann_dir=wikiann)
    with pytest.raises(ValueError, match="nothing to build from"):
        build_mlm_corpus(tmp_path / "out")


def test_a_language_whose_every_line_is_a_test_sentence_is_missing_not_silently_empty(inputs, tmp_path):
    text, wikiann = inputs
    (text / "gn.txt").write_text(f"{LONG_TEST}\nPuno\n", encoding="utf-8")
    write_wikiann(wikiann / "test-gn.tsv", [LONG_TEST, "Puno"])
    lines = []
    manifest = build_mlm_corpus(tmp_path / "out", ["gn"], text_dir=text, wikiann_dir=wikiann, say=lines.append)
    assert manifest["missing"] == ["gn"] and manifest["languages"]["gn"]["excluded_lines"] == 2
    assert not (tmp_path / "out" / "gn.txt").exists()
    assert "gn: no line left after 0 duplicates and 2 lines with a WikiANN test sentence were dropped" in lines[-1]
