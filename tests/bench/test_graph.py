from bench.graph import build_graph, count_by_kind
from bench.suite import load_suite


def test_paper_ner_graph_counts_follow_the_papers_design():
    suite = load_suite("paper-ner", check_paths=False)
    jobs = build_graph(suite)
    langs, seeds = 16, 5
    # MLM: a language adapter with and one without its invertible adapter per language (MAD-X, MAD-X -INV), the
    # same two without the last layer's adapter (MAD-X 2.0, MAD-X 2.0 -INV: other adapters, so other jobs),
    # plus full-model MLM per language, shared by MLM-SRC and MLM-TRG
    mlm = langs * 2 + langs * 2 + langs
    # task: madx, madx-inv, madx-lad-inv, full-ft, mlm-src, madx2, madx2-inv per source x seed; mlm-trg once per
    # (source, target)
    task = 7 * langs * seeds + langs * langs
    # eval: the 16x16 matrix per method and seed; mlm-trg evaluates each pair's model on its target only
    evaluation = 7 * langs * langs * seeds + langs * langs
    assert count_by_kind(jobs) == {"mlm": mlm, "task": task, "eval": evaluation}
    assert (mlm, task, evaluation) == (80, 816, 9216)
    assert len(jobs) == 10_112
    assert len({j.id for j in jobs}) == len(jobs) and len({j.name for j in jobs}) == len(jobs)


def test_smoke_and_offline_real_counts(monkeypatch):
    monkeypatch.delenv("MADX_DATA", raising=False)  # offline-real's text folder decides which adapter jobs exist
    jobs = build_graph(load_suite("smoke"))
    langs = 3
    # MLM per language: adapter+inv, adapter, the two without the last layer, full (NER and QA share them)
    mlm = langs * 5
    # NER: 7 methods per source (seed 1), mlm-trg per (source, target); QA: en only, 5 methods
    task = 7 * langs + langs * langs + 5
    # NER: 7 methods x 3x3 pairs, mlm-trg one target per pair; QA: 5 methods x 3 targets
    evaluation = 7 * langs * langs + langs * langs + 5 * langs
    assert count_by_kind(jobs) == {"prepare": 1, "mlm": mlm, "task": task, "eval": evaluation}
    assert (1 + mlm + task + evaluation) == len(jobs) == 138

    # offline-real without its data folder here: every language counts as having text (with the shared data,
    # cdo and xmf have none, and their adapter cells drop out: 28 MLM, 15 task, 111 eval = 154 jobs)
    jobs = build_graph(load_suite("offline-real", check_paths=False))
    targets, methods, seeds = 9, 5, 3  # English and the 8 unseen languages; every adapter method, no full-ft
    mlm = targets * 4  # 4 adapter modes (with/without NICE, with/without the last layer), once per language
    task = methods * seeds
    evaluation = methods * targets * seeds
    assert count_by_kind(jobs) == {"mlm": mlm, "task": task, "eval": evaluation}
    assert (mlm, task, evaluation) == (36, 15, 135)


def test_madx2_has_its_own_language_adapters_and_evaluates_with_them():
    jobs = build_graph(load_suite("smoke"))
    by_id = {j.id: j for j in jobs}
    modes = {j.params["mode"] for j in jobs if j.kind == "mlm" and j.params["language"] == "qu"}
    assert modes == {"adapter+inv", "adapter", "adapter+inv,leave_out=-1", "adapter,leave_out=-1", "full"}
    job = next(j for j in jobs if j.name == "eval/ner/en->qu/madx2/seed1")
    assert {by_id[d].name for d in job.deps} == {"prepare", "ner/en/madx2/seed1", "mlm/qu/adapter+inv,leave_out=-1"}
    task = by_id[next(d for d in job.deps if by_id[d].kind == "task")]
    assert {by_id[d].name for d in task.deps} == {"prepare", "mlm/en/adapter+inv,leave_out=-1"}
    inv = next(j for j in jobs if j.name == "eval/qa/en->sw/madx2-inv/seed1")
    assert "mlm/sw/adapter,leave_out=-1" in {by_id[d].name for d in inv.deps}
    # the suite's adapters section is what every method's jobs carry; the variant adds its leave_out when the
    # runner creates the adapters (bench.execute.adapter_config)
    madx_task = next(j for j in jobs if j.name == "ner/en/madx/seed1")
    assert task.params["adapters"] == madx_task.params["adapters"] and "leave_out" not in task.params["adapters"]


def test_job_ids_are_stable_and_dependencies_come_first():
    suite = load_suite("smoke")
    first, second = build_graph(suite), build_graph(suite)
    assert [j.id for j in first] == [j.id for j in second]
    seen = set()
    for job in first:
        assert all(d in seen for d in job.deps), job.name
        seen.add(job.id)


def test_zero_shot_eval_depends_on_the_target_language_adapter():
    jobs = build_graph(load_suite("smoke"))
    by_id = {j.id: j for j in jobs}
    job = next(j for j in jobs if j.name == "eval/ner/en->qu/madx/seed1")
    deps = {by_id[d].name for d in job.deps}
    assert deps == {"prepare", "ner/en/madx/seed1", "mlm/qu/adapter+inv"}
    trg = next(j for j in jobs if j.name == "ner/en->qu/mlm-trg/seed1")
    assert {by_id[d].name for d in trg.deps} == {"prepare", "mlm/qu/full"}


