"""The paper's settings table (madx.recipes) and everything that reads it."""

from pathlib import Path

import pytest
import yaml

from madx.recipes import RECIPES, Recipe, UnknownRecipeError, family, recipe, suite_defaults
from madx.variants import VARIANTS

# §5.2, as printed: "250,000 steps, with a batch size of 64 and a learning rate of 5e-5 and 1e-4 for XLM-R (also
# for the -SRC and -TRG variants) and adapters" / "NER data for 100 epochs with a batch size of 16 and 8 for
# high-resource and low-resource languages, respectively, and a learning rate of 5e-5 and 1e-4 for XLM-R and adapters"
PAPER = {
    ("adapters", "mlm", None): {"steps": 250000, "batch_size": 64, "learning_rate": 1e-4},
    ("full-model", "mlm", None): {"steps": 250000, "batch_size": 64, "learning_rate": 5e-5},
    ("adapters", "task", "ner"): {"epochs": 100, "batch_size": 16, "batch_size_low_resource": 8, "learning_rate": 1e-4},
    ("full-model", "task", "ner"): {"epochs": 100, "batch_size": 16, "batch_size_low_resource": 8, "learning_rate": 5e-5},
}


@pytest.mark.parametrize("key", sorted(PAPER, key=str))
def test_the_table_holds_the_papers_numbers(key):
    row = next(r for r in RECIPES if r.key == key)
    assert {name: getattr(row, name) for name in PAPER[key]} == PAPER[key]
    assert set(row.from_paper) == set(PAPER[key])


def test_every_value_the_paper_does_not_state_says_so():
    for row in RECIPES:
        assert row.note or set(row.from_paper) >= {"learning_rate", "batch_size", "max_length", "steps", "epochs"}, row


# (method, phase, task) -> (family, learning rate): every method of the paper and MAD-X 2.0
LOOKUPS = [
    ("madx", "mlm", None, "adapters", 1e-4),
    ("madx-inv", "mlm", None, "adapters", 1e-4),
    ("madx2", "mlm", None, "adapters", 1e-4),
    ("mlm-src", "mlm", None, "full-model", 5e-5),
    ("mlm-trg", "mlm", None, "full-model", 5e-5),
    ("madx", "task", "ner", "adapters", 1e-4),
    ("madx-lad-inv", "task", "ner", "adapters", 1e-4),
    ("madx2-inv", "task", "ner", "adapters", 1e-4),
    ("full-ft", "task", "ner", "full-model", 5e-5),  # the CLI's default was 1e-4: the drift this table ends
    ("mlm-src", "task", "ner", "full-model", 5e-5),
    ("mlm-trg", "task", "ner", "full-model", 5e-5),
    ("full-ft", "task", "qa", "full-model", 3e-5),
    ("madx", "task", "qa", "adapters", 1e-4),
    ("adapters", "mlm", None, "adapters", 1e-4),
    ("full-model", "task", "ner", "full-model", 5e-5),
]


@pytest.mark.parametrize("method,phase,task,fam,lr", LOOKUPS)
def test_lookup_by_method_or_family(method, phase, task, fam, lr):
    found = recipe(method, phase, task)
    assert isinstance(found, Recipe) and found.family == fam == family(method, phase)
    assert found.learning_rate == lr and found.task == task and found.phase == phase


def test_every_method_has_a_task_recipe_and_its_mlm_recipe_if_it_has_mlm():
    for name, variant in VARIANTS.items():
        for task in ("ner", "qa"):
            recipe(name, "task", task)
        if variant.needs_language_mlm:
            recipe(name, "mlm")
        else:
            with pytest.raises(UnknownRecipeError, match=f"method '{name}' has no MLM phase"):
                recipe(name, "mlm")


