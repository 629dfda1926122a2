"""The README's library example, run as written (accelerate's ExampleDifferenceTests habit).

The python block under "## Using the library" in README.md runs in a folder that holds
``adapters/en/adapter`` and ``adapters/qu/adapter``, as ``madx train-lang --out adapters/en`` writes them.
One name is substituted, by this documented mapping: the hub model ``xlm-roberta-base`` becomes a tiny
local model made by ``madx models make-tiny`` (no download in the test suite).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Using the library"


def readme_example() -> str:
    text = README.read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, f"no python block under {SECTION!r} in README.md"
    return blocks[0]


def test_the_readme_library_example_runs(tmp_path, monkeypatch):
    import madx
    from tests.commands.tiny import make_tiny, save_language_adapter

    model_dir = make_tiny(tmp_path / "tiny")
    substitutions = {"xlm-roberta-base": str(model_dir)}  # the documented mapping: hub name -> tiny local model
    code = readme_example()
    for name, local in substitutions.items():
        assert f'"{name}"' in code, f"the README example no longer names {name!r}; update the mapping in this test"
        code = code.replace(f'"{name}"', repr(local))
    work = tmp_path / "work"
    for language in ("en", "qu"):
        save_language_adapter(model_dir, language, work / "adapters" / language / "adapter")  # train-lang's layout
    monkeypatch.chdir(work)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)

    model = namespace["model"]
    assert madx.get_active(model) == madx.Stack("en", "ner"), "the example leaves the training setup active"
    assert all(tag in model.config.label2id for tag in namespace["tags"]), "predicted tags are the model's own labels"
    saved = work / "adapters" / "ner"
    assert (saved / "head.safetensors").exists()
    fresh = type(model).from_pretrained(model_dir, num_labels=7)
    assert madx.load_adapter(fresh, saved) == "ner"


@pytest.mark.parametrize("text,found", [
    ("# x\n## Using the library\n\n```python\nprint(1)\n```\n## Next\n```python\nprint(2)\n```\n", "print(1)\n"),
])
def test_the_block_is_taken_from_its_section(monkeypatch, tmp_path, text, found):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "README", readme)
    assert readme_example() == found
