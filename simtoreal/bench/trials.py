"""The trial functions: one per kind, each a plain function of (config, seed, context).

Each calls the library's public API (the same recipes as ``python -m simtoreal.train ...`` and
``python -m simtoreal.transfer``) and returns a summary the report understands::

    {"metrics": {name: number},                 # tabulated with 95% CIs over seeds
     "severity": {severity: success},           # success-vs-severity curves (transfer)
     "curves": [{"label", "x", "y", "x_label", "y_label"}],   # learning curves vs wall time
     "details": {...}}                          # anything else worth keeping

Heavy imports happen inside the functions, so importing this module (to list the kinds) is
cheap. The runner adds ``wall_time_s`` and ``peak_rss_mb`` to ``metrics``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtoreal.errors import ConfigError

Summary = dict[str, Any]


@dataclass
class TrialContext:
    """What a trial gets besides its config: where to write, how many threads, real data."""

    workdir: Path
    """A fresh directory for the trial's run directories."""
    threads: int
    """Torch (and OpenCV) threads of the trial: cores // trials at once."""
    data_root: Path | None = None
    """--data: the folder holding real data sets (sst2/, tweeteval-sentiment/)."""
    cache_dir: Path | None = None
    """A cache shared by the trials of a sweep (the NLP feature cache)."""
    report: Callable[[dict], None] | None = None
    """Progress sink (Ray Tune's report under --search); None in the local pool."""


# ---------------------------------------------------------------------------------------------
# envs: throughput
# ---------------------------------------------------------------------------------------------


def run_envs(config: dict, seed: int, ctx: TrialContext) -> Summary:
    """Steps/s of the batched state view and the single-env shell, frames/s of the image view
    per domain, and MiniGrid's Empty-8x8 (symbolic and 64x64 RGB) when installed."""
    from simtoreal.envs.batched import GridWorldBatch, ViewConfig
    from simtoreal.envs.gym_envs import GridWorldEnv
    from simtoreal.envs.world import N_ACTIONS, WorldParams

    seconds, n, n_img = config["seconds"], config["num_envs"], config["image_envs"]
    metrics = {
        "state steps/s (batched)": _batch_rate(
            GridWorldBatch(n, WorldParams(), ViewConfig(view="state")), seconds, seed
        ),
        "state steps/s (single env)": _loop_rate(
            GridWorldEnv(view="state"), N_ACTIONS, seconds, seed
        ),
    }
    for domain in config.get("domains", ("sim", "randomized", "real")):
        view = ViewConfig(view="image", domain=domain, severity=config.get("severity", 0.5))
        batch = GridWorldBatch(n_img, WorldParams(), view)
        metrics[f"frames/s ({domain})"] = _batch_rate(batch, seconds, seed)
    details = {"minigrid": "not measured"}
    if config.get("minigrid"):
        details["minigrid"] = _minigrid_rates(metrics, seconds, seed)
    return {"metrics": metrics, "details": details}


def _timed_rate(step: Callable[[], int], seconds: float) -> float:
    """Items per second of ``step`` (which returns how many items it did), after a warm-up."""
    step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done / elapsed


def _batch_rate(batch, seconds: float, seed: int) -> float:
    import numpy as np

    from simtoreal.envs.world import N_ACTIONS

    n = batch.num_envs
    batch.reset(seeds=np.arange(n) + seed * n)
    actions = np.random.default_rng(seed).integers(0, N_ACTIONS, (64, n))
    calls = itertools.count()

    def step() -> int:
        batch.step(actions[next(calls) % 64])
        return n

    return _timed_rate(step, seconds)


def _loop_rate(env, n_actions: int, seconds: float, seed: int, chunk: int = 100) -> float:
    import numpy as np

    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, n_actions, 64 * chunk).tolist()
    calls = itertools.count()

    def step() -> int:
        start = (next(calls) % 64) * chunk
        for action in actions[start : start + chunk]:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        return chunk

    return _timed_rate(step, seconds)


def _minigrid_rates(metrics: dict, seconds: float, seed: int) -> str:
    """Adds MiniGrid's rates to ``metrics``; says why not when MiniGrid is not installed."""
    try:
        import gymnasium as gym
        import minigrid  # noqa: F401  (registers the MiniGrid ids)
        from minigrid.wrappers import RGBImgObsWrapper
    except ImportError:
        return 'not installed (pip install -e ".[test]")'
    for label, rgb in (
        ("MiniGrid steps/s (symbolic)", False),
        ("MiniGrid steps/s (RGB 64x64)", True),
    ):
        env = gym.make("MiniGrid-Empty-8x8-v0")
        env = RGBImgObsWrapper(env, tile_size=8) if rgb else env
        metrics[label] = _loop_rate(env, int(env.action_space.n), seconds, seed)
    return "MiniGrid-Empty-8x8-v0"


