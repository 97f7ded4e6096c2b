"""How precisely must a camera deliver a teacher's state? The teacher's return when Gaussian noise
is added to the state it acts on, before any adapter is trained.

A student built as ``estimator -> teacher`` can do no better than its teacher fed the estimator's
errors, so the noise a teacher tolerates is the precision the frames must deliver. Noise is
drawn per step and entry, with a standard deviation of ``f`` times that entry's spread over the
teacher's own episodes (so ``f`` means the same for a position and a velocity): first on every
entry at once, then on one entry at a time at ``f = 1``. The absolute standard deviations are in
the report, so they can be set against what a frame shows (docs/transfer.md does this for
CartPole: its pole angle moves about 0.03 pixels a step in a 64x64 frame).

    python benchmarks/bench_state_precision.py --teacher runs/teacher-CartPole-v1
    python benchmarks/bench_state_precision.py --teacher RUN_DIR --episodes 20 --out /tmp/p

Writes state_precision-<env>.md and .json to --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import machine_info, report_header, save_record

from simtoreal.agents.evaluate import evaluate_env
from simtoreal.agents.factory import load_teacher
from simtoreal.seeds import EVAL_SEED
from simtoreal.train.gym import load_config_of

FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--teacher", type=Path, required=True, help="a `train gym` run directory")
    p.add_argument("--episodes", type=int, default=20, help="test episodes per noise level")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args()


def noisy_return(model, maker, episodes: int, sigma: np.ndarray | None, seed: int, seen=None):
    """:func:`~simtoreal.agents.evaluate.evaluate_env` of ``model``'s greedy actions on test
    seeds, its state plus N(0, sigma^2) noise per step; the clean states it saw are appended to
    ``seen`` (one env at a time, so every state is one a step showed)."""
    noise = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        if seen is not None:
            seen.extend(obs)
        if sigma is not None:
            obs = obs + noise.normal(size=obs.shape) * sigma
        return model.predict(obs.astype(np.float32), deterministic=True)[0]

    return evaluate_env(act, maker, episodes, EVAL_SEED, "none", n_parallel=1)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model, _ = load_teacher(args.teacher)
    tcfg = load_config_of(args.teacher)
    maker = tcfg.env_maker()
    states: list[np.ndarray] = []
    clean = noisy_return(model, maker, args.episodes, None, 0, states)
    spread = np.asarray(states, np.float64).std(0)
    rows = [{"noise_on": "none", "f": 0.0, "sigma": [0.0] * len(spread), "result": clean}]
    for f in FRACTIONS[1:]:
        sigma = f * spread
        rows.append({"noise_on": "all", "f": f, "sigma": sigma.tolist(),
                     "result": noisy_return(model, maker, args.episodes, sigma, 1)})  # fmt: skip
    for i in range(len(spread)):
        sigma = np.zeros_like(spread)
        sigma[i] = spread[i]
        rows.append({"noise_on": f"entry {i}", "f": 1.0, "sigma": sigma.tolist(),
                     "result": noisy_return(model, maker, args.episodes, sigma, 2 + i)})  # fmt: skip
    name = tcfg.env_id.replace("/", "_")
    record = save_record(
        args.out / f"state_precision-{name}.json",
        machine_info(),
        env_id=tcfg.env_id,
        teacher=str(args.teacher),
        algo=tcfg.algo,
        episodes=args.episodes,
        spread=spread.tolist(),
        rows=[{**r, "result": r["result"].to_dict()} for r in rows],
    )
    lines = report_header(f"State precision a teacher needs: {tcfg.env_id} ({tcfg.algo})", record)
    lines += [
        f"Spread (standard deviation) of each state entry over the teacher's own {args.episodes} "
        f"test episodes: {', '.join(f'{s:.4g}' for s in spread)}. Noise sigma = f x spread, "
        "drawn per step and entry. Mean return and 95% interval over episodes (agents.evaluate).",
        "",
        "| noise on | f | sigma (absolute) | return (95% CI) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        mean, (lo, hi) = r["result"].mean_return, r["result"].return_ci
        sigma = ", ".join(f"{s:.3g}" for s in r["sigma"])
        lines.append(f"| {r['noise_on']} | {r['f']} | {sigma} | {mean:.1f} [{lo:.1f}, {hi:.1f}] |")
    (args.out / f"state_precision-{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
