"""What a suite run shows while it works.

* Every event line (``[host:pid:rank0] done eval/… in 0.5s {"f1": …}``) goes to the run's log,
  ``RUN/logs/<worker>.log``, always.
* On a terminal (and without ``--verbose``) the screen shows one status line instead, redrawn in
  place by the first worker of a launch: done/total, running, failed, elapsed and an ETA from the
  first finished job on: each job's estimated work (``bench.calibrate.job_work``) at the seconds per
  unit of work measured on the finished jobs of its kind, or of all finished jobs while its kind has
  none (shown as ``ETA ~…``), refined as jobs finish. Piped or with ``--verbose``, the event lines
  are printed as they happen (what CI and log collectors want).
* Inside a job, third-party chatter (``datasets``' map bars, transformers' load reports and
  warnings, tqdm bars) goes to the job's own ``RUN/jobs/<id>/log.txt``, never to the screen.

``madx bench status --watch`` redraws the same status line for a run that workers elsewhere are
working on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bench.store import RunStore


def status_line(store: RunStore, jobs: Iterable[dict], started: float, now: float | None = None,
                walls: dict[str, float | None] | None = None, work: dict[str, float | None] | None = None) -> str:
    """``done 41/100 · running 2 · failed 0 · 1m12s elapsed · ETA 2m05s``, read from the run directory.
    ``walls`` (job id -> measured wall time) is a cache the caller keeps between redraws, so each
    finished job's result is read once, not at every redraw. ``work`` (job id -> estimated cost,
    ``job_work``) lets the ETA start with the first finished job (see ``estimate_remaining``)."""
    now = time.time() if now is None else now
    walls = {} if walls is None else walls
    jobs = list(jobs)
    finished: list[tuple[str, float, float | None]] = []  # (kind, wall, work) of each measured finished job
    remaining: list[tuple[str, float | None]] = []  # (kind, work) of each job left
    counts = {"done": 0, "running": 0, "failed": 0}
    for job in jobs:
        cost = work.get(job["id"]) if work is not None else 1.0
        if job["id"] in walls or store.is_done(job["id"]):
            counts["done"] += 1
            if job["id"] not in walls:
                try:
                    walls[job["id"]] = float(store.read_result(job["id"])["cost"]["job_wall_s"])
                except (KeyError, TypeError, ValueError, OSError):
                    walls[job["id"]] = None
            if walls[job["id"]] is not None:
                finished.append((job["kind"], walls[job["id"]], cost))
            continue
        remaining.append((job["kind"], cost))
        if store.owner(job["id"]).state == "held":
            counts["running"] += 1
        elif store.error(job["id"]) is not None:
            counts["failed"] += 1
    parts = [f"done {counts['done']}/{len(jobs)}", f"running {counts['running']}", f"failed {counts['failed']}",
             f"{duration(now - started)} elapsed"]
    if not remaining:
        parts.append("finished")
    else:
        eta = estimate_remaining(finished, remaining, max(counts["running"], 1))
        parts.append("ETA pending" if eta is None else
                     "ETA " + ("~" if eta.estimated else "") + duration(eta.seconds))
    return " · ".join(parts)


@dataclass(frozen=True)
class Eta:
    seconds: float
    estimated: bool  # some job kind left has no finished job yet: its time is scaled from the others'


def estimate_remaining(finished: list[tuple[str, float, float | None]], remaining: list[tuple[str, float | None]],
                       workers: int) -> Eta | None:
    """Seconds left, shared by the workers at work. A job left whose kind has finished jobs takes its
    estimated work times the seconds per unit of work measured on them (their mean wall time when there
    is no work estimate); a kind with none finished yet takes the rate of all finished jobs together
    (the ETA is then marked estimated, and refined as soon as one of its jobs finishes). Jobs without a
    work estimate (``None``: preparing data and models) never set a rate. None until a job with one has
    finished (or, for a run without estimates, any job)."""
    if not finished:
        return None
    wall_by_kind: dict[str, list[float]] = {}
    work_by_kind: dict[str, float] = {}
    for kind, wall, cost in finished:
        wall_by_kind.setdefault(kind, []).append(wall)
        if cost is not None:
            work_by_kind[kind] = work_by_kind.get(kind, 0.0) + cost
    timed = [(wall, cost) for _, wall, cost in finished if cost is not None]
    pooled = sum(w for w, _ in timed) / max(sum(c for _, c in timed), 1e-12) if timed else None
    per_job = sum(wall for _, wall, _ in finished) / len(finished)
    total, estimated = 0.0, False
    for kind, cost in remaining:
        if kind in wall_by_kind and (cost is None or work_by_kind.get(kind, 0.0) <= 0):
            total += sum(wall_by_kind[kind]) / len(wall_by_kind[kind])
        elif kind in wall_by_kind:
            total += cost * sum(w for k, w, c in finished if k == kind and c is not None) / work_by_kind[kind]
        elif cost is not None and pooled is None:
            return None  # only jobs without a work estimate (preparing) have finished: nothing to scale by
        else:
            total += cost * pooled if cost is not None else per_job
            estimated = True
    return Eta(total / workers, estimated)


# A training token costs about three forward tokens (forward + backward); see bench.calibrate's rows.
TRAINING_ROWS = ("mlm-", "task-")


def job_costs(run_dir: str | Path) -> dict[str, float | None] | None:
    """Estimated work of each job of a run (forward-token equivalents from ``bench.calibrate.job_work``: the
    suite's own step counts, epochs and data sizes), from the suite file the run keeps; None if it cannot be
    read (the ETA then counts every job of a kind alike)."""
    try:
        from bench.calibrate import DataSizes, job_work
        from bench.graph import build_graph
        from bench.suite import load_suite

        suite = load_suite(str(Path(run_dir) / "suite.yaml"), check_paths=False)
        sizes = DataSizes(suite)
        costs = {}
        for job in build_graph(suite):
            tokens = job_work(job, sizes).tokens
            total = float(sum(n * (3 if key.startswith(TRAINING_ROWS) else 1) for key, n in tokens.items()))
            costs[job.id] = total if total > 0 else None  # preparing data and models: no token estimate
        return costs
    except Exception:  # noqa: BLE001 - an estimate only: any problem means no estimate, never a failed run
        return None


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def replay_eta(run_dir: str | Path, after: Iterable[int] = (1, 2, 5, 10, 20, 40, 60, 80, 100, 120)) -> list[str]:
    """How good the ETA was on a finished run: after the k-th job finished (in finishing order), the ETA the
    status line's estimator gives from those jobs, beside what was really left (the last finish minus this
    one). One worker assumed. ``python -m bench.progress RUN`` prints it."""
    import json
    from datetime import datetime

    root = Path(run_dir)
    store = RunStore(root, create=False)
    work = job_costs(root)
    done = []
    for job in json.loads((root / "plan.json").read_text(encoding="utf-8"))["jobs"]:
        result = store.read_result(job["id"])
        finished_at = datetime.fromisoformat(result["finished_at"].replace("Z", "+00:00")).timestamp()
        done.append((finished_at, job, float(result["cost"]["job_wall_s"])))
    done.sort(key=lambda row: row[0])
    cost = (lambda job: work.get(job["id"])) if work is not None else (lambda job: 1.0)
    lines = [f"{'after':>5}  {'kind':<8} {'ETA':>8}  {'really left':>11}"]
    for k in (k for k in after if 0 < k < len(done)):
        eta = estimate_remaining([(j["kind"], wall, cost(j)) for _, j, wall in done[:k]],
                                 [(j["kind"], cost(j)) for _, j, _ in done[k:]], workers=1)
        shown = "pending" if eta is None else ("~" if eta.estimated else "") + duration(eta.seconds)
        lines.append(f"{k:>5}  {done[k - 1][1]['kind']:<8} {shown:>8}  {duration(done[-1][0] - done[k - 1][0]):>11}")
    return lines


class RunView:
    """Where a worker's event lines go (see the module docstring)."""

    def __init__(self, out_dir: str | Path, worker: str, rank: int, verbose: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.live = not verbose and self.stream.isatty()
        self.redraws = self.live and rank == 0
        self.log_path = Path(out_dir) / "logs" / (worker.replace(":", "_") + ".log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8", buffering=1)
        self._store: RunStore | None = None
        self._jobs: list[dict] = []
        self._started = time.time()
        self._last_draw = 0.0
        self._walls: dict[str, float | None] = {}
        self._work: dict[str, float | None] | None = None

    def watch(self, store: RunStore, jobs: Iterable[dict]) -> None:
        self._store, self._jobs = store, list(jobs)
        self._work = job_costs(store.root)

    def event(self, line: str) -> None:
        self._log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        if not self.live:
            print(line, file=self.stream, flush=True)
        elif self.redraws:
            self.draw()

    def draw(self, force: bool = False) -> None:
        if not self.redraws or (not force and time.time() - self._last_draw < 0.5):
            return
        if self._store is None and (self.log_path.parent.parent / "plan.json").is_file():
            import json

            root = self.log_path.parent.parent
            self.watch(RunStore(root, create=False), json.loads((root / "plan.json").read_text(encoding="utf-8"))["jobs"])
        if self._store is None:
            return
        self._last_draw = time.time()
        line = status_line(self._store, self._jobs, self._started, walls=self._walls, work=self._work)
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()

    def close(self) -> None:
        if self.redraws:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
        self._log.close()


@contextlib.contextmanager
def job_output(log_file: Path) -> Iterator[None]:
    """Send a job's third-party output (prints, warnings, logging, progress bars) to ``log_file``."""
    import datasets
    import transformers

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8", buffering=1) as handle:
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        previous_handlers, previous_level = root.handlers[:], root.level
        hf_logger = transformers.utils.logging.get_logger("transformers")
        hf_handlers = hf_logger.handlers[:]
        bars = datasets.utils.logging.is_progress_bar_enabled()
        previous_tqdm = os.environ.get("TQDM_DISABLE")
        root.handlers, hf_logger.handlers = [handler], [handler]
        root.setLevel(logging.INFO)
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        os.environ["TQDM_DISABLE"] = "1"
        try:
            with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle), \
                    _warnings_to(handle):
                yield
        finally:
            root.handlers, hf_logger.handlers = previous_handlers, hf_handlers
            root.setLevel(previous_level)
            if bars:
                datasets.enable_progress_bars()
            transformers.utils.logging.enable_progress_bar()
            if previous_tqdm is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = previous_tqdm


@contextlib.contextmanager
def _warnings_to(handle: io.TextIOBase) -> Iterator[None]:
    import warnings

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        handle.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":  # python -m bench.progress RUN: the ETA replayed on a finished run
    print("\n".join(replay_eta(sys.argv[1])))
