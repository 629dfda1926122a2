"""madx.data.wikiann: both layouts, and errors that name file:line."""

from __future__ import annotations

import logging

import datasets
import pytest

from madx.data import wikiann
from madx.data.wikiann import (
    ID2LABEL,
    LABEL2ID,
    NER_TAGS,
    WikiANNFormatError,
    load_wikiann,
    load_wikiann_hub,
    read_wikiann,
    wikiann_path,
)

SENTENCES = [
    (["R.H.", "Saunders", "(", "St.", "Lawrence", ")"], ["B-ORG", "I-ORG", "O", "B-LOC", "I-LOC", "O"]),
    (["12:30", "David", "Nugent"], ["O", "B-PER", "I-PER"]),
    (["List"], ["B-ORG"]),
]


def write(path, sentences=SENTENCES, prefix="", trailing_blank=False, eol="\n"):
    blocks = ["".join(f"{prefix}{t}\t{g}{eol}" for t, g in zip(toks, tags)) for toks, tags in sentences]
    path.write_text(eol.join(blocks) + (eol if trailing_blank else ""), encoding="utf-8", newline="")
    return path


def test_tag_set_matches_hf_wikiann():
    assert NER_TAGS == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    assert LABEL2ID["I-LOC"] == 6 and ID2LABEL[3] == "B-ORG"
    assert wikiann.ner_features()["ner_tags"].feature.names == list(NER_TAGS)


@pytest.mark.parametrize("prefix", ["", "en:"])
@pytest.mark.parametrize("trailing_blank", [False, True])
def test_both_layouts_read_the_same(tmp_path, prefix, trailing_blank):
    ds = load_wikiann(write(tmp_path / "f.tsv", prefix=prefix, trailing_blank=trailing_blank))
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["tokens", "ner_tags"]
    assert ds["tokens"] == [s[0] for s in SENTENCES]
    assert ds["ner_tags"] == [[LABEL2ID[t] for t in s[1]] for s in SENTENCES]


def test_crlf_and_repeated_blank_lines(tmp_path):
    p = write(tmp_path / "f", prefix="sw:", eol="\r\n", trailing_blank=True)
    p.write_text(p.read_text(encoding="utf-8").replace("\r\n\r\n", "\r\n\r\n\n\n"), encoding="utf-8")
    toks, tags = read_wikiann(p)
    assert toks == [s[0] for s in SENTENCES] and tags == [s[1] for s in SENTENCES]


def test_multi_part_language_prefix(tmp_path):
    toks, _ = read_wikiann(write(tmp_path / "f", prefix="zh-min-nan:"))
    assert toks[0][0] == "R.H."


def test_colons_in_xtreme_tokens_are_not_a_prefix(tmp_path):
    sents = [(["en:x", "http://a"], ["O", "O"]), (["en:y"], ["O"])] + SENTENCES * 20
    toks, _ = read_wikiann(write(tmp_path / "f.tsv", sentences=sents))
    assert toks[0] == ["en:x", "http://a"]


def test_forced_layouts(tmp_path):
    p = write(tmp_path / "f", prefix="en:")
    assert read_wikiann(p, layout="xtreme")[0][0][0] == "en:R.H."
    with pytest.raises(WikiANNFormatError, match=r"f\.tsv:1: layout='rahimi'"):
        read_wikiann(write(tmp_path / "f.tsv"), layout="rahimi")
    with pytest.raises(ValueError, match="unknown WikiANN layout"):
        read_wikiann(p, layout="conll")


def test_line_without_tab_names_file_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("A\tO\nB O\n", encoding="utf-8")
    with pytest.raises(WikiANNFormatError) as e:
        read_wikiann(p)
    assert f"{p}:2:" in str(e.value) and "token<TAB>tag" in str(e.value) and "'B O'" in str(e.value)


def test_unknown_tag_names_file_line_tag_and_allowed(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("A\tO\n\nB\tB-MISC\n", encoding="utf-8")
    with pytest.raises(WikiANNFormatError) as e:
        read_wikiann(p)
    msg = str(e.value)
    assert f"{p}:3:" in msg and "'B-MISC'" in msg and "B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC" in msg


def test_missing_prefix_in_rahimi_file(tmp_path):
    p = tmp_path / "train"
    p.write_text("en:A\tO\nen:B\tO\n\nC\tO\n", encoding="utf-8")
    with pytest.raises(WikiANNFormatError, match=rf"{p}:4: expected the language prefix 'en:'"):
        read_wikiann(p)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "empty.tsv"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(WikiANNFormatError, match=r"empty.tsv: file is empty"):
        load_wikiann(p)


def test_empty_token(tmp_path):
    p = tmp_path / "f.tsv"
    p.write_text("A\tO\n\tO\n", encoding="utf-8")
    with pytest.raises(WikiANNFormatError, match=rf"{p}:2: empty token"):
        read_wikiann(p)


def test_dangling_inside_tags_warned_once_not_fatal(tmp_path, caplog):
    p = tmp_path / "f.tsv"
    # line 1: I-PER after nothing; line 4: I-LOC after B-PER; line 5 continues that I-LOC: fine
    p.write_text("A\tI-PER\nB\tO\n\nC\tB-PER\nD\tI-LOC\nE\tI-LOC\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="madx.data.wikiann"):
        toks, tags = read_wikiann(p)
    assert tags == [["I-PER", "O"], ["B-PER", "I-LOC", "I-LOC"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("2 'I-X' tag(s)") and f"{p}:1" in warnings[0]


def test_wikiann_path(tmp_path):
    write(tmp_path / "dev-sw.tsv")
    write(tmp_path / "test-qu.tsv")
    (tmp_path / "en").mkdir()
    write(tmp_path / "en" / "dev", prefix="en:")
    assert wikiann_path(tmp_path, "sw", "validation") == tmp_path / "dev-sw.tsv"
    assert wikiann_path(tmp_path, "en", "dev") == tmp_path / "en" / "dev"
    with pytest.raises(FileNotFoundError, match="languages with a dev split here: en, sw"):
        wikiann_path(tmp_path, "qu", "dev")
    with pytest.raises(ValueError, match="unknown split"):
        wikiann_path(tmp_path, "qu", "eval")


def test_hub_loader_rejects_bad_split_without_network():
    with pytest.raises(ValueError, match="unknown split"):
        load_wikiann_hub("qu", "training")


def test_hub_loader_maps_split_and_columns(monkeypatch):
    calls = []
    hub = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(NER_TAGS))),
            "langs": datasets.Sequence(datasets.Value("string")),
        }
    )

    def fake(repo, config, split):
        calls.append((repo, config, split))
        return datasets.Dataset.from_dict({"tokens": [["Lima"]], "ner_tags": [[5]], "langs": [["qu"]]}, features=hub)

    monkeypatch.setattr(wikiann.datasets, "load_dataset", fake)
    ds = load_wikiann_hub("qu", "dev")
    assert calls == [("unimelb-nlp/wikiann", "qu", "validation")]
    assert ds.column_names == ["tokens", "ner_tags"] and ds[0] == {"tokens": ["Lima"], "ner_tags": [5]}
