"""Dependencies point one way (STYLE.md): madx never imports bench; adapters/ knows nothing of
transformers; compose/ (values) sits below inject/ (which activates them on a model)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """file -> every module it imports (module top or inside functions)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, forbidden: str) -> list[str]:
    return [f"{file} imports {name}" for file, names in imported_modules(package).items()
            for name in sorted(names) if name == forbidden or name.startswith(forbidden + ".")]


@pytest.mark.parametrize("package,forbidden", [
    ("madx", "bench"),
    ("madx/adapters", "transformers"),
    ("madx/compose", "madx.inject"),
    ("madx/compose", "torch"),
])
def test_no_upward_imports(package, forbidden):
    assert offenders(package, forbidden) == []


def test_only_the_cli_imports_command_modules():
    outside = {f: n for f, n in imported_modules("madx").items()
               if not f.startswith("madx/commands/") and f != "madx/cli.py"}
    assert [f"{f} imports {m}" for f, names in outside.items() for m in names if m.startswith("madx.commands")] == []


def test_the_bench_subcommand_comes_from_an_entry_point():
    from madx import cli

    assert "bench" not in cli.SUBCOMMANDS
    assert cli.subcommands()["bench"] == "bench.cli", "pip install -e . registers the madx.commands entry point"
