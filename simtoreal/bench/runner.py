"""Run trials: each in a fresh process with its own thread count, locally or on Ray Tune.

Both backends run the same :func:`execute` (one trial -> one record) and hand every record to
the caller as soon as it is finished, so the caller appends it to results.jsonl at once.

- ``local``: a pool of ``jobs`` slots; each trial gets a new spawned process (no state, threads
  or memory carried over from another trial, so its peak RSS and timings are its own).
- ``ray``: the same trials as Ray Tune trials with ``{"cpu": threads, "gpu": gpus}`` each, at
  most ``jobs`` at once, on a local Ray instance or the cluster at ``--address``; under
  ``--search`` an ASHA scheduler stops unpromising samples early.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import resource
import shutil
import socket
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simtoreal.bench.suites import SearchSpec, Trial
from simtoreal.errors import ConfigError

OnRecord = Callable[[dict], None]
OnFailure = Callable[[Trial, str, str], None]
RAY_INSTALL = 'pip install -e ".[ray]"'


@dataclass(frozen=True)
class RunSettings:
    """How a sweep runs: recorded in every record it writes."""

    jobs: int
    """Trials at once."""
    threads: int
    """Torch / OpenCV threads per trial (usable cores // jobs, at least 1)."""
    backend: str
    work_root: str
    """Where trials write their run directories (removed after success unless keep_runs)."""
    command: str
    commit: str
    data_root: str | None = None
    cache_dir: str | None = None
    keep_runs: bool = False
    gpus: float = 0.0
    """GPUs per trial (Ray only)."""
    search: bool = False


# ---------------------------------------------------------------------------------------------
# One trial (runs in the trial's own process)
# ---------------------------------------------------------------------------------------------


def execute(trial: dict, run: dict, report: Callable[[dict], None] | None = None) -> dict:
    """Run one trial and return its results.jsonl record (config, seed, machine, versions,
    summary, wall time, peak memory)."""
    from simtoreal.bench.machine import machine_info, versions
    from simtoreal.bench.trials import KINDS, TrialContext

    limit_threads(run["threads"])
    spec = Trial.from_dict(trial)
    workdir = Path(run["work_root"]) / spec.trial_id.replace("/", "__").replace(" ", "_")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    ctx = TrialContext(
        workdir, run["threads"], _path(run["data_root"]), _path(run["cache_dir"]), report
    )
    machine, started = machine_info(), _now()
    start = time.perf_counter()
    summary = KINDS[spec.kind](spec.config, spec.seed, ctx)
    wall = round(time.perf_counter() - start, 3)
    peak = peak_rss_mb()
    summary.setdefault("metrics", {}).update(wall_time_s=wall, peak_rss_mb=peak)
    if not run["keep_runs"]:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "trial_id": spec.trial_id,
        **spec.to_dict(),
        "status": "ok",
        "summary": summary,
        "wall_time_s": wall,
        "peak_rss_mb": peak,
        "threads": run["threads"],
        "jobs": run["jobs"],
        "backend": run["backend"],
        "command": run["command"],
        "commit": run["commit"],
        "machine": machine,
        "versions": versions(),
        "started": started,
        "finished": _now(),
        "pid": os.getpid(),
    }


def limit_threads(threads: int) -> None:
    """Torch, OpenCV and the BLAS pools of this process to ``threads`` threads."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def peak_rss_mb() -> float:
    """Peak resident memory of this process or any child it waited for, in MB (Linux: ru_maxrss
    is in KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def describe_error(err: BaseException) -> tuple[str, str]:
    """``(one line, traceback)`` of a trial's exception (a pool re-raises the child's)."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    cause = err.__cause__  # the child's traceback, as concurrent.futures attaches it
    if cause is not None:
        text = str(cause) + "\n" + text
    return f"{type(err).__name__}: {err}", text


# ---------------------------------------------------------------------------------------------
# Local backend
# ---------------------------------------------------------------------------------------------


def run_local(
    trials: list[Trial], run: RunSettings, on_record: OnRecord, on_failure: OnFailure
) -> None:
    """Each trial in a fresh spawned process, ``run.jobs`` at once; records handed over (in the
    calling thread) as they finish."""
    settings = asdict(run)
    with ThreadPoolExecutor(max_workers=run.jobs) as slots:
        pending = {slots.submit(_in_fresh_process, t.to_dict(), settings): t for t in trials}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                trial = pending.pop(future)
                try:
                    record = future.result()
                except Exception as err:  # the trial failed: record it, go on with the rest
                    on_failure(trial, *describe_error(err))
                    continue
                on_record(record)


def _in_fresh_process(trial: dict, settings: dict) -> dict:
    import multiprocessing

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        return process.submit(execute, trial, settings).result()


# ---------------------------------------------------------------------------------------------
# Ray backend
# ---------------------------------------------------------------------------------------------


def import_ray():
    """``ray`` and ``ray.tune``, or a ConfigError that says how to install them."""
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise ConfigError(
            f"--backend ray needs Ray Tune, which is not installed: {RAY_INSTALL} ({err})."
        ) from err
    return ray, tune


def connect_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Start a local Ray instance (``address`` None) or join the cluster at ``address``
    (``host:port``, ``ray://host:port`` or ``auto``); a ConfigError if it cannot be reached."""
    ray, _ = import_ray()
    if address not in (None, "auto", "local"):
        probe_address(address)
    kwargs = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    try:
        if address is None or address == "local":
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"cannot connect to the Ray cluster at --address {address}: {err}. "
            "Start it (ray start --head) or check the address."
        ) from err


