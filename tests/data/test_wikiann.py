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


# --- malformed input: every error names the file and the line (and the byte offset for encodings) ---


def bad(tmp_path, data: bytes | str, name="bad.tsv"):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def error_of(p, **kwargs) -> str:
    with pytest.raises(WikiANNFormatError) as e:
        read_wikiann(p, **kwargs)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert msg.startswith(f"{p}:") and len(msg) < 300 + len(str(p)), msg  # bounded: error.json stores repr(error)
    return msg


def test_latin1_file_names_line_offset_and_hint(tmp_path):
    p = bad(tmp_path, "A\tO\n\nKöln\tB-LOC\n".encode("latin-1"))
    msg = error_of(p)
    assert msg.startswith(f"{p}:3: not UTF-8: byte 0xf6 at offset 6") and "re-encode as UTF-8" in msg


def test_windows_1252_quotes(tmp_path):
    p = bad(tmp_path, "A\tO\n\u201cB\u201d\tO\n".encode("cp1252"))
    assert error_of(p).startswith(f"{p}:2: not UTF-8: byte 0x93 at offset 4")


def test_utf16_with_bom_is_named_as_utf16(tmp_path):
    p = bad(tmp_path, "A\tO\n".encode("utf-16"))
    msg = error_of(p)
    assert f"{p}:1: not UTF-8: byte 0xff at offset 0" in msg and "UTF-16" in msg


def test_utf16_without_bom_is_a_nul_byte(tmp_path):
    p = bad(tmp_path, "A\tO\n".encode("utf-16-le"))
    msg = error_of(p)
    assert msg.startswith(f"{p}:1: not text: a NUL byte at offset 1") and "UTF-16 without a byte-order mark" in msg


def test_nul_byte_in_otherwise_valid_utf8(tmp_path):
    p = bad(tmp_path, b"A\tO\nB\tO\n\nC\x00\tO\n")
    assert error_of(p).startswith(f"{p}:4: not text: a NUL byte at offset 10")


def test_binary_garbage(tmp_path):
    p = bad(tmp_path, bytes(range(255, -1, -1)) * 8)
    assert error_of(p).startswith(f"{p}:1: not UTF-8: byte 0xff at offset 0")


def test_gzip_file_says_decompress(tmp_path):
    import gzip

    p = bad(tmp_path, gzip.compress(b"A\tO\n", mtime=0), name="train-en.tsv.gz")
    msg = error_of(p)
    assert f"{p}:1: not UTF-8" in msg and "decompress" in msg


def test_truncated_multibyte_character_at_end(tmp_path):
    p = bad(tmp_path, "A\tO\n\nZürich\tB-LOC".encode()[:7])  # cut inside ü: b"...Z\xc3"
    assert error_of(p).startswith(f"{p}:3: not UTF-8: byte 0xc3 at offset 6 (unexpected end of data)")


def test_huge_latin1_file_message_is_bounded(tmp_path):
    p = bad(tmp_path, ("ñ" * 50_000 + "\tO\n").encode("latin-1") * 20)
    with pytest.raises(WikiANNFormatError) as e:
        read_wikiann(p)
    assert len(repr(e.value)) < 300 + len(str(p))


@pytest.mark.parametrize("prefix", ["", "en:"])
def test_utf8_bom_is_dropped_in_both_layouts(tmp_path, prefix):
    p = write(tmp_path / "f.tsv", prefix=prefix)
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    toks, tags = read_wikiann(p)
    assert toks == [s[0] for s in SENTENCES] and tags == [s[1] for s in SENTENCES]


def test_bom_with_crlf_and_concatenated_files(tmp_path):
    one = write(tmp_path / "a", prefix="en:", eol="\r\n", trailing_blank=True).read_bytes()
    p = bad(tmp_path, b"\xef\xbb\xbf" + one + b"\xef\xbb\xbf" + one, name="cat")  # cat a a, each saved with a BOM
    toks, _ = read_wikiann(p)
    assert toks == [s[0] for s in SENTENCES] * 2


