"""``madx bench``: validate, plan, run, status and report for suites.

    madx bench validate smoke
    madx bench plan paper-ner
    accelerate launch --num_processes 2 -m madx bench run smoke --out runs/smoke
    madx bench status runs/smoke
    madx bench report runs/smoke --out reports/smoke
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from madx.commands.common import UsageError

HELP = "the benchmark suite: validate, plan, run, status, report"

# tokens one job of each kind processes, for ``plan``'s compute estimate (per unit of its params)
DEFAULT_THROUGHPUT_TOKENS_PER_S = 100_000.0  # a stated assumption: XLM-R base training on one modern GPU


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    validate = sub.add_parser("validate", help="check a suite file")
    validate.add_argument("suite")
    validate.set_defaults(run=run_validate)
    plan = sub.add_parser("plan", help="print the job graph's counts and a compute estimate")
    plan.add_argument("suite")
    plan.add_argument("--throughput", type=float, default=DEFAULT_THROUGHPUT_TOKENS_PER_S,
                      help="assumed tokens/s per GPU for every job kind (without --calibrate)")
    plan.add_argument("--calibrate", action="store_true",
                      help="measure tokens/s of each job kind on this device with the suite's model shape "
                           "(random weights) instead of assuming it")
    plan.add_argument("--calibrate-steps", type=int, default=5, metavar="N", help="timed steps per job kind (default 5)")
    plan.add_argument("--calibrate-warmup", type=int, default=2, metavar="N",
                      help="untimed steps first (default 2; the first compiles where the suite compiles)")
    plan.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs (workers) for the wall-time estimate")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(run=run_plan)
    run = sub.add_parser("run", help="run (or resume) a suite; every launched process is a worker")
    run.add_argument("suite")
    run.add_argument("--out", required=True, help="run directory (shared by all workers)")
    run.add_argument("--lease-seconds", type=float, default=None,
                     help="heartbeat period shown by status (ownership is a lock that dies with its worker)")
    run.add_argument("--add", action="store_true",
                     help="add this suite's jobs to a run directory that holds another suite (refused otherwise)")
    run.add_argument("--max-jobs", type=int, default=None, help="stop this worker after N jobs")
    run.add_argument("--verbose", action="store_true",
                     help="print every job event on a terminal too (always in RUN/logs/; piped output always has them)")
    run.set_defaults(run=run_run)
    status = sub.add_parser("status", help="done / running / failed / pending of a run directory")
    status.add_argument("dir")
    status.add_argument("--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
                        help="redraw a live status line every SECONDS (default 2) until the run is finished")
    status.set_defaults(run=run_status)
    perf = sub.add_parser("perf", help="throughput / memory / MFU benchmark of the MAD-X steps")
    from bench.perf.cli import add_arguments as add_perf_arguments, run as run_perf

    add_perf_arguments(perf)
    perf.set_defaults(run=run_perf)
    report = sub.add_parser("report", help="tables and plots beside the paper's")
    from bench.report.cli import add_arguments as add_report_arguments, run as run_report

    add_report_arguments(report)
    report.set_defaults(run=run_report)


def run(args) -> int:  # dispatched through set_defaults
    return args.run(args)


def run_validate(args) -> int:
    from bench.graph import build_graph, count_by_kind
    from bench.preflight import missing_text
    from bench.suite import SuiteError, load_suite

    try:
        suite = load_suite(args.suite)
    except SuiteError as error:
        raise UsageError(f"invalid suite: {error}") from None
    counts = count_by_kind(build_graph(suite))
    print(f"{suite.path}: valid suite {suite.name!r} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))} jobs)")
    for method, languages in missing_text(suite).items():
        print(f"note: data.text has no text for {', '.join(languages)}: {method} gets no jobs there (its cells stay missing)")
    return 0


def run_plan(args) -> int:
    from bench.calibrate import DataSizes, calibrate, job_work, model_config, plan_suite, rate_keys, render_plan
    from bench.graph import build_graph
    from bench.suite import SuiteError, load_suite

    for name, value, least in (("--gpus", args.gpus, 1), ("--calibrate-steps", args.calibrate_steps, 1),
                               ("--calibrate-warmup", args.calibrate_warmup, 0)):
        if value < least:
            raise UsageError(f"{name} must be at least {least}, got {value}")
    if not args.throughput > 0:
        raise UsageError(f"--throughput must be positive, got {args.throughput}")
    try:
        suite = load_suite(args.suite, check_paths=False)
    except SuiteError as error:
        raise UsageError(f"invalid suite: {error}") from None
    jobs = build_graph(suite)
    sizes = DataSizes(suite)
    calibration = None
    if args.calibrate:
        try:
            config = model_config(suite.model)
        except OSError as error:  # a hub model's config that is neither cached nor reachable
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"cannot calibrate: no config for model {suite.model.get('name_or_path')!r} ({reason}); "
                             "--calibrate needs the model's config.json: a built-in preset, a local path, or a hub name "
                             "in the local cache") from None
        keys = rate_keys(job_work(job, sizes) for job in jobs)
        log = (lambda line: print(line, file=sys.stderr)) if args.json else print
        log(f"calibrating {len(keys)} job kinds ({args.calibrate_steps} timed steps after {args.calibrate_warmup} untimed):")
        calibration = calibrate(suite, keys, args.calibrate_steps, args.calibrate_warmup, log=log, config=config)
    plan = plan_suite(suite, jobs, args.gpus, args.throughput, calibration, sizes)
    if args.json:
        print(json.dumps(plan, indent=2, default=str))
        return 0
    print(render_plan(plan))
    return 0


def run_run(args) -> int:
    import logging

    from bench.devices import DeviceError
    from bench.progress import RunView
    from bench.suite import SuiteError, load_suite
    from bench.worker import (PrecisionUnsupported, StorageFull, SuiteMismatch, WorkerStopped, install_lifecycle,
                              run_worker, worker_identity)

    from madx.commands.model_loading import quiet_third_party

    logging.basicConfig(level=logging.WARNING)
    quiet_third_party()
    try:
        suite = load_suite(args.suite)
    except SuiteError as error:
        raise UsageError(f"invalid suite: {error}") from None
    rank, worker = worker_identity()
    view = None
    try:
        install_lifecycle()
        view = RunView(args.out, worker, rank, verbose=args.verbose)
        summary = run_worker(suite, args.out, progress=view.event,
                             lease_seconds=args.lease_seconds, max_jobs=args.max_jobs, add_jobs=args.add)
        live = view.live
        view.close()
        view = None
        if live:  # the event lines went to the log only
            print("finished: " + ", ".join(f"{k} {v}" for k, v in summary.items()) + f" (event log: {args.out}/logs/)")
    except WorkerStopped as stop:
        print(f"stopped by {stop}: the job in hand was released and will run again; finished jobs are kept",
              file=sys.stderr)
        return 128 + stop.signum
    except (StorageFull, SuiteMismatch, DeviceError, PrecisionUnsupported) as error:
        print(f"{getattr(args, 'command_prog', 'madx bench run')}: error: {error}", file=sys.stderr)
        return 2
    finally:
        if view is not None:
            view.close()
    return 0 if summary["failed"] == 0 and summary["pending"] == 0 and summary["running"] == 0 else 1


def _watch(store, jobs, plan_path: Path, every: float) -> int:
    import time

    from bench.progress import job_costs, status_line

    started = plan_path.stat().st_mtime
    walls: dict = {}
    work = job_costs(plan_path.parent)
    try:
        while True:
            line = status_line(store, jobs, started, walls=walls, work=work)
            print("\r\x1b[2K" + line, end="", flush=True)
            if line.endswith("finished"):
                break
            time.sleep(every)
    except KeyboardInterrupt:
        pass
    print()
    return 0


def run_status(args) -> int:
    from bench.store import RunStore
    from bench.worker import status_counts

    plan_path = Path(args.dir) / "plan.json"
    if not plan_path.is_file():
        raise UsageError(f"{args.dir}: no plan.json; not a run directory")
    store = RunStore(args.dir, create=False)  # reading only: a mistyped path creates nothing
    jobs = json.loads(plan_path.read_text(encoding="utf-8"))["jobs"]
    if args.watch is not None:
        return _watch(store, jobs, plan_path, args.watch)
    counts = status_counts(store, jobs)
    print(f"{args.dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" of {len(jobs)} jobs")
    for job in jobs:
        if store.is_done(job["id"]):
            continue
        ownership = store.owner(job["id"])
        if ownership.state != "free":
            print(f"  {'running' if ownership.state == 'held' else 'stale':<8} {job['name']}: {ownership.describe()}")
        elif error := store.error(job["id"]):
            print(f"  failed   {job['name']}: {str(error.get('error'))[:300]}")
        if problem := store.result_problem(job["id"]):
            print(f"  invalid  {job['name']}: result.json {problem} (quarantined when the job runs again)")
        for kept in store.quarantined(job["id"]):
            print(f"  quarantined {job['name']}: {kept}")
    return 0
