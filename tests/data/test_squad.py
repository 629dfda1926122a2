"""madx.data.squad: the HF squad schema, answer validation and repair, errors with JSON paths."""

from __future__ import annotations

import copy
import json
import logging

import pytest

from madx.data.squad import SquadFormatError, load_squad, load_squad_hub, read_squad

CTX0 = "The Panthers allowed 308 points. In 2015 they allowed 308 again."
CTX1 = "Denver won Super Bowl 50."
DOC = {
    "version": "1.1",
    "data": [
        {
            "title": "Panthers",
            "paragraphs": [
                {
                    "context": CTX0,
                    "qas": [
                        {"id": "q1", "question": "How many points?", "answers": [{"text": "308", "answer_start": 21}]},
                        {
                            "id": "q2",
                            "question": "When?",
                            "answers": [{"text": "2015", "answer_start": 36}, {"text": "In 2015", "answer_start": 33}],
                        },
                    ],
                },
                {"context": CTX1, "qas": [{"id": "q3", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 0}]}]},
            ],
        }
    ],
}


def write(tmp_path, doc, name="squad.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return p


def test_schema_and_values(tmp_path):
    ds = load_squad(write(tmp_path, DOC))
    assert ds.column_names == ["id", "title", "context", "question", "answers"]
    assert len(ds) == 3
    assert ds[1] == {
        "id": "q2",
        "title": "Panthers",
        "context": CTX0,
        "question": "When?",
        "answers": {"text": ["2015", "In 2015"], "answer_start": [36, 33]},
    }
    assert ds.features["answers"]["answer_start"].feature.dtype == "int32"


def test_misplaced_answer_is_an_error_naming_file_and_id(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 22
    p = write(tmp_path, doc)
    with pytest.raises(SquadFormatError) as e:
        load_squad(p)
    msg = str(e.value)
    assert str(p) in msg and "'q1'" in msg and "'308' expected at answer_start=22" in msg
    assert "found '08 '" in msg and "occurs at 21" in msg and "repair=True" in msg


def test_repair_moves_to_nearest_occurrence_and_counts(tmp_path, caplog):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 50  # nearer the 2nd "308"
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = 3
    with caplog.at_level(logging.WARNING, logger="madx.data.squad"):
        ds = load_squad(write(tmp_path, doc), repair=True)
    assert ds[0]["answers"]["answer_start"] == [CTX0.rindex("308")]
    assert ds[2]["answers"]["answer_start"] == [0]
    assert any("2 answer(s)" in r.getMessage() for r in caplog.records)


def test_answer_text_nowhere_is_an_error_even_with_repair(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["text"] = "Carolina"
    with pytest.raises(SquadFormatError, match=r"'q3'.*occurs nowhere in the context"):
        load_squad(write(tmp_path, doc), repair=True)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d.pop("data"), "missing key <root>.data"),
        (lambda d: d["data"][0].pop("paragraphs"), "missing key data[0].paragraphs"),
        (lambda d: d["data"][0]["paragraphs"][1].pop("context"), "missing key data[0].paragraphs[1].context"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].pop("question"), "missing key data[0].paragraphs[0].qas[1].question"),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][1]["answers"][1].pop("answer_start"),
            "missing key data[0].paragraphs[0].qas[1].answers[1].answer_start",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start="21"),
            "data[0].paragraphs[0].qas[0].answers[0].answer_start should be int, found str",
        ),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(answers=[]), "'q3' (data[0].paragraphs[1].qas[0]) has no answers"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(id="q1"), "question id 'q1' at data[0].paragraphs[1].qas[0] was already used at data[0].paragraphs[0].qas[0]"),
    ],
)
def test_structural_errors_name_file_and_path(tmp_path, mutate, where):
    doc = copy.deepcopy(DOC)
    mutate(doc)
    p = write(tmp_path, doc)
    with pytest.raises(SquadFormatError) as e:
        read_squad(p)
    assert str(p) in str(e.value) and where in str(e.value)


