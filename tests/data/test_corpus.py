"""madx data mlm-corpus: text files plus WikiANN train/dev sentences, never a test sentence."""

from __future__ import annotations

import json

import pytest

from madx.cli import main
from madx.data.checks import TextFileError
from madx.data.corpus import build_mlm_corpus, check_corpus_files
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


# --- a corpus file must be text, one document per line: WikiANN TSV and JSON are refused by the reader ---

XQUAD_LIKE = '{"data": [{"title": "Tupac", "paragraphs": [{"context": "Tupac Amaru was born in Tinta.", "qas": []}]}]}'


@pytest.fixture
def wrong_files(tmp_path):
    xtreme, rahimi = tmp_path / "train-qu.tsv", tmp_path / "rahimi-qu.tsv"
    write_wikiann(xtreme, ["Qusqu llaqta", "Lima llaqta"])
    rahimi.write_text("qu:Qusqu\tB-LOC\nqu:llaqta\tO\n\nqu:Lima\tB-LOC\n", encoding="utf-8")
    pretty = tmp_path / "squad.json"
    pretty.write_text(json.dumps(json.loads(XQUAD_LIKE), indent=1), encoding="utf-8")
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "Allin p\'unchaw"}\n{"text": "qhichwa simi"}\n', encoding="utf-8")
    xquad = tmp_path / "xquad.en.json"
    xquad.write_bytes(b"\xef\xbb\xbf" + XQUAD_LIKE.encode())
    return {"wikiann": [xtreme, rahimi], "json": [pretty, jsonl, xquad]}


def test_wikiann_tsv_and_json_are_refused_naming_the_file_and_what_was_expected(wrong_files):
    for kind, paths in wrong_files.items():
        for path in paths:
            with pytest.raises(TextFileError) as e:
                read_text_files([path])
            msg = str(e.value)
            assert msg.startswith(f"{path}: looks like {'WikiANN NER data' if kind == 'wikiann' else 'JSON'}"), msg
            assert "expected plain UTF-8 text, one document per line" in msg and len(msg) < 400 + len(str(path))


def test_text_that_merely_has_tabs_or_brackets_is_text(tmp_path):
    p = tmp_path / "qu.txt"
    lines = ["[1] Qusqu llaqta", "Tinta\tO", "Lima\tllaqta", "{Puno} llaqta", "O", "B-LOC"]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_text_files(p) == lines  # one tagged-looking line among others is not a WikiANN file


def test_every_caller_gets_the_check(wrong_files, tmp_path):
    from madx.data.mlm import build_mlm_dataset
    from madx.data.tokenizer import build_tiny_tokenizer, synthetic_corpus

    tok = build_tiny_tokenizer(synthetic_corpus("qu", 100), vocab_size=100)
    tsv, xquad = wrong_files["wikiann"][0], wrong_files["json"][2]
    with pytest.raises(TextFileError, match=rf"^{tsv}: looks like WikiANN"):
        build_mlm_dataset(tsv, tok, 16, cache_dir=tmp_path / "cache")
    with pytest.raises(TextFileError, match=rf"^{xquad}: looks like JSON"):
        build_mlm_dataset([xquad], tok, 16, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(TextFileError, match=rf"^{tsv}: looks like WikiANN"):
        check_corpus_files([tsv])
    text = tmp_path / "text"
    text.mkdir()
    (text / "qu.txt").write_bytes(tsv.read_bytes())
    with pytest.raises(TextFileError, match=r"qu\.txt: looks like WikiANN"):
        build_mlm_corpus(tmp_path / "out", ["qu"], text_dir=text)


def test_train_lang_refuses_a_wikiann_or_json_text(wrong_files, tmp_path, capsys):
    from tests.commands.tiny import make_tiny

    model = make_tiny(tmp_path)
    for path in (wrong_files["wikiann"][0], wrong_files["json"][2]):
        status = main(["train-lang", "--model", str(model), "--language", "qu", "--text", str(path),
                       "--out", str(tmp_path / f"adapter-{path.stem}"), "--steps", "1", "--batch-size", "2"])
        err = capsys.readouterr().err
        assert status == 2, err
        assert str(path) in err and "expected plain UTF-8 text, one document per line" in err, err
