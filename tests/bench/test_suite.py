import copy
import json
import re

import pytest
import yaml

from bench.suite import SuiteError, load_suite

PAPER_NER_LANGUAGES = ["en", "ja", "zh", "ar", "jv", "sw", "is", "my", "qu", "cdo", "ilo", "xmf", "mi", "mhr", "tk", "gn"]


def wikiann_files(root, files=("train-en", "dev-en", "test-en", "test-qu")):
    root.mkdir(parents=True, exist_ok=True)
    for name in files:
        (root / f"{name}.tsv").write_text("Lima\tB-LOC\n", encoding="utf-8")


def text_files(root, langs=("en", "qu")):
    root.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        (root / f"{lang}.txt").write_text("some text\n", encoding="utf-8")


def files_base(tmp_path) -> dict:
    """A suite on data files that validates: MAD-X on NER from en to en and qu."""
    wikiann_files(tmp_path / "wikiann")
    text_files(tmp_path / "text")
    return {"name": "t", "model": "xlm-roberta-base", "data": {"wikiann": str(tmp_path / "wikiann"), "text": str(tmp_path / "text")},
            "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx"]}}, "seeds": [1]}


TINY = {"arch": "xlm-roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 80, "type_vocab_size": 1}
SYNTHETIC = {"kind": "synthetic", "languages": ["en", "qu"], "ner_train": 4, "ner_dev": 2, "ner_test": 2,
             "text_lines": 5, "qa_train": 2, "qa_eval": 2}


def synthetic_base(tmp_path=None) -> dict:
    """A synthetic suite that validates and runs (the runner tests' mini suite, smaller)."""
    return {"name": "s", "model": {"tiny": dict(TINY)}, "data": dict(SYNTHETIC), "seeds": [1],
            "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx", "full-ft", "mlm-trg", "madx2"]}},
            "hyperparameters": {"mlm": {"steps": 2, "max_seq_length": 32}, "ner": {"epochs": 1, "max_length": 48}}}


def write(tmp_path, suite: dict, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def changed(suite: dict, **changes) -> dict:
    """``suite`` with dotted fields set (``None`` as a value deletes the field)."""
    out = copy.deepcopy(suite)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def test_shipped_suites_are_valid():
    for name in ("smoke", "gpu-smoke"):
        load_suite(name)
    for name in ("paper-ner", "paper-qa", "offline-real", "offline-real-mlm-base"):
        load_suite(name, check_paths=False)


def test_the_bases_of_the_matrices_are_valid(tmp_path):
    load_suite(str(write(tmp_path, files_base(tmp_path))))
    load_suite(str(write(tmp_path, synthetic_base())))


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"tasks": {"ner": {"sources": ["en"], "targets": ["qq"], "methods": ["madx"]}}}, "tasks.ner.targets: .*qq"),
        ({"tasks": {"ner": {"sources": ["en"], "targets": ["en"], "methods": ["madx-inv-lad"]}}}, "unknown method 'madx-inv-lad'.*Did you mean"),
        ({"tasks": {"pos": {}}}, "unknown task 'pos'"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"hyperparameters": {"ner": {"epochs": "ten"}}}, "hyperparameters.ner.epochs must be a number"),
        ({"hyperparameters": {"ner": {"epoch": 3}}}, "unknown hyperparameter hyperparameters.ner.epoch"),
        ({"data": {"wikiann": "/no/such/dir", "text": "/no/such/text"}}, r"data.(wikiann|text) = /no/such/(dir|text) does not exist"),
        ({"data": {"wikiann": "${MADX_NOT_SET_ANYWHERE}"}}, "MADX_NOT_SET_ANYWHERE.*not set"),
        ({"hyperparameters": {"runtime": {"compile": "maybe"}}}, "runtime.compile must be one of auto, yes, no, true, false"),
        ({"hyperparameters": {"runtime": {"mixed_precision": "bf32"}}}, "runtime.mixed_precision must be one of no, bf16"),
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
def test_bad_suites_name_the_field(tmp_path, changes, message):
    path = write(tmp_path, {**files_base(tmp_path), **changes})
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("value,setting", [("auto", "auto"), ("no", "no"), (False, "no"), (True, "yes")])
def test_compile_opt_out(tmp_path, value, setting):
    """YAML reads a bare `compile: no` as false: both spellings turn compilation off."""
    from bench.suite import compile_setting

    suite = load_suite(str(write(tmp_path, {**files_base(tmp_path), "hyperparameters": {"runtime": {"compile": value}}})))
    assert compile_setting(suite.hyperparameters["runtime"]["compile"]) == setting
    assert yaml.safe_load("compile: no")["compile"] is False


