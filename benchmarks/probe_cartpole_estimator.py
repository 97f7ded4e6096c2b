"""Where a third-party env's state estimator errs, per state entry and frame domain, and which
estimator variant errs less: the probe behind CartPole's ``channels`` preset (docs/transfer.md,
"CartPole").

One set of training pairs (the transfer's offline data: the teacher drives, half of its actions
random) and one held-out on-policy set per frame domain are collected once into ``--work``. Each
variant then trains an estimator on the same pairs (the transfer's loss, augmentation, optimiser
and schedule, offline phase only: no DAgger) and reports the RMS error of each state entry on
the held-out sets and the student's return in each domain (``--eval-episodes`` per domain)::

    python benchmarks/probe_cartpole_estimator.py --teacher RUN_DIR base
    python benchmarks/probe_cartpole_estimator.py --teacher RUN_DIR wide --channels 32 32 32
    python benchmarks/probe_cartpole_estimator.py --teacher RUN_DIR norm --norm

Variants (all beside the env's transfer preset): ``--channels`` (trunk widths; the last is the
number of keypoints), ``--norm`` (each frame's channels standardised over the image before the
trunk), ``--per-frame`` (one trunk per stacked frame, keypoints concatenated), ``--groupnorm G``
(GroupNorm with G groups after each hidden conv), ``--weights``
(weights of the state entries in the state loss), ``--augment`` (training augmentations besides
``randomized``'s appearance). Results: ``<work>/probe-<name>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from simtoreal.agents.vector_estimator import VectorStateEstimator
from simtoreal.transfer import gym_pipeline as gp
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import PairedData
from simtoreal.transfer.distill import linear_decay
from simtoreal.transfer.gym_data import collect_vector, vector_env
from simtoreal.transfer.presets import with_transfer_preset

DOMAINS = ("sim", "randomized", "validation", "real")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("name", help="name of the variant (the result file's)")
    p.add_argument("--teacher", type=Path, required=True, help="a train gym run directory")
    p.add_argument("--work", type=Path, default=Path("runs/probe"), help="data and results")
    p.add_argument("--frames", type=int, default=60_000, help="training pairs")
    p.add_argument("--held-out", type=int, default=4_000, help="held-out pairs per domain")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--eval-episodes", type=int, default=10, help="per domain (0: skip)")
    p.add_argument("--channels", type=int, nargs="+", default=None)
    p.add_argument("--norm", action="store_true")
    p.add_argument("--per-frame", action="store_true")
    p.add_argument(
        "--groupnorm", type=int, default=0, metavar="G", help="GroupNorm(G) after each hidden conv"
    )
    p.add_argument("--weights", type=float, nargs="+", default=None)
    p.add_argument("--augment", nargs="+", default=None, help="augmentations besides appearance")
    return p.parse_args()


def variant(args: argparse.Namespace) -> type[VectorStateEstimator]:
    """The estimator class of a variant (the preset's when no option is given)."""

    class Probe(VectorStateEstimator):
        def __init__(self, config):
            h, w, c = config.image_shape
            self.k = c // 3
            if args.per_frame:
                config = dataclasses.replace(config, image_shape=(h, w, 3))
            super().__init__(config)
            if args.per_frame:
                self.mlp[0] = torch.nn.Linear(2 * config.channels[-1] * self.k, config.hidden)
            if args.groupnorm:  # normalise each hidden conv's output per sample and group
                layers = list(self.trunk)
                for i in reversed(range(len(layers) - 1)):
                    if isinstance(layers[i], torch.nn.Conv2d):
                        norm = torch.nn.GroupNorm(args.groupnorm, layers[i].out_channels)
                        layers.insert(i + 1, norm)
                self.trunk = torch.nn.Sequential(*layers)

        def estimate(self, x):
            if args.norm:
                mean, std = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True)
                x = (x - mean) / (std + 0.05) * 0.5 + 0.5
            if not args.per_frame:
                return super().estimate(x)
            b, _, h, w = x.shape
            keypoints = self.keypoints(self.trunk(x.reshape(b * self.k, 3, h, w) * 2.0 - 1.0))
            return self.mlp(keypoints.reshape(b, -1))

        def state_loss(self, estimate, states):
            if args.weights is None:
                return super().state_loss(estimate, states)
            w = torch.tensor(args.weights)
            err = (estimate - (states - self.state_mean) / self.state_std) ** 2
            return (err * w / w.mean()).mean()

    return Probe