def test_bom_only_file_is_empty(tmp_path):
    p = bad(tmp_path, b"\xef\xbb\xbf\n")
    with pytest.raises(WikiANNFormatError, match=rf"^{p}: file is empty"):
        read_wikiann(p)


def test_crlf_file_loads(tmp_path):
    toks, tags = read_wikiann(write(tmp_path / "f.tsv", eol="\r\n"))
    assert toks == [s[0] for s in SENTENCES] and tags == [s[1] for s in SENTENCES]


def test_old_mac_cr_line_ends_load(tmp_path):
    toks, _ = read_wikiann(write(tmp_path / "f.tsv", eol="\r"))
    assert toks == [s[0] for s in SENTENCES]


def test_unicode_line_separators_stay_inside_tokens(tmp_path):
    # U+2028, U+0085 and form feeds are characters of a token, not line ends (as Python's open() reads lines)
    toks, _ = read_wikiann(bad(tmp_path, "a\u2028b\tO\nc\x85d\tO\ne\x0cf\tO\n"))
    assert toks == [["a\u2028b", "c\x85d", "e\x0cf"]]


def test_whitespace_only_lines_still_separate_sentences(tmp_path):
    toks, _ = read_wikiann(bad(tmp_path, "A\tO\n \t \nB\tO\n\t\nC\tO\n"))
    assert toks == [["A"], ["B"], ["C"]]


def test_whitespace_around_the_tag_is_ignored_as_before(tmp_path):
    assert read_wikiann(bad(tmp_path, "A\tB-PER \nB\t I-PER\r\n"))[1] == [["B-PER", "I-PER"]]


@pytest.mark.parametrize(
    "line, found",
    [
        ("Lima\tB-LOC\tB-LOC", "found 3"),  # an extra column: was read as token 'Lima\tB-LOC'
        ("Lima\tB-LOC\t", "found 3"),  # a trailing tab
        ("1\tLima\tB-LOC", "found 3"),  # a CoNLL-style index column
        ("Lima\t\tB-LOC", "found 3"),  # two tabs
        ("en:Lima\tB-LOC\tqu", "found 3"),
    ],
)
def test_column_count_is_checked_per_line(tmp_path, line, found):
    p = bad(tmp_path, f"A\tO\nB\tO\n\n{line}\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:4: expected 'token<TAB>tag' (or 'lang:token<TAB>tag'): 2 tab-separated columns, {found}")


def test_spaces_instead_of_tabs_say_so(tmp_path):
    p = bad(tmp_path, "A O\nB O\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:1: expected 'token<TAB>tag'") and "found no tab in 'A O'" in msg and "spaces" in msg


@pytest.mark.parametrize("sep", [",", ";", "|", "  "])
def test_other_delimiters(tmp_path, sep):
    p = bad(tmp_path, f"A\tO\nB{sep}O\n")
    assert error_of(p).startswith(f"{p}:2: expected 'token<TAB>tag' (or 'lang:token<TAB>tag'), found no tab")


def test_a_long_line_is_cut_in_the_message(tmp_path):
    p = bad(tmp_path, "A\tO\n" + "x" * 100_000 + "\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:2: expected") and "…" in msg


def test_a_long_unknown_tag_is_cut_in_the_message(tmp_path):
    p = bad(tmp_path, "A\t" + "B-" * 50_000 + "\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:1: unknown tag 'B-B-") and "…" in msg and "allowed tags are O, B-PER" in msg


@pytest.mark.parametrize("tag", ["b-per", "B-MISC", "PER", "B_PER", "0", ""])
def test_tags_outside_the_tag_set(tmp_path, tag):
    p = bad(tmp_path, f"A\tO\nB\t{tag}\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:2: unknown tag {tag!r}; allowed tags are {', '.join(NER_TAGS)}")


def test_swapped_columns_are_pointed_out(tmp_path):
    p = bad(tmp_path, "O\tLima\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:1: unknown tag 'Lima'") and "columns look swapped" in msg


