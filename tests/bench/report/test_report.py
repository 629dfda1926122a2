"""bench.report on a synthetic result store with known numbers (report_synthetic.py).

The store is written through the result schema (bench.results) and bench.store, as the runner
writes it. One report is built per module (plots included) and shared by the checks; expectations
are computed here from the numbers the store was written with (statistics.fmean / stdev), not by
the code under test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from . import report_synthetic as syn
from madx.commands.common import UsageError
from madx.data.languages import get_language
from bench.report import build_report, paper, render_html, render_markdown, terminal_summary, write_report
from bench.report.aggregate import average, eval_cells, leaf_value
from bench.report.cli import run as cli_run
from bench.report.load import UnreadableResultWarning, load_store
from bench.report.tables import SUMMARY_ALL, SUMMARY_SEEN, SUMMARY_UNSEEN, _model_name, mlm_methods
from bench.store import RunStore

CHROMIUM = Path("/usr/bin/chromium")
# The committed example (reports/example-synthetic/report.md) is this module's report: kept honest here.
EXAMPLE = Path(__file__).resolve().parents[3] / "reports" / "example-synthetic" / "report.md"


def expected(task, method, source, target, metric="f1"):
    values = list(syn.EXPECTED.get((task, method, source, target, metric), {}).values())
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def expected_per_seed(task, method, source, target, metric="f1"):
    return syn.EXPECTED.get((task, method, source, target, metric), {})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return syn.make_run(tmp_path_factory.mktemp("run") / "synthetic-run")


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableResultWarning)
        rep = build_report(run_dir, out_dir=out)
    write_report(rep)
    return rep


def overview_row(markdown: str, title_start: str, method_name: str, which: str = "ours") -> dict[str, str]:
    """Parse one row of a table's overview in the markdown: column -> cell text."""
    section = markdown.split(f"## {title_start}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    current = None
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        current = cells[0] or current
        if current == method_name and cells[1] == which:
            return dict(zip(header, cells))
    raise AssertionError(f"no {which} row for {method_name} in {title_start}")


# ---------------------------------------------------------------------------------------------
# paper numbers


def without_reasons(table):
    """A paper table with its ``missing`` reasons reduced to the rows they name (the report words them for readers)."""
    if isinstance(table, dict) and isinstance(table.get("missing"), dict):
        return {**table, "missing": sorted(table["missing"])}
    return table


def test_paper_tables_are_the_reference_transcription():
    reference = Path("/work/shared/paper/reference.json")
    data = paper.paper_tables()
    if reference.exists():  # only where the project's paper reference is at hand; never read at run time
        ref = json.loads(reference.read_text())
        assert {k: without_reasons(data[k]) for k in ref if k != "ner_languages"} == {
            k: without_reasons(v) for k, v in ref.items() if k != "ner_languages"}
        assert tuple(ref["ner_languages"]["order"]) == paper.ner_language_order()  # the one language table
        for row in ref["ner_languages"]["table1"]:
            language = get_language(row["lang"])
            assert (language.name, language.family, language.seen_by_xlmr) == (row["name"], row["family"], row["seen_by_xlmr"])
    assert "ner_languages" not in data, "the language table lives in madx.data.languages only"
    assert paper.value("table2", "madx", "qu") == 32.6
    assert paper.value("table2", "full-ft", "avg") == 32.6
    assert paper.value("table5", "mlm-src", "ja") == 8.45
    assert paper.value("table3", "madx", "zh", "f1") == 52.7
    assert paper.value("table3", "madx", "zh", "exact_match") == 42.8
    assert paper.added_parameters("madx") == {"params": "8.25M", "params_count": 8_250_000, "pct": 3.05}
    assert paper.added_parameters("full-ft") is None


def test_missing_paper_row_is_not_available_never_zero():
    assert paper.value("table2", "mlm-src", "en") is None
    assert "not available" in paper.missing_reason("table2", "mlm-src")
    assert paper.missing_reason("table2", "madx") is None
    assert paper.value("table3", "mlm-trg", "en") is None
    assert paper.subset_mean("table2", "mlm-src", ["en", "ja"]) is None


def test_seen_split_matches_the_language_table():
    from madx.data.languages import NER_LANGUAGES, split_seen_unseen

    assert paper.seen_split() == split_seen_unseen(NER_LANGUAGES, by="table2")
    assert paper.ner_language_order() == NER_LANGUAGES


# ---------------------------------------------------------------------------------------------
# store


def test_aggregation_helpers():
    v = leaf_value([(2, 3.0), (1, 1.0)])
    assert (v.mean, v.std, v.n_seeds, dict(v.per_seed)) == (2.0, statistics.stdev([1.0, 3.0]), 2, {1: 1.0, 2: 3.0})
    one = leaf_value([(1, 5.0)])
    assert one.mean == 5.0 and one.std is None and one.n_seeds == 1
    assert leaf_value([]).missing
    avg = average([v, leaf_value([(1, 3.0), (2, 7.0)])], labels=["a", "b"])
    assert avg.mean == 3.5 and avg.per_seed == {1: 2.0, 2: 5.0} and avg.std == statistics.stdev([2.0, 5.0])
    unbalanced = average([v, one], labels=["a", "b"])
    assert unbalanced.mean == 3.5 and unbalanced.std is None and unbalanced.seeds_label() == "1–2"
    assert average([one, leaf_value([])], labels=["a", "b"]).parts == ("a",)


def test_cell_warnings_for_duplicate_seeds_mixed_settings_and_missing_metrics():
    def job(i, seed, f1, **extra):
        params = {"task": "ner", "method": "madx", "source": "en", "target": "qu", "seed": seed, **extra}
        return syn.job_result(f"job{i}", "eval", params, {"f1": f1} if f1 is not None else {})

    cells = eval_cells([job(1, 1, 10.0, steps=100), job(2, 1, 20.0, steps=200), job(3, 2, None)], "f1")
    value = cells.get("ner", "madx", "en", "qu")
    assert value.mean == 15.0 and value.n_seeds == 2 and value.per_seed is None
    messages = " | ".join(w.message for w in cells.warnings)
    assert "seed(s) 1 appear more than once" in messages and "differ in steps" in messages
    assert "job3" in messages and "no numeric 'f1'" in messages


def test_runner_conventions_model_and_mlm_mode():
    assert _model_name({"name_or_path": "xlm-roberta-base"}) == "xlm-roberta-base"
    assert _model_name({"tiny": {"arch": "xlm-roberta", "hidden_size": 64, "num_hidden_layers": 2}}) == (
        "tiny random xlm-roberta (hidden_size 64, num_hidden_layers 2)")

    def mlm(params):
        return syn.job_result("x", "mlm", params, {})

    assert mlm_methods(mlm({"language": "qu", "mode": "adapter+inv"})) == ("madx",)
    assert mlm_methods(mlm({"language": "qu", "mode": "full"})) == ("mlm-src", "mlm-trg")
    assert mlm_methods(mlm({"language": "qu", "method": "madx-inv"})) == ("madx-inv",)


def test_store_skips_unreadable_files_with_a_warning(run_dir):
    with pytest.warns(UnreadableResultWarning) as caught:
        store = load_store(run_dir)
    messages = "\n".join(str(w.message) for w in caught)
    assert "corrupt0000000000/result.json" in messages and "schema99000000000/result.json" in messages
    assert [p.path for p in store.problems] == ["jobs/corrupt0000000000/result.json",
                                                "jobs/nowall0000000000/result.json",
                                                "jobs/schema99000000000/result.json"]
    assert store.problems[0].reason.startswith("unreadable: JSONDecodeError")
    assert store.problems[1].reason == "cost.wall_s: missing"  # the field, named
    assert store.problems[2].reason == "schema: 99 is newer than this madx-bench reads (1, 2): update madx-bench"
    assert len(store.results) == len(syn.all_results()) and store.upgraded == ()
    assert [(j.id, j.name, j.error) for j in store.status.failed] == [
        ("failed00000000000", "eval/ner/en->gn/madx/seed1", "RuntimeError('CUDA out of memory')")]
    assert store.status.claimed == ("claimed0000000000",)
    assert [r.job.kind for r in store.results].count("prepare") == 1  # other kinds are kept, not skipped
    assert store.run == syn.run_info() and store.run.model == {"name_or_path": "xlm-roberta-base"}
    assert {r.job.id: r for r in store.results} == {r.job.id: r for r in syn.all_results()}  # what was written is read


def test_mixed_code_versions_are_warned(tmp_path):
    run = syn.make_run(tmp_path / "run", broken=False)
    store = RunStore(run)
    results = {r.job.name: r for r in syn.all_results()}
    clean = build_report(run, out_dir=tmp_path / "clean", plots=False)
    assert clean.tables.provenance.mixed == () and "Results differ in" not in render_markdown(clean)
    # one job rerun from a later commit with a newer torch, another from the same commit with local edits
    later = results["eval/ner/en->qu/madx/seed1"]
    syn.commit(store, dataclasses.replace(later, provenance=dataclasses.replace(
        later.provenance, git_revision="fedcba9876543210fedcba9876543210fedcba98", versions={**later.provenance.versions, "torch": "2.14.0"})))
    edited = results["eval/ner/en->sw/madx/seed1"]
    syn.commit(store, dataclasses.replace(edited, provenance=dataclasses.replace(edited.provenance, git_dirty=True)))
    report = build_report(run, out_dir=tmp_path / "mixed", plots=False)
    prov = report.tables.provenance
    assert prov.mixed == ("git revision", "torch version")
    assert prov.code_versions == {syn.PROVENANCE.git_revision: len(results) - 2,
                                  f"{syn.PROVENANCE.git_revision} + uncommitted changes": 1,
                                  "fedcba9876543210fedcba9876543210fedcba98": 1}
    md = render_markdown(report)
    assert ("Results differ in git revision, torch version: they were not all produced by the same code / environment."
            in md.split("## Warnings", 1)[1].split("\n## ", 1)[0])
    assert "| git revision | fedcba9876543210fedcba9876543210fedcba98 | 1 |" in md
    assert "| torch | 2.14.0 | 1 |" in md
    # the numbers themselves do not change
    assert report.tables.comparisons == clean.tables.comparisons


def as_schema_1(result) -> dict:
    """What bench/worker.py wrote before bench.results (schema 1): no status, start time or provenance."""
    cost = {k: v for k, v in result.cost.to_dict().items() if v is not None and k != "non_pad_fraction"}
    return {"schema": 1, "job": result.job.to_dict(), "metrics": dict(result.metrics), "train": result.train,
            "cost": cost, "provenance": {"worker": result.worker.id, "finished_at": result.finished_at}}


def test_a_schema_1_run_directory_is_read_through_the_upgrade(report, tmp_path):
    old = tmp_path / "old-run"
    for result in syn.all_results():
        path = old / "jobs" / result.job.id / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(as_schema_1(result)))
    info = syn.run_info()
    (old / "run.json").write_text(json.dumps({  # the first run.json: flat, no schema key
        "suite": info.suite, "started_at": info.created, "notes": list(info.notes), "model": dict(info.model),
        "git_revision": info.provenance.git_revision, "versions": dict(info.provenance.versions),
        "hardware": dict(info.provenance.hardware), "python": info.provenance.python, "platform": info.provenance.platform}))
    (old / "jobs" / "badworker0000000" ).mkdir()
    (old / "jobs" / "badworker0000000" / "result.json").write_text(json.dumps(
        {**as_schema_1(syn.all_results()[0]), "provenance": {"worker": "w", "finished_at": "x"}}))
    with pytest.warns(UnreadableResultWarning, match="badworker0000000/result.json: worker: expected an object"):
        upgraded = build_report(old, out_dir=tmp_path / "old-report", plots=False)
    store = upgraded.store
    assert len(store.results) == len(syn.all_results()) and len(store.upgraded) == len(syn.all_results()) + 1
    assert "run.json" in store.upgraded and store.run.suite == "synthetic-smoke" and store.run.created == info.created
    assert store.run.provenance.git_revision == info.provenance.git_revision
    # every number is the same as when the results are written in the current schema
    assert upgraded.tables.comparisons == report.tables.comparisons
    assert upgraded.tables.params == report.tables.params
    assert upgraded.tables.cost_by_kind == report.tables.cost_by_kind
    # and the report says what schema 1 cannot tell
    prov = upgraded.tables.provenance
    assert prov.code_versions == {} and prov.unrecorded == len(syn.all_results()) and prov.mixed == ()
    md = render_markdown(upgraded)
    assert f"{len(syn.all_results())} result files in result schema 1" in md and "`bench.results.upgrade_v1`" in md
    assert "mixed code versions cannot be detected" in md
    assert "`run.json` (result schema 1, read through `bench.results.upgrade_run_v1`):" in md
    assert f"read {len(syn.all_results())} result files in result schema 1 through bench.results.upgrade_v1" in (
        terminal_summary(upgraded))
    # a job rerun by the current runner in that directory: the results now come from different code
    rerun = syn.all_results()[5]
    (old / "jobs" / rerun.job.id / "result.json").write_text(json.dumps(rerun.to_dict()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableResultWarning)
        resumed = build_report(old, out_dir=tmp_path / "resumed", plots=False)
    assert resumed.tables.provenance.result_schemas == {"1": len(syn.all_results()) - 1, "2": 1}
    assert resumed.tables.provenance.mixed == ("result schema",)
    assert "Results differ in result schema:" in render_markdown(resumed)
    assert "covers the 1 job(s) that record a git revision, not the other" in render_markdown(resumed)


# ---------------------------------------------------------------------------------------------
# tables


@pytest.mark.parametrize("method", syn.NER_METHODS)
def test_table5_cells_are_exact(report, method):
    table = report.tables.comparison("table5")
    row = table.row(method)
    for target in syn.NER_TARGETS:
        mean, std, n = expected("ner", method, "en", target)
        cell = row.cell(target)
        if n == 0:
            assert cell.ours.missing and cell.ours.mean is None and cell.diff is None
            continue
        assert cell.ours.mean == pytest.approx(mean, abs=1e-12)
        assert cell.ours.n_seeds == n
        assert (cell.ours.std is None) if std is None else cell.ours.std == pytest.approx(std, abs=1e-12)
        assert cell.paper == paper.value("table5", method, target)
        assert cell.diff == pytest.approx(mean - cell.paper, abs=1e-12)


def test_table5_special_cells(report):
    table = report.tables.comparison("table5")
    assert table.row("mlm-trg").cell("en").ours.n_seeds == 1 and table.row("mlm-trg").cell("en").ours.std is None
    assert table.row("madx-inv").cell("sw").ours.n_seeds == 2
    assert table.row("madx-lad-inv").cell("qu").ours.missing  # no result at all for this pair
    assert table.row("mlm-src").cell("en").paper == 84.2  # Table 5 has the MLM-SRC row that Table 2 lost
    assert table.seen == {"en", "ja", "sw"} and table.columns == ("en", "ja", "sw", "qu")


def test_table2_averages_over_sources(report):
    table = report.tables.comparison("table2")
    for method in syn.NER_METHODS:
        row = table.row(method)
        for target in syn.NER_TARGETS:
            sources = [s for s in syn.NER_SOURCES if expected("ner", method, s, target)[2]]
            cell = row.cell(target)
            assert cell.ours.parts == tuple(sources)
            assert cell.ours.n_parts == len(sources)
            assert cell.ours.mean == pytest.approx(statistics.fmean(expected("ner", method, s, target)[0] for s in sources))
            seed_sets = {frozenset(expected_per_seed("ner", method, s, target)) for s in sources}
            if len(seed_sets) == 1 and len(next(iter(seed_sets))) > 1:
                per_seed = [statistics.fmean(expected_per_seed("ner", method, s, target)[seed] for s in sources)
                            for seed in sorted(next(iter(seed_sets)))]
                assert cell.ours.std == pytest.approx(statistics.stdev(per_seed), abs=1e-12)
            else:
                assert cell.ours.std is None
    assert table.row("madx").cell("sw").ours.parts == ("en", "ja")  # qu->sw missing
    assert table.row("full-ft").cell("qu").ours.parts == ("en", "qu")  # ja->qu missing
    assert table.row("madx-inv").cell("sw").ours.seeds_label() == "2–3"


def test_table2_paper_columns_and_differences(report):
    table = report.tables.comparison("table2")
    madx = table.row("madx")
    assert madx.cell("qu").paper == 32.6
    assert madx.cell("qu").diff == pytest.approx(madx.cell("qu").ours.mean - 32.6)
    # averages compare with the paper's mean over the same targets
    assert madx.cell(SUMMARY_ALL).paper == pytest.approx(statistics.fmean([55.0, 46.7, 50.4, 32.6]))
    assert madx.cell(SUMMARY_SEEN).paper == pytest.approx(statistics.fmean([55.0, 46.7, 50.4]))
    assert madx.cell(SUMMARY_UNSEEN).paper == pytest.approx(32.6)
    assert madx.cell(SUMMARY_ALL).ours.mean == pytest.approx(statistics.fmean(madx.cell(t).ours.mean for t in syn.NER_TARGETS))
    src = table.row("mlm-src")
    assert src.paper_missing and "not available" in src.paper_missing
    assert all(src.cell(c).paper is None and src.cell(c).diff is None for c in table.all_columns)
    assert not src.cell("en").ours.missing


def test_table3_f1_and_em(report):
    for table_id, metric in (("table3-f1", "f1"), ("table3-em", "exact_match")):
        table = report.tables.comparison(table_id)
        assert table.columns == ("en", "ar", "de") and not table.seen
        for method in syn.QA_METHODS:
            for target in syn.QA_TARGETS:
                mean, std, n = expected("qa", method, "en", target, metric)
                cell = table.row(method).cell(target)
                if n == 0:
                    assert cell.ours.missing and cell.diff is None
                    continue
                assert cell.ours.mean == pytest.approx(mean, abs=1e-12) and cell.ours.n_seeds == n
                assert cell.ours.std == pytest.approx(std, abs=1e-12)
                assert cell.paper == paper.value("table3", method, target, metric)
    assert report.tables.comparison("table3-f1").row("full-ft").cell("ar").ours.missing
    assert report.tables.comparison("table3-em").row("madx").cell("de").ours.n_seeds == 2


def test_table4_parameters(report):
    params = report.tables.params
    assert params.computed and params.arch == "xlm-roberta-base"
    madx = next(r for r in params.rows if r.method == "madx")
    assert madx.computed_added == 8_257_536 and madx.paper_params == "8.25M" and madx.added_diff == 7_536
    assert [r.method for r in params.rows] == ["madx-lad-inv", "madx-inv", "madx", "madx2-inv", "madx2"]
    madx2 = next(r for r in params.rows if r.method == "madx2")  # not in the paper: counted, no paper number
    assert madx2.computed_added == 7_593_984 and madx2.paper_params is None and madx2.added_diff is None
    recorded = {(r.method, r.task): r for r in params.recorded}
    assert set(recorded) == {(m, "ner") for m in syn.NER_METHODS} | {(m, "qa") for m in syn.QA_METHODS}
    assert recorded[("madx", "ner")].added == syn.TRAINABLE[("mlm", "madx")] + syn.TRAINABLE[("task", "madx")]
    assert recorded[("madx-lad-inv", "ner")].added == syn.TRAINABLE[("task", "madx-lad-inv")]
    assert recorded[("full-ft", "qa")].added is None
    assert recorded[("madx", "qa")].total_params.high == syn.TOTAL


def test_table4_without_a_preset_uses_recorded_counts(tmp_path):
    run = syn.make_run(tmp_path / "run", base_model="checkpoints/e5-small", broken=False)
    from bench.report.tables import table4

    params = table4(load_store(run))
    assert not params.computed and params.arch == "checkpoints/e5-small" and params.rows == ()
    madx = next(r for r in params.recorded if r.method == "madx" and r.task == "ner")
    assert madx.task_trainable.high == syn.TRAINABLE[("task", "madx")] and madx.task_trainable.n_jobs == 9


def test_cost_by_kind_and_table(report):
    results = syn.all_results()
    rows = {r.label: r for r in report.tables.cost_by_kind}
    for kind in ("prepare", "mlm", "task", "eval"):
        jobs = [r for r in results if r.job.kind == kind]
        assert rows[kind].n_jobs == len(jobs)
        assert rows[kind].tokens == sum(r.cost.tokens for r in jobs)
        assert rows[kind].wall_s == pytest.approx(math.fsum(r.cost.wall_s for r in jobs))
        assert rows[kind].tokens_per_s == pytest.approx(rows[kind].tokens / rows[kind].wall_s)
    assert rows["all jobs"].n_jobs == len(results)
    by_table = {r.label.split(" (")[0]: r for r in report.tables.cost_by_table}
    qa_evals = [r for r in results if r.job.kind == "eval" and r.job.task == "qa"]
    qa_tasks = {d for r in qa_evals for d in r.job.deps}
    assert by_table["Table 3"].n_jobs >= len(qa_evals) + len(qa_tasks) - 1  # evals + their task and MLM jobs
    assert by_table["Table 3"].n_deps_missing == 0


# ---------------------------------------------------------------------------------------------
# plots


def test_heatmaps_plot_the_cell_means(report):
    maps = {(h.kind, h.method, h.baseline): h for h in report.heatmaps if h.task == "ner"}
    assert {k[1] for k in maps if k[0] == "f1"} == set(syn.NER_METHODS)
    assert {k[2] for k in maps if k[0] == "diff"} == {"full-ft", "mlm-trg", "madx-inv"}
    h = maps[("f1", "madx", None)]
    assert h.sources == syn.NER_SOURCES and h.targets == syn.NER_TARGETS
    for i, s in enumerate(h.sources):
        for j, t in enumerate(h.targets):
            mean = expected("ner", "madx", s, t)[0]
            if mean is None:
                assert math.isnan(h.array[i, j])  # missing stays missing, not 0
            else:
                assert h.array[i, j] == pytest.approx(mean)
    d = maps[("diff", "madx", "full-ft")]
    both = np.isfinite(d.array)
    assert not both[1, 3] and not both[2, 2]  # full-ft ja->qu and madx qu->sw have no result
    expect = h.array - maps[("f1", "full-ft", None)].array
    assert np.allclose(d.array[both], expect[both])
    assert np.unique(np.round(d.array[both], 6)).size > 1  # differences vary over the pairs


def test_heatmap_pngs_are_written_and_not_blank(report):
    import matplotlib.image as mpimg

    for h in report.heatmaps:
        assert h.path is not None and h.path.is_file() and h.path.stat().st_size > 5_000
        pixels = mpimg.imread(h.path)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert float(pixels[..., :3].std()) > 0.05


# ---------------------------------------------------------------------------------------------
# rendering


def test_markdown_shows_missing_as_dash_and_passes_notes(report):
    md = (report.out_dir / "report.md").read_text()
    lad = overview_row(md, "Table 5", "MAD-X –LAD –INV")
    assert lad["qu†"] == "—" and lad["avg unseen"] == "—"
    assert lad["avg"].endswith("‡") and "‡ average over fewer targets" in md  # 3 of 4 targets: flagged
    assert not overview_row(md, "Table 5", "MAD-X")["avg"].endswith("‡")
    madx = overview_row(md, "Table 5", "MAD-X")
    mean, std, n = expected("ner", "madx", "en", "qu")
    assert madx["qu†"] == f"{mean:.1f} ± {std:.1f}"
    mlm_trg = expected("ner", "mlm-trg", "en", "en")[0]
    assert overview_row(md, "Table 5", "XLM-R MLM-TRG")["en"] == f"{mlm_trg:.1f}"  # a single seed: no "± n/a"
    assert overview_row(md, "Table 5", "MAD-X –INV")["avg"].endswith("± n/a")  # unequal seeds: the std is unknown
    assert overview_row(md, "Table 3 — XQuAD F1", "XLM-R")["ar"] == "—"
    src_paper = overview_row(md, "Table 2", "XLM-R MLM-SRC", "paper")
    assert set(v for k, v in src_paper.items() if k not in ("method", "", "seeds", "sources")) == {"n/a"}
    assert "XLM-R MLM-SRC: not available (not in this project's copy of the paper's Table 2)" in md
    for internal in ("text extraction", "as transcribed", "seen_by_xlmr", "ner_languages note"):
        assert internal not in md, internal
    numbers = [line.split(" — ")[0] for line in md.splitlines() if line.startswith("## Table ")]
    assert numbers == sorted(numbers) and numbers[:2] == ["## Table 2", "## Table 3"], numbers
    assert syn.RUN_NOTES[0] in md and syn.SUITE_NOTE in md
    assert "XLM-R base" in md and "Wikipedia" in md
    assert "jobs/corrupt0000000000/result.json" in md and "schema: 99 is newer" in md and "cost.wall_s: missing" in md
    assert "![" in md and "plots/ner-diff-madx-vs-full-ft.png" in md


def test_markdown_is_byte_identical_across_runs(report, run_dir, tmp_path, monkeypatch):
    first = (report.out_dir / "report.md").read_bytes()
    # The second build skips drawing (PNG bytes are not part of the promise; the markdown, which links
    # the same files, is). This keeps the test fast.
    monkeypatch.setattr("bench.report.plots.draw_heatmap", lambda *args, **kwargs: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableResultWarning)
        again = build_report(run_dir, out_dir=tmp_path / "again", plots=True)
    paths = write_report(again, formats=("md", "json"))
    assert paths["md"].read_bytes() == first
    assert paths["json"].read_bytes() == (report.out_dir / "report.json").read_bytes()
    assert render_markdown(again).encode() == first
    if EXAMPLE.exists():
        assert first.decode() == EXAMPLE.read_text(), (
            "reports/example-synthetic/report.md is stale; regenerate it with the commands in its README.md")


def test_json_has_the_numbers(report):
    data = json.loads((report.out_dir / "report.json").read_text())
    tables = {t["id"]: t for t in data["tables"]["comparisons"]}
    table5 = {r["method"]: r for r in tables["table5"]["rows"]}
    cell = table5["madx"]["cells"]["qu"]
    mean, std, n = expected("ner", "madx", "en", "qu")
    assert cell["ours"]["mean"] == pytest.approx(mean) and cell["ours"]["std"] == pytest.approx(std)
    assert cell["ours"]["n_seeds_min"] == n
    assert cell["paper"] == 66.1 and cell["diff"] == pytest.approx(mean - 66.1)
    lad = table5["madx-lad-inv"]["cells"]["qu"]
    assert lad["ours"]["mean"] is None and lad["diff"] is None
    leaves = {}
    for name, metric in (("ner_f1", "f1"), ("qa_f1", "f1"), ("qa_em", "exact_match")):
        for key, value in data["tables"][name]["cells"].items():
            leaves[(*key.split("/"), metric)] = value
    assert set(leaves) == set(syn.EXPECTED)
    for key, per_seed in syn.EXPECTED.items():
        assert leaves[key]["per_seed"] == {str(s): pytest.approx(v) for s, v in per_seed.items()}
    assert [p["path"] for p in data["problems"]] == ["jobs/corrupt0000000000/result.json",
                                                     "jobs/nowall0000000000/result.json",
                                                     "jobs/schema99000000000/result.json"]
    heat = next(h for h in data["heatmaps"] if h["kind"] == "f1" and h["method"] == "madx")
    assert heat["array"][2][2] is None  # qu->sw: null, not 0
    assert heat["path"] == "plots/ner-f1-madx.png"  # relative to the report
    params = data["tables"]["params"]
    madx_row = next(r for r in params["rows"] if r["method"] == "madx")
    assert madx_row["computed_added"] == 8_257_536 and madx_row["added_diff"] == 7_536
    assert {r["method"] for r in params["recorded"]} == set(syn.NER_METHODS)
    assert data["tables"]["provenance"]["run"] == syn.run_info().to_dict()
    assert data["tables"]["provenance"]["mixed"] == []


def test_html_is_self_contained(report):
    page = (report.out_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(report.heatmaps)
    assert 'src="plots/' not in page  # no links to files beside the page
    assert "<table" in page and "XLM-R MLM-SRC" in page and "&lt;" not in page.split("<style>")[0]


def test_cli(run_dir, tmp_path, capsys):
    args = argparse.Namespace(run_dir=str(run_dir), out=str(tmp_path / "md-only"), format="md", strict=False, quiet=False,
                              no_plots=True)
    assert cli_run(args) == 0
    written = sorted(p.name for p in (tmp_path / "md-only").iterdir())
    assert written == ["report.md"]
    out = capsys.readouterr().out
    assert "Table 2" in out and "skipped jobs/corrupt0000000000/result.json" in out and "report.md" in out
    assert cli_run(argparse.Namespace(run_dir=str(run_dir), out=str(tmp_path / "s"), format="json", strict=True,
                                      quiet=True, no_plots=True)) == 1
    with pytest.raises(UsageError, match="does not exist"):  # madx.cli prints it as one line, exit 2
        cli_run(argparse.Namespace(run_dir=str(tmp_path / "nope"), out=None, format="all", strict=False, quiet=True))


def test_module_entry_point_on_an_empty_store(tmp_path):
    from bench.report.__main__ import main

    empty = tmp_path / "empty"
    (empty / "jobs").mkdir(parents=True)
    assert main([str(empty), "--quiet"]) == 0  # default out: DIR/report, all formats
    assert sorted(p.name for p in (empty / "report").iterdir()) == ["report.html", "report.json", "report.md"]
    assert "No evaluation results yet" in (empty / "report" / "report.md").read_text()


# .ci/run installs Chromium, so in CI (CI=true) a missing browser fails this test instead of skipping it
@pytest.mark.skipif(not CHROMIUM.exists() and os.environ.get("CI") != "true", reason="chromium not installed")
def test_html_renders_in_headless_chromium(report, tmp_path):
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--dump-dom", (report.out_dir / "report.html").as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<h1>madx-bench report: synthetic-smoke</h1>" in dom
    assert dom.count("<table") >= 8 and dom.count("data:image/png;base64,") == len(report.heatmaps)
    assert "Table 2 — NER F1" in dom and "not in this project's copy of the paper's Table 2" in dom


# ---------------------------------------------------------------------------------------------
# MAD-X against each baseline: differences with their paired bootstrap (Issue 15)


def test_every_comparison_of_madx_with_a_baseline_has_its_difference_and_interval(report):
    from bench.report.comparisons import NO_PREDICTIONS

    ids = [t.id for t in report.tables.significance]
    assert ids == ["table2", "table5", "table3-f1", "table3-em"]
    for sig in report.tables.significance:
        table = report.tables.comparison(sig.id)
        assert [r.baseline for r in sig.rows] == [r.method for r in table.rows if r.method != "madx"]
        for row in sig.rows:
            for column in table.all_columns:
                c = row.cell(column)
                if c is None:  # no evaluation that both methods have
                    assert table.row("madx").cell(column).ours.missing or table.row(row.baseline).cell(column).ours.missing
                    continue
                if row.baseline == "mlm-src":  # its results carry no predictions (written "before")
                    assert c.interval is None and c.unavailable == NO_PREDICTIONS and c.n_without == c.n_results // 2
                    continue
                if c.interval is None:
                    continue
                # the predictions reproduce the written metrics, so the bootstrap's point is the difference
                assert c.interval.observed == pytest.approx(c.diff.mean, abs=1e-9)
                assert c.interval.low <= c.interval.observed <= c.interval.high
                assert c.significant == (c.interval.low > 0 or c.interval.high < 0)
    table2 = report.tables.significance_table("table2")
    inv = next(r for r in table2.rows if r.baseline == "madx-inv")
    assert inv.cell("ja").interval is None and "unusable" in inv.cell("ja").unavailable  # the broken file
    assert inv.cell("en").interval is not None and inv.cell(SUMMARY_ALL).interval is None
    assert list(report.tables.prediction_problems) == [f"jobs/{syn.broken_predictions_job()}/artifacts/predictions.npz"]
    from bench.report.predictions import predictions_path

    job = syn.broken_predictions_job()
    assert predictions_path(report.run_dir, job) == RunStore(report.run_dir, create=False).artifacts(job) / "predictions.npz"


def test_a_comparison_is_like_for_like_and_averages_seeds_as_the_tables(report):
    table2 = report.tables.significance_table("table2")
    full_ft = next(r for r in table2.rows if r.baseline == "full-ft")
    c = full_ft.cell("sw")
    assert c.pairs == ("en→sw", "ja→sw")  # madx qu->sw is missing, so full-ft's qu->sw is left out too
    madx = [statistics.fmean(expected_per_seed("ner", "madx", s, "sw")[seed] for s in ("en", "ja")) for seed in syn.SEEDS]
    base = [statistics.fmean(expected_per_seed("ner", "full-ft", s, "sw")[seed] for s in ("en", "ja")) for seed in syn.SEEDS]
    differences = [m - b for m, b in zip(madx, base)]
    assert c.diff.mean == pytest.approx(statistics.fmean(differences))
    assert c.diff.std == pytest.approx(statistics.stdev(differences))
    trg = next(r for r in table2.rows if r.baseline == "mlm-trg").cell("en")
    assert trg.diff.std is None and trg.diff.seeds_label() == "1–3"  # madx 3 seeds, MLM-TRG 1: no per-seed pairs


def test_the_report_bootstrap_is_the_pure_function_on_the_stored_predictions(report):
    """The report's cached resamples give what significance.paired_bootstrap gives on the same arrays."""
    from bench.report.significance import TestSet, micro_f1, paired_bootstrap

    results = {r.job.name: r.job.id for r in report.store.results}

    def runs(method, source, target):
        return tuple(np.stack([syn.PREDICTIONS[results[f"eval/ner/{source}->{target}/{method}/seed{seed}"]]["columns"][k]
                               for k in ("tp", "fp", "fn")], axis=1) for seed in syn.SEEDS)

    syn.all_results()  # PREDICTIONS as written
    test_sets = [TestSet(f"ner/{syn._test_set('ner', t)}", a=tuple(runs("madx", s, t) for s in ("en", "ja", "qu")),
                         b=tuple(runs("full-ft", s, t) for s in ("en", "ja", "qu"))) for t in ("en", "ja")]
    direct = paired_bootstrap(test_sets, micro_f1)
    reported = next(r for r in report.tables.significance_table("table2").rows if r.baseline == "full-ft")
    # avg seen covers en, ja and sw; the two-target average is checked through the same machinery
    from bench.report.comparisons import Comparer

    comparer = Comparer(report.store)
    both = comparer.compare("ner", "f1", report.tables.ner_f1, "madx", "full-ft", "en+ja",
                            [(t, ("en", "ja", "qu")) for t in ("en", "ja")])
    assert both.interval.observed == pytest.approx(direct.observed)
    assert (both.interval.low, both.interval.high) == pytest.approx((direct.low, direct.high))
    assert reported.cell("en").interval == comparer.compare("ner", "f1", report.tables.ner_f1, "madx", "full-ft", "en",
                                                            [("en", ("en", "ja", "qu"))]).interval


def test_heatmap_cells_are_marked_where_the_interval_includes_zero(report):
    maps = {(h.task, h.metric, h.kind, h.baseline): h for h in report.heatmaps}
    inv = maps[("ner", "f1", "diff", "madx-inv")]
    for i, s in enumerate(inv.sources):
        for j, t in enumerate(inv.targets):
            c = report.tables.pair_comparisons.get(("ner", "f1", "madx-inv", s, t))
            if c is None:
                assert math.isnan(inv.array[i, j]) and math.isnan(inv.significant[i, j])
            elif c.interval is None:
                assert (s, t) == ("qu", "ja") and math.isnan(inv.significant[i, j])  # the broken predictions file
            else:
                assert inv.significant[i, j] == float(c.significant)
                assert inv.array[i, j] == pytest.approx(c.diff.mean)
    assert 0 < np.nansum(inv.significant == 0) and 0 < np.nansum(inv.significant == 1)  # both kinds of cell occur
    assert all(h.significant is None for h in report.heatmaps if h.kind == "f1")


def test_qa_gets_heatmaps_like_ner(report):
    maps = {(h.task, h.metric, h.kind): h for h in report.heatmaps if h.task == "qa"}
    assert set(maps) == {("qa", m, k) for m in ("f1", "exact_match") for k in ("f1", "diff")}
    scores = maps[("qa", "exact_match", "f1")]
    assert scores.sources == ("full-ft", "madx-inv", "madx") and scores.targets == ("en", "ar", "de")
    for i, method in enumerate(scores.sources):
        for j, target in enumerate(scores.targets):
            mean = expected("qa", method, "en", target, "exact_match")[0]
            assert math.isnan(scores.array[i, j]) if mean is None else scores.array[i, j] == pytest.approx(mean)
    diff = maps[("qa", "f1", "diff")]
    assert diff.sources == ("full-ft", "madx-inv") and np.isnan(diff.array[0, 1])  # full-ft has no en->ar
    assert diff.array[1, 0] == pytest.approx(expected("qa", "madx", "en", "en")[0] - expected("qa", "madx-inv", "en", "en")[0])
    assert all(h.path is not None and h.path.is_file() for h in maps.values())
    md = (report.out_dir / "report.md").read_text()
    assert "plots/qa-diff-em.png" in md and "plots/qa-f1.png" in md


def test_markdown_shows_the_significance_tables(report):
    md = (report.out_dir / "report.md").read_text()
    section = md.split("## Table 5", 1)[1].split("\n## ", 1)[0]
    assert "MAD-X against each baseline, with a paired bootstrap over the test sentences:" in section
    assert "| MAD-X − |  | en | ja | sw | qu† | avg seen | avg unseen | avg |" in section
    c = next(r for r in report.tables.significance_table("table5").rows if r.baseline == "full-ft").cell("qu")
    row = overview_row(md, "Table 5", "XLM-R", "95 % CI")
    assert row["qu†"] == f"[{c.interval.low:+.1f}, {c.interval.high:+.1f}]" + ("" if c.significant else " n.s.")
    assert overview_row(md, "Table 5", "XLM-R MLM-SRC", "95 % CI")["en"] == "n/a"
    assert "n/a = no interval — XLM-R MLM-SRC (en, ja, sw, qu†, avg seen, avg unseen, avg): no per-example predictions" in section
    assert " n.s." in md and "paired-bootstrap interval" in md.split("## Warnings")[0]
    assert "`jobs/" in md.split("## Warnings", 1)[1].split("\n## ", 1)[0] and "cannot be used" in md


def test_old_results_without_predictions_still_render_and_say_so(tmp_path):
    run = syn.make_run(tmp_path / "run", broken=False)
    for path in run.glob("jobs/*/artifacts/predictions.npz"):
        path.unlink()
    report = build_report(run, out_dir=tmp_path / "out", plots=True)
    assert all(c.interval is None for t in report.tables.significance for c in t.comparisons)
    md = render_markdown(report)
    assert "Significance is not available: no evaluation result has per-example predictions" in md
    assert "Significance is not marked: no result behind the differences has per-example predictions." in md
    assert all(h.n_tested == 0 for h in report.heatmaps if h.kind == "diff")
    assert "no interval: no per-example predictions" in terminal_summary(report)
    assert report.tables.comparisons == build_report(syn.make_run(tmp_path / "with", broken=False),
                                                     out_dir=tmp_path / "o2", plots=False).tables.comparisons


# ---------------------------------------------------------------------------------------------
# Honest reports (Issue 14)


def test_another_base_model_shows_the_paper_as_reference_only(tmp_path):
    run = syn.make_run(tmp_path / "run", base_model="intfloat/multilingual-e5-small", broken=False)
    report = build_report(run, out_dir=tmp_path / "out", plots=False)
    assert not report.tables.paper_comparable and report.tables.base_model == "intfloat/multilingual-e5-small"
    for table in report.tables.comparisons:
        assert table.paper_reference_only
        assert all(row.cell(c).diff is None for row in table.rows for c in table.all_columns)
    assert report.tables.comparison("table5").row("madx").cell("qu").paper == 66.1  # still there, as a reference
    md = render_markdown(report)
    assert "The paper's numbers are shown for reference only: this run's base model is `intfloat/multilingual-e5-small`" in md
    assert overview_row(md, "Table 5", "MAD-X", "paper (reference)")["qu†"] == "66.1"
    with pytest.raises(AssertionError):
        overview_row(md, "Table 5", "MAD-X", "Δ")
    page = render_html(report)
    assert 'class="diff-row' not in page and 'class="paper-row last"' in page  # no Δ rows to colour
    assert 'class="diff pos"' in page  # MAD-X against a baseline of the same run: still compared, still coloured
    summary = terminal_summary(report)
    assert "reference only" in summary and "Δ" not in summary.replace("MAD-X −", "")
    assert "| Δ %" not in md  # Table 4 compares no percentages with the paper either
    # the paper's own base model, under another name, is still the paper's
    assert paper.is_paper_base_model("FacebookAI/xlm-roberta-base") and not paper.is_paper_base_model(None)


def test_table4_shows_the_base_models_own_size(report, tmp_path):
    assert report.tables.params.base_params == 278_043_648 and "counted from the architecture" in (
        report.tables.params.base_params_source)
    run = syn.make_run(tmp_path / "run", base_model="checkpoints/e5-small", broken=False)
    from bench.report.tables import table4

    params = table4(load_store(run))
    assert params.base_params == syn.TOTAL - syn.TRAINABLE[("task", "madx-lad-inv")]  # what stays frozen
    assert "MAD-X –LAD –INV task jobs" in params.base_params_source
    md = render_markdown(build_report(run, out_dir=tmp_path / "out", plots=False))
    assert f"its parameters: {params.base_params:,}, recorded: total − trainable parameters" in md
    madx = next(r for r in params.recorded if r.method == "madx" and r.task == "ner")
    assert f"| {madx.added / params.base_params * 100:.2f} |" in md.split("Recorded by the runs:", 1)[1]


def test_cost_notes_name_the_missing_fields(report):
    md = (report.out_dir / "report.md").read_text()
    n_eval = sum(r.job.kind == "eval" for r in syn.all_results())
    assert (f"Not recorded by every job: `cost.peak_memory_bytes` by {n_eval} jobs (eval {n_eval})." in
            md.split("## Cost", 1)[1])
    assert report.tables.cost_by_kind[-1].missing_fields == {"peak_memory_bytes": n_eval}


def test_seen_and_unseen_marks_are_the_same_everywhere(report):
    md = (report.out_dir / "report.md").read_text()
    for title in ("Table 2", "Table 5"):
        section = md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        headers = [line for line in section.splitlines() if line.startswith("| method |  |") or line.startswith("| MAD-X − |")]
        assert len(headers) == 2 and all("| qu† |" in h and "| sw |" in h for h in headers)
        assert "| MAD-X | qu† | unseen |" in section  # the every-cell table
        assert "→qu†" in section and "→qu " not in section and "→qu," not in section  # the pairs compared too
    assert [paper.language_label(c) for c in ("en", "jv", "qu", "de", "xx")] == ["en", "jv", "qu†", "de", "xx"]
    from bench.report.plots import _seen_boundary

    assert _seen_boundary(("en", "ar", "de")) is None  # XQuAD's languages are all seen
    assert _seen_boundary(("en", "sw", "qu")) == 1.5
