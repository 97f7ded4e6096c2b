"""Teacher benchmark: time to 0.97 success, batched VecEnv vs per-env stepping, and the sweep.

Usage::

    python benchmarks/bench_teacher.py                 # default run + comparison -> results/
    python benchmarks/bench_teacher.py --parts sweep   # the hyperparameter sweep (docs/teacher.md)

Parts:
    ``default``: runs ``python -m simtoreal.train grid`` exactly as a user would (a subprocess, so
        start-up is counted), with validation every ``eval_every`` steps on 500 held-out episodes,
        and reports the command's wall time, the training wall time at which validation success
        first reached the target, and the final test success with its 95% interval.
    ``compare``: the default PPO config for the default total steps on our batched
        ``GridWorldVecEnv`` and on SB3's ``DummyVecEnv`` over single ``GridWorldEnv`` instances
        (per-env stepping). Both see identical trajectories (same seeds), so they need the same env
        steps; only the wall time differs. Reports end-to-end training steps/s (evaluation time
        excluded), the ratio, and the wall time to the target for both, each within ``budget_s``
        (said honestly when not reached).
    ``sweep``: env steps and training wall time to the target, in the four rounds recorded in
        docs/teacher.md (``--rounds``), several seeds each.

Writes ``results/teacher.md``, ``teacher.json`` and ``teacher.png`` (success vs wall time), and
``teacher_sweep.md`` / ``.json`` for the sweep. Timings depend on the machine and on its load:
run it on a quiet machine and quote the machine with the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import common
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

import simtoreal  # noqa: F401  (registers the env ids)
from simtoreal.agents.evaluate import evaluate, model_policy_fn
from simtoreal.agents.factory import PolicyConfig, PPOConfig, make_model
from simtoreal.envs.gym_envs import GridWorldEnv
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.runs import atomic_write_bytes, atomic_write_json, read_jsonl
from simtoreal.train import VAL_SEED, TrainConfig

RESULTS = Path(__file__).parent / "results"
TARGET = 0.97
ENV_KWARGS = {"view": "state"}


@dataclass
class Curve:
    """Validation success against env steps and training wall time (evaluation excluded)."""

    name: str
    steps: list[int] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    success: list[float] = field(default_factory=list)
    reached_step: int | None = None
    reached_wall_s: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class UntilTarget(BaseCallback):
    """Evaluates every ``every`` steps; stops after ``budget_s`` (and at the target if ``stop``)."""

    def __init__(self, curve: Curve, every: int, budget_s: float, stop: bool) -> None:
        super().__init__()
        self.curve, self.every, self.budget_s, self.stop = curve, every, budget_s, stop
        self._next, self._eval_s, self._t0 = 0, 0.0, 0.0

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()

    def train_wall(self) -> float:
        return time.perf_counter() - self._t0 - self._eval_s

    def _on_rollout_start(self) -> None:
        if self.num_timesteps < self._next:
            return
        self._next = (self.num_timesteps // self.every + 1) * self.every
        start = time.perf_counter()
        result = evaluate(model_policy_fn(self.model), ENV_KWARGS, 500, seed=VAL_SEED)
        self._eval_s += time.perf_counter() - start
        c = self.curve
        c.steps.append(self.num_timesteps)
        c.wall_s.append(round(self.train_wall(), 3))
        c.success.append(result.success_rate)
        if result.success_rate >= TARGET and c.reached_step is None:
            c.reached_step, c.reached_wall_s = self.num_timesteps, c.wall_s[-1]

    def _on_step(self) -> bool:
        done = self.stop and self.curve.reached_step is not None
        return not done and self.train_wall() < self.budget_s


def learn_until(
    env: VecEnv,
    ppo: PPOConfig,
    seed: int,
    name: str,
    budget_s: float,
    max_steps: int,
    every: int,
    stop: bool = True,
) -> Curve:
    """Train PPO with the teacher policy for ``max_steps`` or the wall budget; with ``stop``,
    also stop at the target."""
    model = make_model("ppo", VecMonitor(env), ppo, PolicyConfig(), seed=seed)
    curve = Curve(name)
    callback = UntilTarget(curve, every, budget_s, stop)
    model.learn(max_steps, callback=callback)
    curve.steps.append(model.num_timesteps)
    curve.wall_s.append(round(callback.train_wall(), 3))
    curve.success.append(_success(model))
    return curve


def _success(model: BaseAlgorithm) -> float:
    return evaluate(model_policy_fn(model), ENV_KWARGS, 500, seed=VAL_SEED).success_rate


def batched_env(n_envs: int, seed: int) -> VecEnv:
    return GridWorldVecEnv(n_envs, seed=seed, **ENV_KWARGS)


def per_env_env(n_envs: int, seed: int) -> VecEnv:
    env = DummyVecEnv([lambda: GridWorldEnv(**ENV_KWARGS) for _ in range(n_envs)])
    env.seed(seed)
    return env


# ---------------------------------------------------------------------------------------------


def run_default(budget_s: float, eval_every: int) -> dict:
    """``python -m simtoreal.train grid`` as a subprocess; wall time includes start-up."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "teacher"
        cmd = [sys.executable, "-m", "simtoreal.train", "grid", "--run-dir", str(run_dir)]
        cmd += ["--eval-every", str(eval_every), "--no-progress-bar"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, timeout=max(600, 4 * budget_s), capture_output=True)
        command_s = time.perf_counter() - start
        summary = json.loads((run_dir / "summary.json").read_text())
        metrics = read_jsonl(run_dir / "metrics.jsonl")
    reached = next((m for m in metrics if m["success_rate"] >= TARGET), None)
    return {
        "command": " ".join(["python -m simtoreal.train grid", "--eval-every", str(eval_every)]),
        "command_wall_s": round(command_s, 2),
        "train_wall_s": summary["wall_time_s"],
        "total_steps": summary["total_steps"],
        "test_success": summary["success_rate"],
        "test_success_ci": summary["success_ci"],
        "test_episodes": summary["n_episodes"],
        "reached_step": reached and reached["step"],
        "reached_wall_s": reached and reached["wall_time_s"],
        "within_budget": summary["success_rate"] >= TARGET and command_s <= budget_s,
        "curve": {
            "steps": [m["step"] for m in metrics],
            "wall_s": [m["wall_time_s"] for m in metrics],
            "success": [m["success_rate"] for m in metrics],
        },
    }