@pytest.mark.parametrize(
    "args,message",
    [
        (("madx-invv", "mlm"), "unknown method 'madx-invv'.*Did you mean 'madx-inv'"),
        (("full_ft", "task", "ner"), "unknown method 'full_ft'.*Did you mean 'full-ft'"),
        (("madx", "mlmm"), "unknown phase 'mlmm'.*known: mlm, task.*Did you mean 'mlm'"),
        (("madx", "task", "nerr"), "unknown task 'nerr'.*Did you mean 'ner'"),
        (("madx", "task"), "needs a task; known: ner, qa"),
        (("madx", "mlm", "ner"), "the MLM phase is the same for every task"),
        (("full-ft", "mlm"), "has no MLM phase.*methods with one: madx, madx-inv, mlm-src"),
    ],
)
def test_lookup_errors_say_what_exists(args, message):
    with pytest.raises(UnknownRecipeError, match=message):
        recipe(*args)


def test_rows_validate():
    with pytest.raises(ValueError, match="an MLM recipe has steps"):
        Recipe("adapters", "mlm", "ner", learning_rate=1e-4, batch_size=8, max_length=8, steps=1)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        Recipe("adapters", "task", "ner", learning_rate=0, batch_size=8, max_length=8, epochs=1)
    with pytest.raises(ValueError, match="from_paper names no field"):
        Recipe("adapters", "task", "ner", learning_rate=1, batch_size=8, max_length=8, epochs=1, from_paper=("lr",))


def test_suites_and_task_specs_read_the_table():
    from bench.suite import default_hyperparameters
    from madx.tasks.registry import get_task

    defaults = default_hyperparameters()
    assert {k: defaults["mlm"][k] for k in suite_defaults("mlm")} == suite_defaults("mlm")
    assert defaults["mlm"]["lr_full_model"] == recipe("mlm-trg", "mlm").learning_rate
    for task in ("ner", "qa"):
        spec = get_task(task)
        assert {k: spec.hyperparameters[k] for k in suite_defaults("task", task)} == suite_defaults("task", task)
        assert spec.default_max_length == recipe("madx", "task", task).max_length
        assert defaults[task]["lr_full_model"] == recipe("full-ft", "task", task).learning_rate


@pytest.mark.parametrize("suite", ["paper-ner", "paper-qa"])
def test_paper_suites_run_with_the_tables_values(suite):
    """What a job of each method uses (bench/execute.py: lr_adapters for adapter methods, lr_full_model otherwise)."""
    from bench.suite import load_suite

    loaded = load_suite(suite, check_paths=False)
    for task in loaded.tasks:
        for method in loaded.methods[task]:
            hyper = loaded.hyper(method)
            task_recipe = recipe(method, "task", task)
            lr = hyper[task]["lr_adapters"] if VARIANTS[method].uses_adapters else hyper[task]["lr_full_model"]
            assert (lr, hyper[task]["epochs"], hyper[task]["batch_size"], hyper[task]["max_length"]) == (
                task_recipe.learning_rate, task_recipe.epochs, task_recipe.batch_size, task_recipe.max_length)
            if VARIANTS[method].needs_language_mlm:
                mlm = recipe(method, "mlm")
                lr = hyper["mlm"]["lr_full_model" if mlm.family == "full-model" else "lr_adapters"]
                assert (lr, hyper["mlm"]["steps"], hyper["mlm"]["batch_size"], hyper["mlm"]["max_seq_length"]) == (
                    mlm.learning_rate, mlm.steps, mlm.batch_size, mlm.max_length)


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "bench" / "suites").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_suites_write_only_the_settings_they_change(path):
    """One table per fact: a suite that restates one of the paper's settings (or an adapter size) would keep the
    old value if the table changed. Runtime settings are not the paper's."""
    from bench.suite import default_hyperparameters

    defaults = dict(_leaves(default_hyperparameters()))
    given = dict(_leaves((yaml.safe_load(path.read_text(encoding="utf-8")).get("hyperparameters") or {})))
    restated = sorted(key for key, value in given.items() if key in defaults and defaults[key] == value
                      and not key.startswith("runtime."))
    assert not restated, f"{path.name} restates the defaults of {restated}"