# ---------------------------------------------------------------------------------------------
# teacher
# ---------------------------------------------------------------------------------------------


def run_teacher(config: dict, seed: int, ctx: TrialContext) -> Summary:
    """``python -m simtoreal.train grid``'s recipe with the env's preset and ``config["train"]``
    on top; test success, steps, training wall time and the validation curve."""
    run_dir = ctx.workdir / "teacher"
    with watch_progress(run_dir / "metrics.jsonl", ctx.report):
        summary = train_teacher(config, seed, ctx, run_dir)
    return {
        "metrics": {
            "success": summary["success_rate"],
            "frames": summary["total_steps"],
            "train_wall_s": summary["wall_time_s"],
            "best_step": summary["best_step"],
        },
        "curves": [teacher_curve(run_dir)],
        "details": {k: summary[k] for k in ("success_ci", "n_episodes", "env_id", "algo")},
    }


def train_teacher(config: dict, seed: int, ctx: TrialContext, run_dir: Path) -> dict:
    """Train the teacher of ``config`` (``env_id`` + ``train`` overrides) into ``run_dir``."""
    from simtoreal.train.grid import TrainConfig, train

    overrides = {
        **config.get("train", {}),
        "seed": seed,
        "run_dir": str(run_dir),
        "progress_bar": False,
        "gif_episodes": 0,
        "torch_threads": ctx.threads,
    }
    env_id = config.get("env_id", TrainConfig.env_id)
    return train(TrainConfig.for_env(env_id, **overrides))


def teacher_curve(run_dir: Path) -> dict:
    """Validation success against training wall time, from the teacher's metrics.jsonl."""
    from simtoreal.runs import read_jsonl

    lines = read_jsonl(run_dir / "metrics.jsonl")
    return {
        "label": "teacher (validation)",
        "x": [r["wall_time_s"] for r in lines],
        "y": [r["success_rate"] for r in lines],
        "x_label": "training wall time (s)",
        "y_label": "success",
    }


# ---------------------------------------------------------------------------------------------
# transfer
# ---------------------------------------------------------------------------------------------


def run_transfer(config: dict, seed: int, ctx: TrialContext) -> Summary:
    """A teacher of its own (on ``config["env_id"]``, default the 8x8 world, with
    ``config["teacher"]`` as TrainConfig overrides), then ``run_transfer`` with
    ``config["transfer"]``: success by severity, recovered share, validation success, the shift
    suite's score and the pixel-PPO baseline when the config asks for them."""
    from simtoreal.transfer.config import TransferConfig
    from simtoreal.transfer.pipeline import run_transfer as transfer

    teacher_dir, run_dir = ctx.workdir / "teacher", ctx.workdir / "transfer"
    teacher = {"train": config.get("teacher", {})}
    if "env_id" in config:
        teacher["env_id"] = config["env_id"]
    train_teacher(teacher, seed, ctx, teacher_dir)
    cfg = TransferConfig.from_dict(
        {
            **config.get("transfer", {}),
            "teacher": str(teacher_dir),
            "run_dir": str(run_dir),
            "seed": seed,
            "gif_episodes": 0,
            "torch_threads": ctx.threads,
        },
        "bench trial",
    )
    with watch_progress(run_dir / "metrics.jsonl", ctx.report):
        summary = transfer(cfg)
    return {
        "metrics": transfer_metrics(summary, cfg.severity),
        "severity": {k: v["success_rate"] for k, v in summary["student"]["real"].items()},
        "curves": transfer_curves(summary, teacher_dir, cfg.severity),
        "details": {
            "headline": f"real@{cfg.severity}",
            "protocol": summary["protocol"],
            "signals": summary["signals"],
            "warnings": summary["warnings"],
        },
    }


def transfer_metrics(summary: dict, severity: float) -> dict[str, float]:
    """The numbers of a transfer summary that the report tabulates."""
    out = {
        "success": summary["student"]["real"][str(severity)]["success_rate"],
        "recovered": summary["recovered"],
        "teacher_success": summary["teacher"]["success_rate"],
        "validation_success": summary["validation"]["success_rate"],
        "random_floor": summary["random_policy"]["success_rate"],
        "frames": summary["train"]["frames"],
        "adapter_wall_s": summary["train"]["wall_time_s"],
        "teacher_wall_s": summary["teacher_train_s"],
    }
    if summary.get("robustness", {}).get("score") is not None:
        out["robustness_score"] = summary["robustness"]["score"]
    if "baseline" in summary:
        b = summary["baseline"]
        out["baseline_success_same_frames"] = b["same_frames"]["success_rate"]
        out["baseline_success_same_wall"] = b["same_wall_time"]["success_rate"]
    return out


