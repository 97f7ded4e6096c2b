"""``python -m simtoreal.bench SUITE [flags]``: run a suite of trials, write results and report.

The recipe, top to bottom: parse the flags; check everything (suite, budget, seeds, --data,
the existing results.jsonl, Ray and its address) before anything is written; expand the suite
into trials and drop those results.jsonl already holds (a killed sweep resumes); run the rest on
the chosen backend, appending each record as it finishes; render report.md and the plots from
results.jsonl. Bad input exits with status 2 and one line; failed trials with status 1.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from simtoreal.bench import report, runner
from simtoreal.bench.machine import git_commit, usable_cores
from simtoreal.bench.results import (
    FAILURES_FILE,
    RESULTS_FILE,
    append_record,
    finished_ids,
    read_results,
)
from simtoreal.bench.suites import (
    BUDGETS,
    DEFAULT_SEEDS,
    SUITES,
    Suite,
    Trial,
    check_budget_and_seeds,
    expand,
    load_suite_file,
    suite_names,
)
from simtoreal.errors import ConfigError, SimToRealError
from simtoreal.runs import read_jsonl

PROG = "python -m simtoreal.bench"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "suite", nargs="?", help=f"one of {', '.join(SUITES)}, all, or a suite of --suite-file"
    )
    p.add_argument(
        "--budget",
        default="full",
        choices=BUDGETS,
        help="quick: small configs (all suites in about 15 min on 2 cores); full: "
        "what the committed reports use (default)",
    )
    p.add_argument("--seeds", type=int, help="run seeds per trial (default: 2 quick, 3 full)")
    p.add_argument(
        "--out",
        type=Path,
        help="report directory (default runs/bench/SUITE-BUDGET); its results.jsonl is resumed",
    )
    p.add_argument(
        "--render-only",
        type=Path,
        metavar="DIR",
        help="re-make DIR's report from its results.jsonl; runs nothing",
    )
    p.add_argument(
        "--jobs",
        type=int,
        help="trials at once (default: usable cores); each gets cores // jobs torch threads",
    )
    p.add_argument("--backend", default="local", choices=("local", "ray"))
    p.add_argument(
        "--address",
        help="Ray cluster to join (host:port, ray://host:port or auto); "
        "default: a local Ray instance",
    )
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per Ray trial")
    p.add_argument(
        "--search",
        action="store_true",
        help="sample the suite's search space "
        "(Ray Tune, ASHA early stopping) instead of running its trials",
    )
    p.add_argument("--samples", type=int, help="configs --search samples (default: the suite's)")
    p.add_argument(
        "--data",
        type=Path,
        help="folder of real data sets (sst2/, "
        "tweeteval-sentiment/); trials that need it are skipped without",
    )
    p.add_argument(
        "--suite-file", type=Path, help="JSON file declaring more suites (docs/bench.md)"
    )
    p.add_argument(
        "--keep-runs",
        action="store_true",
        help="keep each trial's run directories "
        "under OUT/work (default: removed once the trial is recorded)",
    )
    return p.parse_args(argv)


@dataclass
class Plan:
    """Everything checked, nothing written yet."""

    out: Path
    trials: list[Trial]
    pending: list[Trial]
    settings: runner.RunSettings
    search: object | None = None
    notes: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        if args.render_only is not None:
            raise SystemExit(render_only(args.render_only))
        plan = make_plan(args, argv)
        if args.backend == "ray":
            runner.connect_ray(args.address, None if args.address else usable_cores())
    except SimToRealError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(execute_plan(plan))


def render_only(directory: Path) -> int:
    """Re-make ``directory``'s report from its results.jsonl."""
    results = directory / RESULTS_FILE
    if not results.is_file():
        raise ConfigError(
            f"--render-only {directory}: it has no {RESULTS_FILE}; pass the --out "
            "directory of a sweep."
        )
    records = read_results(results)
    path = report.render(directory, records, read_jsonl(directory / FAILURES_FILE))
    print(f"wrote {path} from {len(records)} record(s)")
    return 0


