"""Which part of a held-out frame domain breaks a third-party student: the student of a finished
transfer run (``python -m simtoreal.transfer --teacher ...``) evaluated in ``sim``, in the whole
domain and in each of the domain's shifts alone, on the domain's own episode seeds.

    python benchmarks/probe_domain_components.py RUN_DIR                  # validation
    python benchmarks/probe_domain_components.py RUN_DIR --domain real --episodes 20

The held-out domains are fixed combinations of shifts of the suite
(``simtoreal/transfer/frame_domains.py``); this script adds one domain per shift, each at the
severity the combination uses, and evaluates every domain in this process (one env at a time,
so the added domains need no subprocess to know them). Writes ``components-<domain>.json`` into
the run directory (or ``--out``) and prints each return. Run it on validation to choose, not on
``real``. Not :func:`simtoreal.transfer.robustness.shifted_policy`, which shifts what the policy
is handed: each stacked frame would get the newest step's noise, and the static draws would
follow the batch slot instead of the episode's seed; here each shift draws as inside the domain.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from simtoreal.agents.evaluate import evaluate_env
from simtoreal.runs import load_config
from simtoreal.seeds import EVAL_SEED, VAL_SEED
from simtoreal.transfer import frame_domains
from simtoreal.transfer import gym_pipeline as gp
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.pipeline import load_student


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finished third-party transfer run")
    p.add_argument("--domain", default="validation", choices=sorted(frame_domains.HELD_OUT))
    p.add_argument("--episodes", type=int, default=10, help="per domain")
    p.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/components-DOMAIN.json")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    cfg = TransferConfig.from_dict(load_config(args.run_dir), source=str(args.run_dir))
    _, tcfg = gp.load_gym_teacher(cfg.teacher)
    student = load_student(args.run_dir)
    shifts = frame_domains.HELD_OUT[args.domain]
    alone = {f"{name}@{severity}": ((name, severity),) for name, severity in shifts}
    frame_domains.HELD_OUT.update(alone)  # this process only: evaluated without subprocesses
    frame_domains.FRAME_DOMAINS = (*frame_domains.FRAME_DOMAINS, *alone)
    seed = VAL_SEED if args.domain == "validation" else EVAL_SEED

    def act(obs):
        return student.predict(obs, deterministic=True)[0]

    out = {"run_dir": str(args.run_dir), "domain": args.domain, "seed": seed, "returns": {}}
    start = time.perf_counter()
    for domain in ("sim", args.domain, *alone):
        maker = gp.camera(cfg, tcfg.env_maker(), domain, image_only=True)
        result = evaluate_env(act, maker, args.episodes, seed, tcfg.success_rule, 5, False)
        out["returns"][domain] = result.to_dict()
        print(f"{domain:>24}: return {result.mean_return:8.1f}", flush=True)
    out["wall_s"] = time.perf_counter() - start
    path = args.out or args.run_dir / f"components-{args.domain}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