def transfer_curves(summary: dict, teacher_dir: Path, severity: float) -> list[dict]:
    """The teacher's validation curve, the baseline's curve in real, and the student's point
    (teacher + adapter wall time, its real success)."""
    curves = [teacher_curve(teacher_dir)]
    if "baseline" in summary:
        c = summary["baseline"]["curve"]
        curves.append(
            {
                "label": f"pixel PPO baseline (real@{severity})",
                "x": [p["train_s"] for p in c],
                "y": [p["success_rate"] for p in c],
                "x_label": "training wall time (s)",
                "y_label": "success",
            }
        )
    curves.append(
        {
            "label": f"student (real@{severity})",
            "x": [summary["transfer_wall_s"]],
            "y": [summary["student"]["real"][str(severity)]["success_rate"]],
            "x_label": "training wall time (s)",
            "y_label": "success",
        }
    )
    return curves


# ---------------------------------------------------------------------------------------------
# the companion stacks
# ---------------------------------------------------------------------------------------------


def run_vision(config: dict, seed: int, ctx: TrialContext) -> Summary:
    """``python -m simtoreal.train vision``'s recipe: mAP@.5 per domain, training speed and the
    source task's accuracy after training (forgetting)."""
    from simtoreal.train.vision import VisionRunConfig, train

    cfg = VisionRunConfig.from_dict(
        {
            **config,
            "seed": seed,
            "run_dir": str(ctx.workdir / "vision"),
            "progress_bar": False,
            "torch_threads": ctx.threads,
        }
    )
    summary = train(cfg)
    metrics = {f"mAP@.5 {d}": v for d, v in summary["map_50"].items()}
    metrics.update(
        train_s=summary["train_s"],
        train_images_per_s=summary["train_images_per_s"],
        inference_images_per_s=summary["inference_images_per_s"],
    )
    if summary.get("forgetting"):
        metrics["source_accuracy_after"] = summary["forgetting"]["after"]
    return {"metrics": metrics, "details": {"trunk": summary["trunk"], "epochs": summary["epochs"]}}


def run_nlp(config: dict, seed: int, ctx: TrialContext) -> Summary:
    """``python -m simtoreal.train nlp``'s recipe on ``<--data>/<config["data"]>``: test
    accuracy, macro recall and F1, encoding and wall time."""
    from simtoreal.train.nlp import NLPArgs, train

    if ctx.data_root is None:
        raise ConfigError("this trial reads real data: pass --data PATH (e.g. ../shared/data).")
    args = NLPArgs(
        **{
            **config,
            "data": ctx.data_root / config["data"],
            "seed": seed,
            "run_dir": ctx.workdir / "nlp",
            "torch_threads": ctx.threads,
            "cache_dir": ctx.cache_dir,
        }
    )
    summary = train(args)
    test = summary["results"]["test"]
    metrics = {k: test[k] for k in ("accuracy", "macro_recall", "macro_f1")}
    metrics.update(encode_s=summary["encode_seconds"], n_train=summary["n_train"])
    return {
        "metrics": metrics,
        "details": {"choice": summary["choice"], "layout": summary["layout"]},
    }


# ---------------------------------------------------------------------------------------------
# progress for the search scheduler
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def watch_progress(
    path: Path, report: Callable[[dict], None] | None, every_s: float = 0.5
) -> Iterator[None]:
    """While the body runs, pass every new line of the JSONL file ``path`` (a run's
    metrics.jsonl) to ``report``; nothing at all when ``report`` is None."""
    if report is None:
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_tail, args=(path, report, stop, every_s), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _tail(
    path: Path, report: Callable[[dict], None], stop: threading.Event, every_s: float
) -> None:
    import json

    seen = 0
    while True:
        finished = stop.wait(every_s)
        text = path.read_text() if path.is_file() else ""
        complete = text.splitlines()
        if not text.endswith("\n"):
            complete = complete[:-1]  # the last line is still being written
        for line in complete[seen:]:
            with contextlib.suppress(json.JSONDecodeError):
                report(json.loads(line))
        seen = max(seen, len(complete))
        if finished:
            return


#: kind -> trial function. A new kind of trial is a function above and a line here.
KINDS: dict[str, Callable[[dict, int, TrialContext], Summary]] = {
    "envs": run_envs,
    "teacher": run_teacher,
    "transfer": run_transfer,
    "vision": run_vision,
    "nlp": run_nlp,
}