def make_plan(args: argparse.Namespace, argv: list[str]) -> Plan:
    """Check every input and decide what to run; writes nothing."""
    if args.suite is None:
        raise ConfigError(
            "name a suite (e.g. python -m simtoreal.bench transfer), or pass --render-only DIR."
        )
    registry = {**SUITES, **(load_suite_file(args.suite_file) if args.suite_file else {})}
    names = suite_names(args.suite, registry)
    seeds = DEFAULT_SEEDS[args.budget] if args.seeds is None else args.seeds
    check_budget_and_seeds(args.budget, seeds)
    check_flags(args)
    trials = (
        search_plan(args, names, registry, seeds)
        if args.search
        else expand(names, registry, args.budget, seeds)
    )
    trials, notes = without_data(trials, args.data)
    out = (
        args.out
        or Path("runs/bench") / f"{args.suite}-{args.budget}{'-search' if args.search else ''}"
    )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: pass a directory.")
    done = finished_ids(read_results(out / RESULTS_FILE))  # strict: a bad line stops here
    jobs = args.jobs or usable_cores()
    settings = runner.RunSettings(
        jobs=jobs,
        threads=max(1, usable_cores() // jobs),
        backend=args.backend,
        work_root=str(out / "work"),
        command=shlex.join([*PROG.split(), *argv]),
        commit=git_commit(),
        data_root=None if args.data is None else str(args.data.absolute()),
        cache_dir=str((out / "cache").absolute()),
        keep_runs=args.keep_runs,
        gpus=args.gpus_per_trial,
        search=args.search,
    )
    pending = [t for t in trials if t.trial_id not in done]
    search = registry[names[0]].search if args.search else None
    return Plan(out, trials, pending, settings, search, notes)


def check_flags(args: argparse.Namespace) -> None:
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: use 1 or more trials at once.")
    if args.backend != "ray" and (args.address or args.search or args.gpus_per_trial):
        raise ConfigError(
            "--address, --search and --gpus-per-trial run on Ray: add --backend "
            f"ray ({runner.RAY_INSTALL} if Ray is not installed)."
        )
    if args.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial {args.gpus_per_trial}: use 0 or more.")
    if args.data is not None and not args.data.is_dir():
        raise ConfigError(
            f"--data {args.data} is not a directory: pass the folder holding the "
            "data sets (e.g. ../shared/data)."
        )


def search_plan(
    args: argparse.Namespace, names: list[str], registry: dict[str, Suite], seeds: int
) -> list[Trial]:
    from simtoreal.bench.search import search_trials

    if len(names) != 1:
        raise ConfigError("--search samples one suite's space: name that suite, not all.")
    suite = registry[names[0]]
    samples = args.samples or (suite.search.samples if suite.search else 1)
    return search_trials(names[0], suite, args.budget, seeds, samples)


def without_data(trials: list[Trial], data: Path | None) -> tuple[list[Trial], list[str]]:
    """Drop the trials that need --data when it is not given, with a note saying so."""
    if data is not None:
        return trials, []
    skipped = sorted({t.name for t in trials if t.needs_data})
    if not skipped:
        return trials, []
    note = (
        f"skipped {', '.join(skipped)}: they read real data; pass --data PATH (e.g. "
        "../shared/data, see its README) to run them."
    )
    return [t for t in trials if not t.needs_data], [note]


# ---------------------------------------------------------------------------------------------
# Running the plan
# ---------------------------------------------------------------------------------------------


def execute_plan(plan: Plan) -> int:
    """Run the pending trials, append their records, render the report; 1 if any failed."""
    s = plan.settings
    for note in plan.notes:
        print(f"note: {note}")
    print(
        f"{len(plan.trials)} trial(s); {len(plan.trials) - len(plan.pending)} already in "
        f"{plan.out / RESULTS_FILE} (skipped); running {len(plan.pending)} on {s.backend}, "
        f"{s.jobs} at once x {s.threads} thread(s)",
        flush=True,
    )
    plan.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []

    def on_record(record: dict) -> None:
        append_record(plan.out / RESULTS_FILE, record)
        print(f"done {record['trial_id']} ({record.get('wall_time_s', '-')} s)", flush=True)

    def on_failure(trial: Trial, error: str, text: str) -> None:
        failed.append(trial.trial_id)
        append_record(
            plan.out / FAILURES_FILE,
            {"trial_id": trial.trial_id, "error": error, "traceback": text},
        )
        print(f"FAILED {trial.trial_id}: {error}", file=sys.stderr, flush=True)

    if plan.pending and s.backend == "ray":
        runner.run_ray(plan.pending, s, on_record, on_failure, plan.out / "ray", plan.search)
    elif plan.pending:
        runner.run_local(plan.pending, s, on_record, on_failure)
    records = read_results(plan.out / RESULTS_FILE)
    path = report.render(plan.out, records, read_jsonl(plan.out / FAILURES_FILE), plan.notes)
    print(f"wrote {path} ({len(records)} record(s)); {len(failed)} failed", flush=True)
    return 1 if failed else 0