def run_compare(budget_s: float, seed: int) -> dict:
    """The default PPO config for the default total steps, on the batched VecEnv and on
    DummyVecEnv over single envs; steps/s over the whole run, time to the target from its curve."""
    config = TrainConfig()
    torch.set_num_threads(config.torch_threads)
    every = config.ppo.n_steps * config.n_envs
    curves = {}
    for name, make_env in (("batched", batched_env), ("per_env", per_env_env)):
        env = make_env(config.n_envs, seed)
        curves[name] = learn_until(
            env, config.ppo, seed, name, budget_s, config.total_steps, every, stop=False
        )
    rates = {k: c.steps[-1] / c.wall_s[-1] for k, c in curves.items()}
    return {
        "n_envs": config.n_envs,
        "total_steps": config.total_steps,
        "ppo": dataclasses.asdict(config.ppo),
        "steps_per_s": {k: round(v) for k, v in rates.items()},
        "ratio": round(rates["batched"] / rates["per_env"], 2),
        "curves": {k: c.to_dict() for k, c in curves.items()},
    }


#: Round 1: one factor at a time around a first guess.
ROUND1_BASE = {
    "n_envs": 32,
    "n_steps": 64,
    "batch_size": 512,
    "n_epochs": 4,
    "lr": 1e-3,
    "threads": 1,
}
ROUND1_AXES = {
    "n_envs": [16, 64],
    "n_steps": [32, 128],
    "batch_size": [256, 1024, 2048],
    "n_epochs": [2, 10],
    "lr": [3e-4, 3e-3],
    "threads": [2],
}
#: Round 2: round 1 said "more updates per sample" (higher lr, smaller batches, more epochs);
#: combine those around the best round-1 point (lr 3e-3).
ROUND2_BASE = {**ROUND1_BASE, "lr": 3e-3}
ROUND2_CHANGES = [
    {},
    {"batch_size": 256},
    {"n_epochs": 8},
    {"batch_size": 256, "n_epochs": 8},
    {"batch_size": 128},
    {"lr": 1e-2},
    {"batch_size": 256, "n_envs": 16},
    {"batch_size": 256, "n_envs": 64},
    {"batch_size": 256, "n_steps": 32},
]