def test_mixed_prefixes_after_detection(tmp_path):
    lines = [f"en:w{i}\tO" for i in range(60)] + ["de:Berlin\tB-LOC"]
    p = bad(tmp_path, "\n".join(lines) + "\n", name="train")
    msg = error_of(p)
    assert msg.startswith(f"{p}:61: mixed language prefixes in one file: 'en:' (line 1) and 'de:' (line 61)")


def test_mixed_prefixes_in_the_first_lines(tmp_path):
    # half en:, half de: — before, no prefix had the majority, so the file was read as XTREME
    # and every token kept its prefix
    lines = [f"{'en' if i % 2 else 'de'}:w{i}\tO" for i in range(20)]
    p = bad(tmp_path, "\n".join(lines) + "\n", name="train")
    msg = error_of(p)
    assert "mixed language prefixes in one file" in msg and "'de:' (line 1)" in msg and "'en:' (line 2)" in msg
    assert msg.startswith(f"{p}:2:")
    assert "mixed language prefixes" in error_of(p, layout="rahimi")
    assert read_wikiann(p, layout="xtreme")[0][0][0] == "de:w0"  # forced XTREME keeps tokens verbatim


def test_mixed_prefixes_with_a_minority_first_line(tmp_path):
    # the first token's prefix differs from the rest: before, read as XTREME with prefixes kept
    lines = ["de:Berlin\tB-LOC"] + [f"en:w{i}\tO" for i in range(10)]
    p = bad(tmp_path, "\n".join(lines) + "\n", name="train")
    assert error_of(p).startswith(f"{p}:1: mixed language prefixes in one file: 'en:' (line 2) and 'de:' (line 1)")


def test_first_line_without_the_prefix_of_the_rest(tmp_path):
    # before: read as XTREME, every later token kept 'en:'
    lines = ["Berlin\tB-LOC"] + [f"en:w{i}\tO" for i in range(10)]
    p = bad(tmp_path, "\n".join(lines) + "\n", name="train")
    assert error_of(p).startswith(f"{p}:1: expected the language prefix 'en:'")


def test_prefix_with_empty_token(tmp_path):
    p = bad(tmp_path, "en:A\tO\nen:\tO\n", name="train")
    assert error_of(p).startswith(f"{p}:2: empty token")


def test_truncated_last_line_without_tag(tmp_path):
    p = bad(tmp_path, "A\tO\nB\tO\n\nLim")
    assert error_of(p).startswith(f"{p}:4: expected 'token<TAB>tag'")


def test_truncated_last_line_inside_the_tag(tmp_path):
    p = bad(tmp_path, "A\tO\nLima\tB-L")
    assert error_of(p).startswith(f"{p}:2: unknown tag 'B-L'")


def test_json_given_as_wikiann(tmp_path):
    p = bad(tmp_path, '{"data": []}\n', name="xquad.en.json")
    assert error_of(p).startswith(f"{p}:1: expected 'token<TAB>tag'")


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"^{tmp_path}: is a directory; expected a WikiANN file"):
        load_wikiann(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train-xx\.tsv: no such WikiANN file"):
        load_wikiann(tmp_path / "train-xx.tsv")


def test_a_missing_file_names_languages_only_and_points_at_subfolders(tmp_path):
    """A layout folder (rahimi-original-en) is no language: the message lists codes, and names the subfolders
    when the root itself holds no language's file."""
    from madx.data.wikiann import wikiann_path

    (tmp_path / "rahimi-original-en" / "en").mkdir(parents=True)
    (tmp_path / "rahimi-original-en" / "en" / "test").write_text("a\tO\n")
    (tmp_path / "rahimi-xtreme").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        wikiann_path(tmp_path, "qu", "test")
    message = str(error.value)
    assert "languages with" not in message and "rahimi-original-en, rahimi-xtreme" in message
    (tmp_path / "test-sw.tsv").write_text("a\tO\n")
    (tmp_path / "rahimi-original-en" / "test").mkdir()
    with pytest.raises(FileNotFoundError, match=r"languages with a test split here: sw$"):
        wikiann_path(tmp_path, "qu", "test")
