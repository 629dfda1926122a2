"""`madx --help` stays fast: building the parser imports no torch, transformers, datasets or model code.
Checked by the modules it imports, not by timing."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "accelerate", "deepspeed", "triton", "bench.perf.workloads",
         "madx.inject", "madx.kernels")


def imported_by(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_building_the_parser_imports_nothing_heavy():
    modules = imported_by("import madx.cli\nmadx.cli.build_parser()")
    assert sorted(m for m in HEAVY if m in modules) == []
    assert "bench.cli" in modules, "madx bench is part of the parser (through its entry point)"


def test_help_of_every_command_runs_without_heavy_imports():
    code = "import madx.cli\nfor argv in (['--help'], ['bench', '--help'], ['bench', 'perf', '--help'], ['train-lang', '--help']):\n" \
           "    try:\n        madx.cli.main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv"
    modules = imported_by(code)
    assert sorted(m for m in HEAVY if m in modules) == []


def test_the_public_api_still_loads_on_first_use():
    modules = imported_by("import madx\nmadx.Stack('qu', 'ner')\nassert callable(madx.add_language_adapter)")
    assert "madx.inject" in modules