#: Round 3: round 2's winners spend most of their wall time in PPO updates (8 epochs of
#: minibatches); cheaper updates per env step (more envs, bigger minibatches, 4 epochs) at a
#: higher learning rate, traded against the extra env steps they need.
ROUND3_CHANGES = [
    {"n_envs": 32, "n_steps": 64, "batch_size": 1024},
    {"n_envs": 64, "n_steps": 32, "batch_size": 1024},
    {"n_envs": 64, "n_steps": 64, "batch_size": 1024},
    {"n_envs": 64, "n_steps": 32, "batch_size": 1024, "lr": 1e-2},
    {"n_envs": 64, "n_steps": 64, "batch_size": 2048, "lr": 1e-2},
    {"n_envs": 128, "n_steps": 32, "batch_size": 2048},
    {"n_envs": 128, "n_steps": 32, "batch_size": 2048, "lr": 1e-2},
]

#: Round 4: around round 3's best (64 envs x 32 steps, minibatch 1024, lr 1e-2), fewer epochs
#: or more envs: the PPO update is then a smaller share of each env step.
ROUND4_BASE = {**ROUND2_BASE, "n_envs": 64, "n_steps": 32, "batch_size": 1024, "lr": 1e-2}
ROUND4_CHANGES = [
    {},
    {"n_epochs": 3},
    {"n_epochs": 2},
    {"n_epochs": 2, "batch_size": 512},
    {"n_envs": 128, "n_steps": 16},
    {"n_envs": 128, "n_steps": 16, "n_epochs": 2},
]


def sweep_points(rounds: list[int]) -> list[dict]:
    points = []
    if 1 in rounds:
        points.append({"round": 1, **ROUND1_BASE})
        for axis, values in ROUND1_AXES.items():
            points += [{"round": 1, **ROUND1_BASE, axis: v} for v in values]
    if 2 in rounds:
        points += [{"round": 2, **ROUND2_BASE, **change} for change in ROUND2_CHANGES]
    if 3 in rounds:
        points += [{"round": 3, **ROUND2_BASE, **change} for change in ROUND3_CHANGES]
    if 4 in rounds:
        points += [{"round": 4, **ROUND4_BASE, **change} for change in ROUND4_CHANGES]
    return points


def run_sweep(rounds: list[int], seeds: list[int], budget_s: float, max_steps: int) -> list[dict]:
    rows = []
    for point in sweep_points(rounds):
        if point["batch_size"] > point["n_steps"] * point["n_envs"]:
            continue
        torch.set_num_threads(point["threads"])
        ppo = PPOConfig(
            learning_rate=point["lr"],
            n_steps=point["n_steps"],
            batch_size=point["batch_size"],
            n_epochs=point["n_epochs"],
        )
        runs = []
        for seed in seeds:
            env = batched_env(point["n_envs"], seed)
            every = point["n_steps"] * point["n_envs"]
            curve = learn_until(env, ppo, seed, "sweep", budget_s, max_steps, every)
            runs.append({"seed": seed, "steps": curve.reached_step, "wall_s": curve.reached_wall_s})
            print(point, runs[-1], flush=True)
        rows.append({**point, "runs": runs})
    return rows


# ---------------------------------------------------------------------------------------------