# Suites that validated before this matrix was written, and then failed in a job or ran something else than
# their author wrote (each tried: the job's error, or what the graph silently did, is in the comment).
SYNTHETIC_CANNOT_RUN = [
    # the prepare job: AutoConfig "Unrecognized model identifier"
    ({"model__tiny__arch": "xlm-robertaa"}, r"model.tiny.arch = 'xlm-robertaa': no such architecture.*Did you mean 'xlm-roberta'"),
    # a transformers architecture madx cannot put adapters into: the prepare job fails (no masked-LM class for it)
    ({"model__tiny__arch": "gpt2"}, r"model.tiny.arch = 'gpt2': madx has no architecture entry"),
    # transformers keeps an unknown config field and builds the default hidden size: not the model asked for
    ({"model__tiny__hidden_sise": 64}, r"model.tiny.hidden_sise is not a field.*Did you mean 'hidden_size'"),
    ({"model__tiny__num_hidden_layers": "2"}, r"model.tiny.num_hidden_layers must be a positive whole number"),
    ({"model__tiny__hidden_size": 33}, r"model.tiny: hidden_size 33 is not a multiple of num_attention_heads 2"),
    ({"model__tiny": "small"}, r"model.tiny must be a mapping"),
    # the MLM job: "index 80 is out of bounds for dimension 1 with size 80" (XLM-R positions start at 2)
    ({"hyperparameters__mlm__max_seq_length": 79}, r"hyperparameters.mlm.max_seq_length = 79 needs 81 position embeddings, "
                                                   r"but model.tiny has max_position_embeddings = 80"),
    ({"hyperparameters__ner__max_length": 128}, r"hyperparameters.ner.max_length = 128 needs 130 position"),
    ({"overrides": {"madx": {"ner": {"max_length": 100}}}}, r"overrides.madx.ner.max_length = 100 needs 102 position"),
    ({"hyperparameters__mlm__max_seq_length": 2}, r"hyperparameters.mlm.max_seq_length = 2 is too short"),
    # the QA task job: "doc_stride=3 must be >= 0 and smaller than the context room of a window"
    ({"tasks__qa": {"sources": ["en"], "targets": ["en"], "methods": ["madx"]}, "hyperparameters__qa__max_length": 9},
     r"hyperparameters.qa.max_length = 9 is too short: qa needs at least 10 tokens"),
    # adapters: "language_reduction_factor=3 must divide the size 32" in the MLM job
    ({"hyperparameters__adapters": {"language_reduction_factor": 3}}, r"hyperparameters.adapters.language_reduction_factor: .*must divide the size 32"),
    ({"hyperparameters__adapters": {"task_reduction_factor": 64}}, r"hyperparameters.adapters.task_reduction_factor: .*must divide"),
    # the MLM job: "AdapterConfig.init_weights must be one of 'adapterhub', 'identity'"
    ({"hyperparameters__adapters": {"init_weights": "zeros"}}, r"hyperparameters.adapters.init_weights must be one of adapterhub, identity"),
    # MAD-X 2.0 on a one-layer model leaves every layer without adapters
    ({"model__tiny__num_hidden_layers": 1}, r"method madx2: leave_out \[-1\] leaves all 1 layers without adapters"),
    # the prepare job reads model.tiny: KeyError 'tiny'
    ({"model": "xlm-roberta-base"}, r"model: a synthetic suite's prepare job builds a tiny random model"),
    ({"model__extra": 1}, r"unknown field model.extra"),
    # the synthetic data has no qu: the task job finds no train file
    ({"data__languages": ["en", "sw"]}, r"tasks.ner.targets: qu not among data.languages \(en, sw\)"),
    ({"tasks__ner__sources": ["sw"]}, r"tasks.ner.sources: sw not among data.languages"),
    # nothing to run: the graph had only the prepare job (or no evaluation)
    ({"tasks": {}}, r"tasks is empty"),
    ({"tasks__ner__sources": []}, r"tasks.ner.sources is empty"),
    ({"tasks__ner__targets": []}, r"tasks.ner.targets is empty"),
    ({"tasks__ner__methods": []}, r"tasks.ner.methods is empty"),
    # silently deduplicated or ignored: not what the author wrote
    ({"tasks__ner__targets": ["en", "en"]}, r"tasks.ner.targets lists 'en' twice"),
    ({"seeds": [1, 1]}, r"seeds lists 1 twice"),
    ({"tasks__ner__seeds": [2, 3]}, r"unknown field tasks.ner.seeds; known: sources, targets, methods"),
    ({"overrides": {"madx-inv": {"mlm": {"steps": 3}}}}, r"overrides.madx-inv: no task of this suite runs madx-inv"),
    ({"hyperparameters__qa": {"epochs": 2}}, r"hyperparameters.qa: this suite runs no qa task"),
    ({"overrides": {"madx": {"qa": {"epochs": 2}}}}, r"overrides.madx.qa: this suite runs no qa task"),
    ({"tasks__ner__methods": ["madx"], "mlm_trg_seeds": [2]}, r"mlm_trg_seeds: no task of this suite runs mlm-trg"),
    ({"hyperparameters__ner__eval_every": 2.5}, r"hyperparameters.ner.eval_every must be a whole number or null"),
    ({"hyperparameters": []}, r"hyperparameters must be a mapping, got list"),
    ({"notes": "one note"}, r"notes must be a list of strings"),
    ({"name": " "}, r"name is empty"),
]


