"""The corpus-scale benchmark's logic: the generated corpus, the goals, the report, and one small run
end to end. (The measured run is ``python -m bench.perf.corpus_scale``; nothing here asserts a time.)"""

from __future__ import annotations

import json

import pytest

from bench.perf import corpus_scale as cs
from madx.data.mlm import read_text_files


def test_the_corpus_is_whole_lines_of_the_size_asked(tmp_path):
    pool = b"uno dos\ntres\ncuatro cinco seis\n"
    size = cs.write_corpus(tmp_path / "c.txt", 0.0001, pool)  # 100 bytes
    data = (tmp_path / "c.txt").read_bytes()
    assert size == len(data) and 100 - len(b"cuatro cinco seis\n") < size <= 100
    assert data.endswith(b"\n") and set(data.split(b"\n")[:-1]) <= {b"uno dos", b"tres", b"cuatro cinco seis"}
    assert data[:20] != data[len(pool) : len(pool) + 20]  # each repetition starts at another line


def _row(call, mb, rss, seconds=10.0, **extra):
    return {"call": call, "corpus_mb": mb, "corpus_bytes": int(mb * 1e6), "peak_rss_all": rss, "seconds": seconds,
            "processes": "auto", **extra}


def test_goals_are_checked_on_the_numbers():
    rows = [_row("first build", 256, 600e6), _row("cached call", 256, 370e6, 0.05),
            _row("first build", 1024, 640e6), _row("cached call", 1024, 370e6, 1.5),
            _row("first build", 64, 5e9, one_core_per_process=True)]  # scaling rows are not goals
    goals = {g["goal"]: g["met"] for g in cs.goals(rows)}
    assert goals == {
        "peak RSS (all processes), first build, 256 MB < 2 GB": True,
        "peak RSS (all processes), first build, 1024 MB < 2 GB": True,
        "peak RSS not growing with size: 1024 MB / 256 MB <= 1.25 (corpus 4.0x)": True,
        "cached call, 256 MB < 1 s": True,
        "cached call, 1024 MB < 1 s": False,
    }
    grown = cs.goals([_row("first build", 256, 600e6), _row("first build", 1024, 2.4e9)])
    assert [g["met"] for g in grown] == [True, False, False]


@pytest.mark.slow
def test_a_small_run_end_to_end(tmp_path):
    """Two sizes, the cached calls, scaling with 1 and 2 processes and the reference, each in its own
    process; the blocks each build reports are the same for the same corpus whatever the processes."""
    assert cs.main(["--sizes-mb", "0.5,1", "--scaling-mb", "0.5", "--reference-mb", "0.5", "--work", str(tmp_path),
                    "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "corpus-scale.json").read_text())
    rows = result["rows"]
    assert [(r["call"], r["corpus_mb"]) for r in rows] == [
        ("first build", 0.5), ("cached call", 0.5), ("first build", 1.0), ("cached call", 1.0),
        ("first build", 0.5), ("first build", 0.5), ("reference (before)", 0.5)]
    half = [r["blocks"] for r in rows if r["corpus_mb"] == 0.5]
    assert len(set(half)) == 1 and half[0] > 100  # new path (1, 2, auto processes) == the reference
    assert all(r["peak_rss_all"] > 0 and r["peak_rss_process"] >= r["rss_after_imports"] > 0 for r in rows)
    assert "| 1 MB | cached call |" in (tmp_path / "out" / "corpus-scale.md").read_text()
    assert not list(tmp_path.glob("corpus-scale-*"))  # the corpora are deleted