def test_impossible_questions_may_have_no_answers(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["qas"][0].update(answers=[], is_impossible=True)
    assert load_squad(write(tmp_path, doc))[2]["answers"] == {"text": [], "answer_start": []}


def test_invalid_json_and_empty(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(SquadFormatError, match=r"broken.json:1:\d+: not valid JSON"):
        read_squad(p)
    with pytest.raises(SquadFormatError, match="no questions found"):
        read_squad(write(tmp_path, {"data": []}))


def test_unicode_context(tmp_path):
    ctx = "東京は日本の首都です。"
    doc = {"data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": [{"id": "1", "question": "?", "answers": [{"text": "日本", "answer_start": 3}]}]}]}]}
    assert load_squad(write(tmp_path, doc))[0]["answers"]["text"] == ["日本"]


def test_hub_loader_unknown_name_suggests_without_network():
    with pytest.raises(ValueError, match="did you mean xquad.de"):
        load_squad_hub("xquad.dee")


def test_hub_loader_short_names_and_schema(monkeypatch):
    import datasets

    from madx.data import squad

    calls = []
    hub = datasets.Features(
        {
            "id": datasets.Value("string"),
            "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
        }
    )

    def fake(repo, config, split):
        calls.append((repo, config, split))
        return datasets.Dataset.from_dict(
            {"id": ["1"], "context": [CTX1], "question": ["Who?"], "answers": [{"text": ["Denver"], "answer_start": [0]}]},
            features=hub,
        )

    monkeypatch.setattr(squad.datasets, "load_dataset", fake)
    ds = load_squad_hub("xquad.de")
    assert calls == [("google/xquad", "xquad.de", "validation")]
    assert ds.column_names == ["id", "title", "context", "question", "answers"] and ds[0]["title"] == ""
    assert ds[0]["answers"] == {"text": ["Denver"], "answer_start": [0]}


# --- malformed input: every error names the file and the line/column, byte offset or JSON path ---


def error_of(p, **kwargs) -> str:
    with pytest.raises(SquadFormatError) as e:
        read_squad(p, **kwargs)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert msg.startswith(f"{p}:") and len(msg) < 300 + len(str(p)), msg  # bounded: error.json stores repr(error)
    return msg