@pytest.mark.parametrize("changes,message", SYNTHETIC_CANNOT_RUN, ids=lambda v: "-" if isinstance(v, str) else None)
def test_synthetic_suites_that_cannot_run_fail_validation(tmp_path, changes, message):
    path = write(tmp_path, changed(synthetic_base(), **changes))
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(str(path))
    assert str(info.value).startswith(f"{path}: ")


def model_folders(root):
    (root / "no-config").mkdir()
    (root / "gpt").mkdir()
    (root / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}))
    (root / "short").mkdir()
    (root / "short" / "config.json").write_text(json.dumps(
        {"model_type": "xlm-roberta", "max_position_embeddings": 66, "pad_token_id": 1, "hidden_size": 32, "num_hidden_layers": 2}))
    (root / "empty").mkdir()


# (changes, given the data root; message)
FILES_CANNOT_RUN = [
    # the MLM job: "job ...: the suite names no data.text"
    (lambda root: {"data__text": None}, r"data.text is missing: madx train on each language's text"),
    # the graph leaves out every language without text: MAD-X gets no job at all
    (lambda root: {"data__text": str(root / "empty")}, r"tasks.ner.methods: madx trains on each source's text, but "
                                                        r"data.text = .*empty has no \{lang\}.txt for any source \(en\)"),
    # a file: every language "has text", then the MLM job fails reading <file>/en.txt
    (lambda root: {"data__text": str(root / "text" / "en.txt")}, r"data.text = .*en.txt is a file"),
    # no prepare job in a files suite: "job mlm/en/adapter+inv has no prepare dependency"
    (lambda root: {"model": {"tiny": TINY}}, r"model.tiny: only a synthetic suite .* builds a tiny model"),
    (lambda root: {"model": str(root / "no-config")}, r"no-config is not a model folder \(no config.json\)"),
    (lambda root: {"model": str(root / "gpt")}, r"model = .*gpt: madx has no architecture entry for model_type 'gpt2'"),
    (lambda root: {"model": str(root / "short")}, r"hyperparameters.ner.max_length = 128 needs 130 position embeddings, but "
                                                  r"model .*short has max_position_embeddings = 66"),
    (lambda root: {"model": "./models/tinyy"}, r"model = ./models/tinyy does not exist \(looked for .*models/tinyy"),
]


