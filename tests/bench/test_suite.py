import pytest
import yaml

from bench.suite import SuiteError, load_suite

BASE = {
    "name": "t", "model": "xlm-roberta-base", "data": {"wikiann": "."},
    "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx"]}}, "seeds": [1],
}


def write(tmp_path, **changes):
    suite = {**BASE, **changes}
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
