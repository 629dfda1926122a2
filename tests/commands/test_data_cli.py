"""`madx data fetch` on local folders in the hub's layout: the summary, the exit status, re-runs, errors."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from madx import cli
from madx.commands import data as data_command
from madx.data.fetch import MANIFEST_NAME, Sources
from tests.data.hub_layout import build_sources


@pytest.fixture(scope="module")
def hub_args(tmp_path_factory) -> list[str]:
    paths = build_sources(tmp_path_factory.mktemp("hub"))
    return ["--wikiann-dataset", paths["wikiann"], "--wikipedia-dataset", paths["wikipedia"],
            "--squad-dataset", paths["squad"], "--xquad-dataset", paths["xquad"],
            "--cache-dir", str(tmp_path_factory.mktemp("hf-cache"))]


def test_defaults_are_the_hub_sources():
    args = cli.build_parser().parse_args(["data", "fetch"])
    defaults = Sources()
    assert args.wikiann_dataset == defaults.wikiann == "unimelb-nlp/wikiann"
    assert args.wikipedia_dataset == defaults.wikipedia == "wikimedia/wikipedia"
    assert args.wikipedia_config == defaults.wikipedia_config == "20231101.{lang}"
    assert args.wikipedia_text_column == defaults.wikipedia_text_column
    assert (args.squad_dataset, args.squad_config) == (defaults.squad, defaults.squad_config) == ("rajpurkar/squad", None)
    assert (args.xquad_dataset, args.xquad_config) == (defaults.xquad, defaults.xquad_config) == ("google/xquad", "xquad.{lang}")
    assert {f.name for f in fields(Sources)} >= {"wikiann", "wikipedia", "squad", "xquad", "revisions"}


def test_fetch_reports_what_is_missing_and_exits_1(tmp_path, hub_args, capsys):
    out = tmp_path / "data"
    status = cli.main(["data", "fetch", "--out", str(out), "--languages", "en,qu", "--tasks", "qa,ner,mlm", *hub_args])
    printed = capsys.readouterr().out
    assert status == data_command.MISSING_STATUS == 1
    assert "MISSING (1):" in printed and "xquad/xquad.qu.json" in printed and "no config 'xquad.qu'" in printed
    assert ("text/en.txt: 9 lines from 5 documents; 3 duplicate lines dropped; "
            "3 lines with one of the 3 WikiANN test sentences removed") in printed
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert [m["file"] for m in manifest["missing"]] == ["xquad/xquad.qu.json"]
    assert len(manifest["files"]) == 11

    # asking only for what exists: exit 0, and nothing is fetched twice
    status = cli.main(["data", "fetch", "--out", str(out), "--languages", "en", "--tasks", "ner,qa,mlm", *hub_args])
    printed = capsys.readouterr().out
    assert status == 0 and "nothing missing" in printed
    assert "0 files written, 7 up to date" in printed and "fetching" not in printed


def test_out_defaults_to_madx_data(tmp_path, hub_args, monkeypatch, capsys):
    monkeypatch.setenv("MADX_DATA", str(tmp_path / "env-data"))
    assert cli.main(["data", "fetch", "--languages", "en", "--tasks", "ner", *hub_args]) == 0
    assert (tmp_path / "env-data" / "wikiann" / "train-en.tsv").is_file()
    monkeypatch.delenv("MADX_DATA")
    assert cli.main(["data", "fetch", "--languages", "en", "--tasks", "ner", *hub_args]) == 2
    assert "pass --out or set MADX_DATA" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, hub_args, capsys):
    for argv, expected in (
        (["--languages", "quu"], "Did you mean 'qu' (Quechua)?"),
        (["--tasks", "nerr"], "did you mean 'ner'?"),
        (["--revision", "wikian=abc"], "unknown source 'wikian'"),
        (["--revision", "a", "--revision", "b"], "given twice"),
        (["--max-text-mb", "-1"], "--max-text-mb must be >= 0"),
        (["--xquad-config", "xquad"], "must contain '{lang}'"),
    ):
        status = cli.main(["data", "fetch", "--out", str(tmp_path / "d"), *argv, *hub_args])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("madx data: error: ") and expected in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "d" / MANIFEST_NAME).exists()


def test_revisions_per_source_or_for_all():
    assert data_command._revisions([]) == {}
    assert data_command._revisions(["v1"]) == {"wikiann": "v1", "wikipedia": "v1", "squad": "v1", "xquad": "v1"}
    assert data_command._revisions(["v1", "xquad=abc"]) == {"wikiann": "v1", "wikipedia": "v1", "squad": "v1", "xquad": "abc"}
    assert data_command._revisions(["squad=refs/convert/parquet"]) == {"squad": "refs/convert/parquet"}
    with pytest.raises(ValueError, match="no revision after"):
        data_command._revisions(["squad="])


def test_paper_size_is_one_flag_for_the_whole_wikipedia(tmp_path, monkeypatch, capsys):
    """--paper-size: no cap on text/{lang}.txt (the paper's whole Wikipedia per language); the default
    cap is fetch's 100 MB; the two size options together are refused."""
    from madx.data import fetch as fetch_module

    asked = []

    def fake_fetch(out, **kwargs):
        asked.append(kwargs["max_text_bytes"])
        return fetch_module.FetchReport(out=out, manifest=out / MANIFEST_NAME)

    monkeypatch.setattr(fetch_module, "fetch", fake_fetch)
    for argv in ([], ["--paper-size"], ["--max-text-mb", "0"], ["--max-text-mb", "20"]):
        assert cli.main(["data", "fetch", "--out", str(tmp_path), "--tasks", "mlm", *argv]) == 0
    assert asked == [fetch_module.DEFAULT_MAX_TEXT_BYTES, None, None, 20_000_000]
    assert data_command.DEFAULT_MAX_TEXT_MB * 1e6 == fetch_module.DEFAULT_MAX_TEXT_BYTES
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "fetch", "--out", str(tmp_path), "--paper-size", "--max-text-mb", "20"])
    assert e.value.code == 2 and "--max-text-mb: not allowed with argument --paper-size" in capsys.readouterr().err