def write_bytes(tmp_path, data: bytes, name="squad.json"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_latin1_json_names_line_and_offset(tmp_path):
    text = json.dumps(DOC, ensure_ascii=False, indent=1).replace("Denver won", "Denvér won")
    p = write_bytes(tmp_path, text.encode("latin-1"))
    line = text[: text.index("Denvér")].count("\n") + 1
    offset = len(text[: text.index("é")].encode("latin-1"))
    msg = error_of(p)
    assert msg.startswith(f"{p}:{line}: not UTF-8: byte 0xe9 at offset {offset}") and "re-encode as UTF-8" in msg


def test_utf16_json(tmp_path):
    p = write_bytes(tmp_path, json.dumps(DOC).encode("utf-16"))
    msg = error_of(p)
    assert msg.startswith(f"{p}:1: not UTF-8: byte 0xff at offset 0") and "UTF-16" in msg


def test_binary_garbage_json(tmp_path):
    p = write_bytes(tmp_path, bytes(range(128, 256)) * 4)
    assert error_of(p).startswith(f"{p}:1: not UTF-8: byte 0x80 at offset 0")


def test_bom_is_accepted(tmp_path):
    p = write_bytes(tmp_path, b"\xef\xbb\xbf" + json.dumps(DOC, ensure_ascii=False).encode())
    assert read_squad(p) == read_squad(write(tmp_path, DOC, name="plain.json"))


def test_crlf_json_loads(tmp_path):
    p = write_bytes(tmp_path, json.dumps(DOC, indent=2).replace("\n", "\r\n").encode())
    assert read_squad(p) == read_squad(write(tmp_path, DOC, name="plain.json"))


def test_u_feff_inside_strings_is_kept(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["context"] = "\ufeff" + CTX1
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = 1
    assert load_squad(write(tmp_path, doc))[2]["context"] == "\ufeff" + CTX1


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file(tmp_path, content):
    p = write_bytes(tmp_path, content.encode())
    msg = error_of(p)
    assert "not valid JSON (Expecting value)" in msg and "the file is empty" in msg


@pytest.mark.parametrize("cut_after", ['"answer_start": 36', '"Panthers', '"qas": ['])
def test_truncated_json_names_line_column(tmp_path, cut_after):
    text = json.dumps(DOC, indent=1)
    cut = text[: text.index(cut_after) + len(cut_after)]
    p = write_bytes(tmp_path, cut.encode())
    msg = error_of(p)
    line = cut[: cut.rindex('"')].count("\n") + 1 if cut_after == '"Panthers' else cut.count("\n") + 1
    assert msg.startswith(f"{p}:{line}:") and "not valid JSON" in msg and "truncated?" in msg


def test_trailing_comma_names_line_column_and_shows_where(tmp_path):
    text = json.dumps(DOC, indent=1).replace('"answer_start": 0\n', '"answer_start": 0,\n')
    p = write_bytes(tmp_path, text.encode())
    line = text[: text.index('"answer_start": 0,')].count("\n") + 2  # the error is at the closing brace
    msg = error_of(p)
    assert msg.startswith(f"{p}:{line}:") and "Expecting property name" in msg and "near '" in msg


def test_json_lines_is_extra_data_on_line_2(tmp_path):
    p = write_bytes(tmp_path, (json.dumps(DOC) + "\n" + json.dumps(DOC) + "\n").encode())
    assert error_of(p).startswith(f"{p}:2:1: not valid JSON (Extra data)")


def test_single_quotes_and_nan(tmp_path):
    p = write_bytes(tmp_path, b"{'data': []}")
    assert error_of(p).startswith(f"{p}:1:2: not valid JSON")
    text = json.dumps(DOC).replace('"answer_start": 0', '"answer_start": NaN')
    msg = error_of(write_bytes(tmp_path, text.encode(), name="nan.json"))
    assert "data[0].paragraphs[1].qas[0].answers[0].answer_start should be int, found float nan" in msg


def test_minified_file_error_excerpt_is_bounded(tmp_path):
    text = json.dumps(DOC).replace(CTX1, "x" * 100_000).replace("Super Bowl", "")
    p = write_bytes(tmp_path, (text[:-2] + "}}").encode())  # one line, broken near the end
    msg = error_of(p)
    assert msg.startswith(f"{p}:1:")


def test_deeply_nested(tmp_path):
    p = write_bytes(tmp_path, b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in error_of(p)


@pytest.mark.parametrize("top", [[], [DOC], "data", 1.1, None, True])
def test_wrong_top_level_type(tmp_path, top):
    p = write(tmp_path, top)
    msg = error_of(p)
    assert msg.startswith(f"{p}: the top level should be an object") and f"found {type(top).__name__}" in msg


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d.update(data={"title": "x"}), "<root>.data should be list, found dict"),
        (lambda d: d.update(data=None), "<root>.data should be list, found NoneType"),
        (lambda d: d["data"].append("article"), "data[1] should be an object, found str 'article'"),
        (lambda d: d["data"][0].update(paragraphs={}), "data[0].paragraphs should be list, found dict"),
        (lambda d: d["data"][0].update(title=7), "data[0].title should be str, found int 7"),
        (lambda d: d["data"][0]["paragraphs"].insert(0, ["ctx"]), "data[0].paragraphs[0] should be an object, found list"),
        (lambda d: d["data"][0]["paragraphs"][1].update(context=None), "data[0].paragraphs[1].context should be str, found NoneType"),
        (lambda d: d["data"][0]["paragraphs"][1].update(context=["a"]), "data[0].paragraphs[1].context should be str, found list"),
        (lambda d: d["data"][0]["paragraphs"][1].update(qas={"id": "q3"}), "data[0].paragraphs[1].qas should be list, found dict"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"].append(3), "data[0].paragraphs[1].qas[1] should be an object, found int 3"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].pop("id"), "missing key data[0].paragraphs[1].qas[0].id"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(id=True), "data[0].paragraphs[1].qas[0].id should be str or int, found bool True"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(id=None), "qas[0].id should be str or int, found NoneType"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(id=1.5), "qas[0].id should be str or int, found float 1.5"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(question=["?"]), "qas[0].question should be str, found list"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(answers={"text": "Denver"}), "qas[0].answers should be list, found dict"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(answers=["Denver"]), "qas[0].answers[0] should be an object, found str 'Denver'"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(is_impossible="no"), "qas[0].is_impossible should be bool, found str 'no'"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].update(text=5), "qas[0].answers[0].text should be str, found int 5"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].pop("text"), "missing key data[0].paragraphs[1].qas[0].answers[0].text"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].update(answer_start=0.0), "answers[0].answer_start should be int, found float 0.0"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].update(answer_start=False), "answers[0].answer_start should be int, found bool False"),
        (lambda d: d["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].update(answer_start=None), "answers[0].answer_start should be int, found NoneType"),
    ],
)
def test_wrong_types_name_the_json_path(tmp_path, mutate, where):
    doc = copy.deepcopy(DOC)
    mutate(doc)
    p = write(tmp_path, doc)
    assert where in error_of(p)


@pytest.mark.parametrize("start", [-1, -100, len(CTX1), 10**12])
def test_answer_start_out_of_range(tmp_path, start):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = start
    msg = error_of(write(tmp_path, doc))
    assert "'q3' (data[0].paragraphs[1].qas[0].answers[0].answer_start)" in msg
    assert f"expected at answer_start={start}, outside the context (length {len(CTX1)})" in msg
    assert "occurs at 0 (pass repair=True" in msg


def test_answer_running_past_the_end(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].update(text="50. And more", answer_start=len(CTX1) - 3)
    msg = error_of(write(tmp_path, doc))
    assert "answers[0].answer_start): answer '50. And more' expected at answer_start=22, found '50.' there" in msg
    assert "occurs nowhere" in msg


def test_empty_answer_text(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["text"] = ""
    assert "'q3' (data[0].paragraphs[1].qas[0].answers[0].text): the answer text is empty" in error_of(write(tmp_path, doc))


def test_empty_answer_of_an_impossible_question_is_kept(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["qas"][0].update(answers=[{"text": "", "answer_start": -1}], is_impossible=True)
    assert read_squad(write(tmp_path, doc))[2]["answers"] == {"text": [""], "answer_start": [-1]}


def test_long_values_are_cut_in_messages(tmp_path):
    long = "word " * 20_000
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1].update(context=long)
    doc["data"][0]["paragraphs"][1]["qas"][0].update(id="q" * 5_000, answers=[{"text": long[:-5] + "x", "answer_start": 0}])
    msg = error_of(write(tmp_path, doc))
    assert "…" in msg and "occurs nowhere" in msg
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].update({f"key{i}": i for i in range(10_000)})
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].pop("text")
    msg = error_of(write(tmp_path, doc))
    assert "missing key data[0].paragraphs[1].qas[0].answers[0].text (keys there: ['answer_start', 'key0'" in msg and "…" in msg
    doc = copy.deepcopy(DOC)
    doc["data"][0]["paragraphs"][1].update(context=["x" * 100_000])
    assert "…" in error_of(write(tmp_path, doc))


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"^{tmp_path}: is a directory; expected a SQuAD-format JSON file"):
        load_squad(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"xquad\.xx\.json: no such SQuAD-format JSON file"):
        load_squad(tmp_path / "xquad.xx.json")


def test_wikiann_given_as_squad(tmp_path):
    p = write_bytes(tmp_path, b"en:Lima\tB-LOC\n", name="train")
    assert error_of(p).startswith(f"{p}:1:1: not valid JSON (Expecting value)")