def run_info() -> dict:
    """Date, exact command and machine (load average at the start included)."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.orig_argv),
        "machine": common.machine_info(),
    }


def _fmt(value, unit: str = "") -> str:
    return "not reached within budget" if value is None else f"{value}{unit}"


def write_report(results: dict, out: Path) -> None:
    atomic_write_json(out / "teacher.json", results)
    lines = [
        "# Teacher benchmark",
        "",
        f"- date: {results['date']}",
        f"- command: `{results['command']}`",
        f"- machine: `{json.dumps(results['machine'])}`",
        "",
    ]
    if "default" in results:
        d = results["default"]
        lo, hi = d["test_success_ci"]
        lines += [
            "## Default run",
            "",
            f"`{d['command']}`: test success {d['test_success']:.3f} (95% CI {lo:.3f}-{hi:.3f}, "
            f"{d['test_episodes']} held-out episodes) after {d['total_steps']:,} steps; command "
            f"wall time {d['command_wall_s']} s (training {d['train_wall_s']} s). Validation "
            f"success first >= {TARGET} at step {_fmt(d['reached_step'])}, "
            f"{_fmt(d['reached_wall_s'], ' s')} into training. Target (>= {TARGET} within "
            f"{results['budget_s']} s): {'met' if d['within_budget'] else 'NOT met'}.",
            "",
        ]
    if "compare" in results:
        c = results["compare"]
        b, p = c["curves"]["batched"], c["curves"]["per_env"]
        lines += [
            "## Batched VecEnv vs per-env stepping (SB3 PPO, same config and seeds)",
            "",
            "| env | steps/s (end to end) | steps to 0.97 | wall to 0.97 |",
            "|---|---|---|---|",
            f"| GridWorldVecEnv (batched) | {c['steps_per_s']['batched']:,} | "
            f"{_fmt(b['reached_step'])} | {_fmt(b['reached_wall_s'], ' s')} |",
            f"| DummyVecEnv([GridWorldEnv] * {c['n_envs']}) | {c['steps_per_s']['per_env']:,} | "
            f"{_fmt(p['reached_step'])} | {_fmt(p['reached_wall_s'], ' s')} |",
            "",
            f"Ratio (batched / per-env steps/s): **{c['ratio']}x**, over {c['total_steps']:,} "
            f"steps each (the default run's length; wall budget {results['budget_s']} s each). "
            "Evaluation time is excluded from both; the two see identical trajectories.",
            "",
        ]
    lines += ["![success vs wall time](teacher.png)", ""]
    atomic_write_bytes(out / "teacher.md", "\n".join(lines).encode())
    plot(results, out / "teacher.png")


def plot(results: dict, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curves = dict(results.get("compare", {}).get("curves", {}))
    if "default" in results:
        curves["default run (incl. eval)"] = results["default"]["curve"]
    for name, c in curves.items():
        ax.plot(c["wall_s"], c["success"], marker=".", label=name)
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel("validation success (500 episodes)")
    ax.set_title("PPO teacher on the 8x8 grid world")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_sweep(rows: list[dict], info: dict, out: Path) -> None:
    atomic_write_json(out / "teacher_sweep.json", {**info, "target": TARGET, "rows": rows})
    lines = [
        f"| round | n_envs | n_steps | batch | epochs | lr | threads | steps to {TARGET} (per seed) | "
        "median wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = ", ".join(_fmt(x["steps"]) for x in r["runs"])
        walls = [x["wall_s"] for x in r["runs"] if x["wall_s"] is not None]
        median = f"{np.median(walls):.1f}" if len(walls) == len(r["runs"]) else "-"
        lines.append(
            f"| {r['round']} | {r['n_envs']} | {r['n_steps']} | {r['batch_size']} | {r['n_epochs']} | "
            f"{r['lr']:g} | {r['threads']} | {steps} | {median} |"
        )
    atomic_write_bytes(out / "teacher_sweep.md", ("\n".join(lines) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["default", "compare"],
                        choices=["default", "compare", "sweep"])  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=90.0, help="wall budget per training")
    parser.add_argument("--max-steps", type=int, default=400_000, help="step cap per training")
    parser.add_argument("--eval-every", type=int, default=2_048, help="default run: eval period")
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 2, 3, 4], help="sweep rounds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sweep seeds")
    parser.add_argument("--seed", type=int, default=0, help="comparison seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    info = run_info()
    if "sweep" in args.parts:
        rows = run_sweep(args.rounds, args.seeds, args.budget_s, args.max_steps)
        write_sweep(rows, info, args.out)
    results: dict = {**info, "target": TARGET, "budget_s": args.budget_s}
    if "default" in args.parts:
        results["default"] = run_default(args.budget_s, args.eval_every)
    if "compare" in args.parts:
        results["compare"] = run_compare(args.budget_s, args.seed)
    if "default" in results or "compare" in results:
        write_report(results, args.out)
        print((args.out / "teacher.md").read_text())


if __name__ == "__main__":
    main()