def probe_address(address: str, timeout_s: float = 3.0) -> None:
    """Refuse an ``--address`` whose host:port does not accept a TCP connection."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: use host:port, ray://host:port or auto.")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConfigError(
            f"--address {address} is unreachable ({err}): start the cluster "
            "(ray start --head) or check the host and port."
        ) from err


def run_ray(
    trials: list[Trial],
    run: RunSettings,
    on_record: OnRecord,
    on_failure: OnFailure,
    storage: Path,
    search: SearchSpec | None = None,
) -> None:
    """The trials as Ray Tune trials on the connected Ray instance (see :func:`connect_ray`)."""
    ray, tune = import_ray()
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # trials without progress
    settings = asdict(run)
    trainable = tune.with_parameters(_ray_trial, trials=[t.to_dict() for t in trials], run=settings)
    trainable = tune.with_resources(trainable, {"cpu": run.threads, "gpu": run.gpus})
    tune_config = tune.TuneConfig(
        max_concurrent_trials=run.jobs, reuse_actors=False, **_scheduler(search)
    )
    gather = _gather_callback(tune, trials, on_record, on_failure)
    run_config = _run_config(ray, tune)(
        name=f"bench-{int(time.time())}",
        storage_path=str(storage.absolute()),
        verbose=0,
        callbacks=[gather],
    )
    space = {"index": tune.grid_search(list(range(len(trials))))}
    try:
        tune.Tuner(
            trainable, param_space=space, tune_config=tune_config, run_config=run_config
        ).fit()
    finally:
        ray.shutdown()


def _scheduler(search: SearchSpec | None) -> dict[str, Any]:
    if search is None:
        return {}
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(
        time_attr="training_iteration", max_t=100_000, grace_period=2, reduction_factor=2
    )
    return {"scheduler": asha, "metric": search.metric, "mode": search.mode}


def _run_config(ray, tune):
    """``RunConfig`` where this Ray version keeps it (tune since 2.x, ray.train before)."""
    return getattr(tune, "RunConfig", None) or ray.train.RunConfig


def _ray_report(metrics: dict) -> None:
    try:
        from ray.tune import report
    except ImportError:  # Ray versions where only ray.train has it
        from ray.train import report
    report(metrics)


def _ray_trial(config: dict, trials: list[dict], run: dict) -> None:
    """A Ray Tune function trainable: runs :func:`execute` in a thread, reports its progress
    lines (numbers only) as they come, then the record as JSON."""
    trial, progress, box = trials[config["index"]], queue.Queue(), {}

    def work() -> None:
        try:
            box["record"] = execute(trial, run, progress.put if run["search"] else None)
        except BaseException as err:  # re-raised below, in the trainable's own thread
            box["error"] = err
        finally:
            progress.put(None)

    threading.Thread(target=work, daemon=True).start()
    last: dict = {}
    while (line := progress.get()) is not None:
        last = {k: v for k, v in line.items() if isinstance(v, int | float)}
        _ray_report(last)
    if "error" in box:
        raise box["error"]
    _ray_report({**last, "record": json.dumps(box["record"])})  # the scheduler's metric too


def _gather_callback(tune, declared: list[Trial], on_record: OnRecord, on_failure: OnFailure):
    """A Tune callback (it runs in the driver) that hands each finished trial's record over,
    records failures, and keeps trials ASHA stopped early as such."""

    class Gather(tune.Callback):
        def __init__(self) -> None:
            self.done: set[int] = set()

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if "record" in result:
                self.done.add(trial.config["index"])
                on_record(json.loads(result["record"]))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.done.add(trial.config["index"])
            message = str(getattr(trial, "error_msg", None) or "the Ray trial failed")
            on_failure(declared[trial.config["index"]], message.splitlines()[-1], message)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            index = trial.config["index"]
            if index not in self.done:  # stopped by the scheduler before it finished
                self.done.add(index)
                on_record(stopped_record(declared[index], trial.last_result or {}))

    return Gather()


def stopped_record(trial: Trial, last: dict) -> dict:
    """The record of a search trial the scheduler stopped early: its last progress numbers."""
    keep = {k: v for k, v in last.items() if isinstance(v, int | float) and k != "index"}
    return {
        "trial_id": trial.trial_id,
        **trial.to_dict(),
        "status": "stopped_early",
        "summary": {"metrics": {}, "progress": keep},
        "finished": _now(),
    }