def test_paper_qa_counts():
    jobs = build_graph(load_suite("paper-qa", check_paths=False))
    assert count_by_kind(jobs) == {"mlm": 11 * 2, "task": 3 * 3, "eval": 3 * 3 * 11}


def test_languages_without_mlm_text_get_no_adapter_jobs(tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)  # the suite's relative data paths resolve against the working directory

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "en.txt").write_text("a b c\n")
    (tmp_path / "wikiann").mkdir()
    for name in ("train-en", "test-en", "test-cdo"):
        (tmp_path / "wikiann" / f"{name}.tsv").write_text("Lima\tB-LOC\n", encoding="utf-8")
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "t", "model": "xlm-roberta-base", "data": {"wikiann": "wikiann", "text": "text"}, "seeds": [1],
        "tasks": {"ner": {"sources": ["en"], "targets": ["en", "cdo"], "methods": ["madx", "madx-lad-inv"]}}}))
    names = {j.name for j in build_graph(load_suite(str(suite_file)))}
    assert "eval/ner/en->en/madx/seed1" in names and "eval/ner/en->cdo/madx/seed1" not in names
    assert "eval/ner/en->cdo/madx-lad-inv/seed1" in names  # needs no target language adapter
    assert "mlm/cdo/adapter+inv" not in names


def test_an_override_of_mlm_src_mlm_settings_gets_its_own_mlm_job(tmp_path):
    """Regression: the full-model MLM job used to be keyed by (language, mode) with mlm-trg's settings,
    so a suite override of mlm-src's MLM settings was silently ignored."""
    import yaml

    for name in ("train-en", "test-en", "test-qu"):
        (tmp_path / f"{name}.tsv").write_text("Lima\tB-LOC\n", encoding="utf-8")
    for lang in ("en", "qu"):
        (tmp_path / f"{lang}.txt").write_text("a b c\n", encoding="utf-8")

    def graph(overrides):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({
            "name": "t", "model": "xlm-roberta-base", "data": {"wikiann": str(tmp_path), "text": str(tmp_path)}, "seeds": [1],
            "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["mlm-src", "mlm-trg"]}},
            "overrides": overrides}))
        jobs = build_graph(load_suite(str(path)))
        return jobs, {j.id: j for j in jobs}

    jobs, by_id = graph({})
    shared = [j for j in jobs if j.kind == "mlm" and j.params["language"] == "en"]
    assert len(shared) == 1, "without overrides MLM-SRC and MLM-TRG share the full-model MLM job"

    jobs, by_id = graph({"mlm-src": {"mlm": {"steps": 7}}})
    src_task = next(j for j in jobs if j.name == "ner/en/mlm-src/seed1")
    (src_mlm,) = [by_id[d] for d in src_task.deps if by_id[d].kind == "mlm"]
    assert src_mlm.params["mlm"]["steps"] == 7
    trg_task = next(j for j in jobs if j.name == "ner/en->en/mlm-trg/seed1")
    (trg_mlm,) = [by_id[d] for d in trg_task.deps if by_id[d].kind == "mlm"]
    assert trg_mlm.params["mlm"]["steps"] == 250000
    assert {src_mlm.name, trg_mlm.name} == {"mlm/en/full", "mlm/en/full/mlm-trg"}
    assert len({j.name for j in jobs}) == len(jobs), "job names stay unique"


def test_job_ids_of_shipped_suites_did_not_change():
    """Existing run directories resume while what the jobs compute is unchanged: the registry/adapter-config
    refactor and the settings table (madx.recipes) kept every job id. The adapters' initialisation did change
    (AdapterConfig.init_weights: AdapterHub's N(0, 0.02) by default instead of a zero up-projection), so every job
    with adapters has a new id (the old one is the same job without that setting), and no full-model job has."""
    from bench.graph import Job

    jobs = build_graph(load_suite("smoke"))
    by_name = {j.name: j for j in jobs}
    assert len(jobs) == 138  # 100 before MAD-X 2.0 was added; those 100 kept their ids
    # jobs without adapters: the ids they had before the refactor
    assert {name: by_name[name].id for name in ("prepare", "mlm/qu/full", "ner/en/full-ft/seed1", "eval/ner/en->qu/mlm-src/seed1")} == {
        "prepare": "b90394c59623435c205b", "mlm/qu/full": "556ec0fb4610e0f3375b", "ner/en/full-ft/seed1": "9453072ab93081eb203b",
        "eval/ner/en->qu/mlm-src/seed1": "2dd8a25ea061c89997d8"}
    job = by_name["mlm/qu/adapter+inv"]
    assert job.id == "52c2e6cb767fe812234a" and job.params["adapters"]["init_weights"] == "adapterhub"
    before = {**job.params, "adapters": {k: v for k, v in job.params["adapters"].items() if k != "init_weights"}}
    assert Job.make(job.kind, job.name, before, job.deps).id == "a884532194734b8718e7"  # the id before the refactor