def collect(args, cfg, tcfg, distiller) -> None:
    """The training and held-out pairs, once per ``--work``."""
    if (args.work / "train.npz").is_file():
        return
    args.work.mkdir(parents=True, exist_ok=True)
    source = gp.GymSource(distiller, tcfg, cfg)
    data = source.offline(args.frames, lambda n: None)
    source.close()
    np.savez(args.work / "train.npz", states=data.states, images=data.frames(slice(None)))
    for domain in DOMAINS:
        envs = vector_env(gp.camera(cfg, tcfg.env_maker(), domain), 4)
        held = collect_vector(
            envs, args.held_out, lambda o: distiller.teacher_act(o["state"]), 10_000
        )
        envs.close()
        np.savez(
            args.work / f"held_{domain}.npz", states=held.states, images=held.frames(slice(None))
        )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    teacher, tcfg = gp.load_gym_teacher(args.teacher)
    cfg = with_transfer_preset(
        TransferConfig(teacher=args.teacher, eval_episodes=max(args.eval_episodes, 1)), tcfg.env_id
    )
    if args.channels:
        cfg = dataclasses.replace(cfg, channels=tuple(args.channels))
    if args.augment is not None:
        cfg = dataclasses.replace(cfg, augment=tuple(args.augment))
    kind = gp.teacher_head(teacher)
    state_dim = int(np.prod(tcfg.observation_space.shape))
    with torch.random.fork_rng():  # the preset's architecture, without drawing its weights
        arch = gp.build_cnn(cfg, int(kind.encoder.features_dim), state_dim).config
    cnn = variant(args)(arch)
    distiller = gp.make_distiller(cfg, teacher, cnn, "cpu")
    collect(args, cfg, tcfg, distiller)
    stored = np.load(args.work / "train.npz")
    data = PairedData(stored["states"][: args.frames], stored["images"][: args.frames])
    optimizer = distiller.student.make_optimizer(cfg.lr, fused=True)
    scheduler = linear_decay(optimizer, args.epochs * len(data) // cfg.batch_size)
    start = time.perf_counter()
    last = distiller.fit(data, args.epochs, optimizer, cfg.batch_size, 0, scheduler=scheduler)
    out = {"name": args.name, "args": {k: str(v) for k, v in vars(args).items()}}
    out |= {"train_s": time.perf_counter() - start, "last_loss": last, "rmse": {}}
    print(f"trained in {out['train_s']:.0f} s: {last}")
    with torch.no_grad():
        distiller.student.eval()
        for domain in DOMAINS:
            held = np.load(args.work / f"held_{domain}.npz")
            x = torch.as_tensor(held["images"]).permute(0, 3, 1, 2).float() / 255
            est = torch.cat([distiller.adapter(x[i : i + 512]) for i in range(0, len(x), 512)])
            rmse = np.sqrt(((est.numpy() - held["states"]) ** 2).mean(0))
            out["rmse"][domain] = [round(float(e), 4) for e in rmse]
            print(f"{domain:>10}: RMS error per state entry {out['rmse'][domain]}")
    if args.eval_episodes:
        results = gp.evaluate_gym_transfer(teacher, distiller, tcfg, cfg)
        out["returns"] = {k: v["mean_return"] for k, v in results["student"].items()}
        out["returns"]["validation"] = results["validation"]["mean_return"]
        print(f"returns: {out['returns']}")
    (args.work / f"probe-{args.name}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
