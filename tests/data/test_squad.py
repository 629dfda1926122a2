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
