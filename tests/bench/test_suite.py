import pytest
import yaml

from bench.suite import SuiteError, load_suite

BASE = {
    "name": "t", "model": "xlm-roberta-base", "data": {"wikiann": "."},
    "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx"]}}, "seeds": [1],
}


def wikiann_files(root, files=("train-en", "dev-en", "test-en", "test-qu")):
    for name in files:
        (root / f"{name}.tsv").write_text("Lima\tB-LOC\n", encoding="utf-8")


def write(tmp_path, **changes):
    suite = {**BASE, **changes}
    wikiann_files(tmp_path)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_shipped_suites_are_valid():
    for name in ("smoke",):
        load_suite(name)
    for name in ("paper-ner", "paper-qa"):
        load_suite(name, check_paths=False)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"tasks": {"ner": {"sources": ["en"], "targets": ["qq"], "methods": ["madx"]}}}, "tasks.ner.targets: .*qq"),
        ({"tasks": {"ner": {"sources": ["en"], "targets": ["en"], "methods": ["madx-inv-lad"]}}}, "unknown method 'madx-inv-lad'.*Did you mean"),
        ({"tasks": {"pos": {}}}, "unknown task 'pos'"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"hyperparameters": {"ner": {"epochs": "ten"}}}, "hyperparameters.ner.epochs must be a number"),
        ({"hyperparameters": {"ner": {"epoch": 3}}}, "unknown hyperparameter hyperparameters.ner.epoch"),
        ({"data": {"wikiann": "/no/such/dir"}}, "data.wikiann = /no/such/dir does not exist"),
        ({"data": {"wikiann": "${MADX_NOT_SET_ANYWHERE}"}}, "MADX_NOT_SET_ANYWHERE.*not set"),
        ({"hyperparameters": {"runtime": {"compile": "maybe"}}}, "runtime.compile must be one of auto, yes, no, true, false"),
        ({"hyperparameters": {"runtime": {"mixed_precision": "bf32"}}}, "runtime.mixed_precision must be one of no, bf16"),
    ],
)
def test_bad_suites_name_the_field(tmp_path, changes, message):
    path = write(tmp_path, **changes)
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("value,setting", [("auto", "auto"), ("no", "no"), (False, "no"), (True, "yes")])
def test_compile_opt_out(tmp_path, value, setting):
    """YAML reads a bare `compile: no` as false: both spellings turn compilation off."""
    from bench.suite import compile_setting

    suite = load_suite(str(write(tmp_path, hyperparameters={"runtime": {"compile": value}})))
    assert compile_setting(suite.hyperparameters["runtime"]["compile"]) == setting
    assert yaml.safe_load("compile: no")["compile"] is False


SYNTHETIC = {"kind": "synthetic", "languages": ["en", "qu"], "ner_train": 4, "ner_dev": 2, "ner_test": 2,
             "text_lines": 5, "qa_train": 2, "qa_eval": 2}


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"hyperparameter": {}}, "unknown top-level field 'hyperparameter'.*Did you mean 'hyperparameters'"),
        ({"seed": [1]}, "unknown top-level field 'seed'.*Did you mean 'seeds'"),
        ({"hyperparameters": {"mlm": {"steps": 0}}}, "hyperparameters.mlm.steps must be positive, got 0"),
        ({"hyperparameters": {"ner": {"lr_adapters": -1e-4}}}, "hyperparameters.ner.lr_adapters must be positive"),
        ({"hyperparameters": {"ner": {"max_train_sentences": -5}}}, "max_train_sentences must be positive"),
        ({"hyperparameters": {"runtime": {"zero_stage": 3}}}, "runtime.zero_stage must be one of 1, 2"),
        ({"hyperparameters": {"runtime": {"cpu_threads_per_worker": 0}}}, "cpu_threads_per_worker must be positive"),
        ({"overrides": {"madx-invv": {}}}, "unknown method 'madx-invv'.*Did you mean 'madx-inv'"),
        ({"mlm_trg_seeds": "1"}, "mlm_trg_seeds must be a non-empty list of integers"),
        ({"data": {"wikiann": ".", "wikian": "."}}, "unknown field data.wikian.*Did you mean 'wikiann'"),
        ({"data": {"wikiann": ".", "kind": "fles"}}, "data.kind must be 'files'"),
        ({"data": {**SYNTHETIC, "languages": ["en", "../../etc"]}}, "data.languages"),
        ({"data": {**SYNTHETIC, "ner_train": 0}}, "data.ner_train must be a positive whole number"),
        ({"data": {**SYNTHETIC, "ner_tran": 3}}, "unknown field data.ner_tran.*Did you mean 'ner_train'"),
    ],
)
def test_more_bad_suites_name_the_field(tmp_path, changes, message):
    path = write(tmp_path, **changes)
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(str(path))
    assert str(path) in str(info.value)


def test_validate_checks_every_task_file_per_language(tmp_path):
    path = write(tmp_path)
    (tmp_path / "test-qu.tsv").unlink()
    with pytest.raises(SuiteError, match="task ner, test for qu: no WikiANN test file for language 'qu'"):
        load_suite(str(path))
    (tmp_path / "dev-en.tsv").unlink()  # a missing dev split is allowed: train is split instead
    wikiann_files(tmp_path, ("test-qu",))
    load_suite(str(path))
    (tmp_path / "train-en.tsv").unlink()
    with pytest.raises(SuiteError, match="task ner, train for en"):
        load_suite(str(path))
    load_suite(str(path), check_paths=False)  # `bench plan` sizes a suite without its data