@pytest.mark.parametrize("changes,message", FILES_CANNOT_RUN, ids=lambda v: "-" if isinstance(v, str) else None)
def test_suites_on_files_that_cannot_run_fail_validation(tmp_path, changes, message):
    model_folders(tmp_path)
    path = write(tmp_path, changed(files_base(tmp_path), **changes(tmp_path)))
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(str(path))
    assert str(info.value).startswith(f"{path}: ")


def test_a_hub_model_must_be_cached_when_offline(tmp_path, monkeypatch):
    path = write(tmp_path, changed(files_base(tmp_path), model="madx-tests/never-cached-model"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    load_suite(str(path))  # online, the first job downloads it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SuiteError, match="never-cached-model: no local folder .* not in the hub cache, and HF_HUB_OFFLINE is set"):
        load_suite(str(path))


def test_a_suite_file_that_is_not_utf8_names_file_line_and_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: t\nnotes: [caf\u00e9]\n".encode("latin-1"))
    with pytest.raises(SuiteError, match=re.escape(f"{path}: line 2, column 12 (byte 19): not UTF-8 text (byte 0xe9)")):
        load_suite(str(path))
    bom = write(tmp_path, files_base(tmp_path), "bom.yaml")
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    assert load_suite(str(bom)).name == "t"  # a UTF-8 BOM (Windows editors) is fine


def test_a_field_given_twice_is_refused_with_both_lines(tmp_path):
    """PyYAML keeps the second `tasks:` and drops the first without a word."""
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(files_base(tmp_path), sort_keys=False) + "tasks: {qa: {}}\n", encoding="utf-8")
    with pytest.raises(SuiteError, match=r"field 'tasks' appears twice in one mapping \(lines \d+ and \d+\)"):
        load_suite(str(path))


def test_validate_checks_every_task_file_per_language(tmp_path):
    path = write(tmp_path, files_base(tmp_path))
    wikiann = tmp_path / "wikiann"
    (wikiann / "test-qu.tsv").unlink()
    with pytest.raises(SuiteError, match=r"task ner, test for qu: no file under data.wikiann = .*wikiann; languages with a "
                                         r"test file there: en$"):
        load_suite(str(path))
    (wikiann / "dev-en.tsv").unlink()  # a missing dev split is allowed: train is split instead
    wikiann_files(wikiann, ("test-qu",))
    load_suite(str(path))
    (wikiann / "train-en.tsv").unlink()
    with pytest.raises(SuiteError, match="task ner, train for en"):
        load_suite(str(path))
    load_suite(str(path), check_paths=False)  # `bench plan` sizes a suite without its data


# -- where data paths resolve (issue 22): the working directory and MADX_DATA, never the suite file's folder -----
def fetched_layout(root, langs=PAPER_NER_LANGUAGES):
    """What `madx data fetch --out ROOT` writes for NER: wikiann/{split}-{lang}.tsv and text/{lang}.txt."""
    wikiann_files(root / "wikiann", [f"{split}-{lang}" for lang in langs for split in ("train", "dev", "test")])
    text_files(root / "text", langs)


def test_relative_data_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    suites, work = tmp_path / "suites", tmp_path / "work"
    fetched_layout(work / "data", ["en", "qu"])
    suites.mkdir()
    path = write(suites, changed(files_base(tmp_path / "elsewhere"), data={"wikiann": "data/wikiann", "text": "data/text"}))
    monkeypatch.chdir(work)
    suite = load_suite(str(path))
    assert suite.data["wikiann"] == str(work / "data" / "wikiann")


def test_paper_ner_finds_data_fetched_into_the_working_directory_or_madx_data(tmp_path, monkeypatch):
    """`madx data fetch --out data` then `madx bench run paper-ner`: the suite reads ${MADX_DATA:-data}."""
    fetched_layout(tmp_path / "data")
    monkeypatch.delenv("MADX_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_suite("paper-ner").data["wikiann"] == str(tmp_path / "data" / "wikiann")
    monkeypatch.chdir(tmp_path / "data")
    monkeypatch.setenv("MADX_DATA", str(tmp_path / "data"))
    assert load_suite("paper-ner").data["text"] == str(tmp_path / "data" / "text")


def test_missing_data_says_where_it_looked_and_how_to_set_madx_data(tmp_path, monkeypatch):
    monkeypatch.delenv("MADX_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SuiteError) as info:
        load_suite("paper-ner")
    message = str(info.value)
    assert f"data.wikiann = {tmp_path / 'data' / 'wikiann'} does not exist" in message
    assert "written '${MADX_DATA:-data}/wikiann'; MADX_DATA is not set" in message
    assert f"relative paths resolve against the working directory {tmp_path}" in message
    assert "export MADX_DATA=" in message and "madx data fetch --out" in message


def test_a_data_folder_one_level_too_high_names_languages_not_folders(tmp_path, monkeypatch):
    """The shared data folder: wikiann/rahimi-xtreme/{split}-{lang}.tsv beside wikiann/rahimi-original-en/{split}."""
    fetched_layout(tmp_path / "shared")
    wikiann = tmp_path / "shared" / "wikiann"
    (wikiann / "rahimi-xtreme").mkdir()
    for file in list(wikiann.glob("*.tsv")):
        file.rename(wikiann / "rahimi-xtreme" / file.name)
    (wikiann / "rahimi-original-en").mkdir()
    for split in ("train", "dev", "test"):
        (wikiann / "rahimi-original-en" / split).write_text("en:Lima\tB-LOC\n", encoding="utf-8")
    monkeypatch.setenv("MADX_DATA", str(tmp_path / "shared"))
    with pytest.raises(SuiteError) as info:
        load_suite("paper-ner")
    message = str(info.value)
    assert "rahimi-original-en" not in message.split("; its subfolder")[0]  # a folder is not a language
    assert f"task ner, train for en: no file under data.wikiann = {wikiann}; languages with a train file there: none" in message
    assert f"its subfolder {wikiann / 'rahimi-xtreme'} has it: set data.wikiann to that folder (in a copy of this shipped suite)" in message


def test_a_registered_task_without_a_setting_the_task_job_reads_fails_validation(tmp_path):
    """bench.execute reads hyper["max_length"]: a task spec without a default fails in its first task job."""
    import dataclasses

    from madx.tasks.registry import get_task, register_task, unregister_task

    ner = get_task("ner")
    register_task(dataclasses.replace(ner, name="ner-nomax", hyperparameters={
        k: v for k, v in ner.hyperparameters.items() if k != "max_length"}))
    try:
        suite = files_base(tmp_path)
        suite["tasks"] = {"ner-nomax": suite["tasks"]["ner"]}
        path = write(tmp_path, suite)
        with pytest.raises(SuiteError, match=r"hyperparameters.ner-nomax.max_length is missing \(task ner-nomax's spec gives "
                                             r"no default; add one to its TaskSpec.hyperparameters"):
            load_suite(str(path))
    finally:
        unregister_task("ner-nomax")
