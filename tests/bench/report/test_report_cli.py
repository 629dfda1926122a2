"""``madx bench report`` redraws a run's own report, but does not replace another run's without
``--overwrite``; its errors are one line with the command's prefix."""

from __future__ import annotations

from madx import cli


def run_dir(path):
    (path / "jobs").mkdir(parents=True)
    return path


def test_a_report_of_another_run_is_not_replaced(tmp_path, capsys):
    first, second = run_dir(tmp_path / "first"), run_dir(tmp_path / "second")
    out = tmp_path / "report"
    assert cli.main(["bench", "report", str(first), "--out", str(out), "--no-plots", "--quiet"]) == 0
    assert cli.main(["bench", "report", str(first), "--out", str(out), "--no-plots", "--quiet"]) == 0  # redrawn
    before = (out / "report.md").read_text()
    assert cli.main(["bench", "report", str(second), "--out", str(out), "--no-plots", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"madx bench: error: --out {out} holds the report of another run ('first'); "
                                       "pass --overwrite to replace it, or choose another --out\n")
    assert (out / "report.md").read_text() == before
    assert cli.main(["bench", "report", str(second), "--out", str(out), "--no-plots", "--quiet", "--overwrite"]) == 0
    assert "run directory `second`" in (out / "report.md").read_text()


def test_a_missing_run_directory_is_one_line(tmp_path, capsys):
    assert cli.main(["bench", "report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"madx bench: error: run directory {tmp_path / 'nope'} does not exist\n"


def test_the_module_entry_point_says_it_in_one_line(tmp_path, capsys):
    from bench.report.__main__ import main

    assert main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"python -m bench.report: error: run directory {tmp_path / 'nope'} does not exist\n"


def test_report_files_get_the_users_mode(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        assert cli.main(["bench", "report", str(run_dir(tmp_path / "run")), "--no-plots", "--quiet"]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run" / "report").iterdir()}
    assert modes == {"report.html": 0o644, "report.json": 0o644, "report.md": 0o644}
