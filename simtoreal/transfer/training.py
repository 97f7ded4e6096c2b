"""Adapter training with a frame budget: offline pairs, then DAgger rounds, with atomic
checkpoints so that a killed run resumes where it stopped.

Training runs in *phases*: phase 0 trains on the offline data, phase ``r + 1`` collects DAgger
round ``r`` and trains on the aggregate. Where the pairs come from is a :class:`FrameSource`:
:class:`GridSource` for the grid world (frames kept as world states and rendered per minibatch,
each epoch under a fresh appearance draw when ``fresh_appearance`` is on), and
:class:`~simtoreal.transfer.gym_pipeline.GymSource` for any other Gymnasium env (rendered frames
from subprocess envs). Nothing of the data is checkpointed: every source collects
deterministically, so the offline data is recollected from its seed, and each DAgger round from
the adapter weights it started with (kept in the checkpoint), which gives the same pairs again.
A checkpoint holds the adapter, the optimiser and scheduler, the position
``(phase, epoch, batch)``, the label statistics and the wall time spent.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from simtoreal import seeds
from simtoreal.errors import CheckpointError
from simtoreal.runs import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_jsonl,
    prepare_run_dir,
)
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import PairedData, collect, mixed_actor, paired_batch, random_actor
from simtoreal.transfer.distill import Distiller, linear_decay

CHECKPOINT_FILE = "checkpoint.pt"
DONE = -1  # phase of a checkpoint written after the last phase


@dataclass
class Position:
    """Where training stands: the next batch to train on."""

    phase: int = 0
    epoch: int = 0
    batch: int = 0
    elapsed_s: float = 0.0
    """Training wall time spent before this position (over all processes of the run)."""


@dataclass
class Plan:
    """The frame budget split into offline and DAgger data, from a config."""

    n_offline: int
    n_dagger: int
    rounds: int

    @classmethod
    def of(cls, cfg: TransferConfig) -> Plan:
        n_dagger = int(cfg.frames * cfg.dagger_share) if cfg.dagger_rounds else 0
        rounds = cfg.dagger_rounds if n_dagger else 0
        return cls(cfg.frames - n_dagger, n_dagger, rounds)

    @property
    def frames(self) -> int:
        """Frames rendered for training in all (each round collects an equal share)."""
        return self.n_offline + (self.n_dagger // self.rounds * self.rounds if self.rounds else 0)

    def updates(self, cfg: TransferConfig) -> int:
        """Optimiser steps of the whole schedule, so the learning rate decays to zero at the end."""
        steps = cfg.epochs * max(self.n_offline // cfg.batch_size, 1)
        for r in range(self.rounds):
            size = self.n_offline + self.n_dagger * (r + 1) // self.rounds
            steps += cfg.dagger_epochs * max(size // cfg.batch_size, 1)
        return steps


class FrameSource(Protocol):
    """Where a run's training pairs come from. Both methods must be deterministic given the run's
    seed and the distiller's weights: a resumed run collects them again instead of loading them."""

    def offline(self, n: int, progress: Callable[[int], None]) -> PairedData:
        """The offline pairs (phase 0)."""
        ...

    def dagger(self, r: int, n: int, progress: Callable[[int], None]) -> PairedData:
        """DAgger round ``r``'s pairs, the student acting with the distiller's current weights."""
        ...

    def close(self) -> None: ...


class GridSource:
    """The grid world's pairs: a random walk offline, then DAgger (the student acts with
    probability ``1 - beta``, beta halving each round), on a batched world in this process."""

    def __init__(self, distiller: Distiller, world: dict, cfg: TransferConfig) -> None:
        self.distiller, self.cfg = distiller, cfg
        self.batch = paired_batch(
            {**world, "frame_stack": cfg.frame_stack}, cfg.num_envs, cfg.train_domain
        )

    def offline(self, n: int, progress: Callable[[int], None]) -> PairedData:
        cfg = self.cfg
        actor = random_actor(np.random.default_rng([cfg.seed, 0]))
        return collect(
            self.batch, n, actor, seeds.stream(cfg.seed, "adapter", cfg.num_envs), progress
        )

    def dagger(self, r: int, n: int, progress: Callable[[int], None]) -> PairedData:
        cfg, distiller = self.cfg, self.distiller
        beta = cfg.dagger_beta * 0.5**r
        gen = np.random.default_rng([cfg.seed, r + 1])
        actor = mixed_actor(distiller.teacher_act, distiller.student_act, beta, gen)
        first = seeds.stream(cfg.seed, "dagger", cfg.num_envs, r)
        return collect(self.batch, n, actor, first, progress)

    def close(self) -> None:
        pass


def open_run_dir(cfg: TransferConfig, resume: bool) -> Path:
    """The run directory of a transfer: ``cfg.run_dir`` as it is when resuming, else new (or
    replaced with ``cfg.overwrite``, a teacher inside it kept) with the config saved."""
    if resume:
        return prepare_run_dir(cfg.run_dir, resume=True)
    return prepare_run_dir(
        cfg.run_dir,
        overwrite=cfg.overwrite,
        keep=(cfg.teacher,) if cfg.teacher else (),
        config={"kind": "transfer", **cfg.to_dict()},
    )


class Trainer:
    """Runs the phases of one transfer run's adapter training, checkpointing as it goes."""

    def __init__(
        self, distiller: Distiller, source: FrameSource, cfg: TransferConfig, run_dir: Path
    ) -> None:
        self.distiller, self.source, self.cfg, self.run_dir = distiller, source, cfg, run_dir
        self.plan = Plan.of(cfg)
        self.optimizer = distiller.student.make_optimizer(cfg.lr, fused=True)
        self.scheduler = linear_decay(self.optimizer, self.plan.updates(cfg))
        self.collect_s = 0.0
        self.round_starts: list[dict[str, torch.Tensor]] = []
        self.position = Position()
        self.lines = False
        self._last_save = time.perf_counter()

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self, position: Position) -> None:
        """Write the checkpoint atomically (one file, loaded back with ``weights_only=True``)."""
        state = {
            "adapter": self.distiller.adapter.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "position": asdict(position),
            "latent_scale": self.distiller.latent_scale,
            "kind": self.distiller.kind.state(),
            "seen": self.distiller.seen,
            "round_starts": self.round_starts,
            "augment_rng": self.distiller.augment_gen.get_state(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.run_dir / CHECKPOINT_FILE, buffer.getvalue())
        self._last_save = time.perf_counter()

    def restore(self) -> bool:
        """Load the run's checkpoint if there is one; True when one was loaded."""
        path = self.run_dir / CHECKPOINT_FILE
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.distiller.device, weights_only=True)
            self.distiller.adapter.load_state_dict(state["adapter"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, EOFError, ValueError) as err:
            raise CheckpointError(
                f"cannot resume from {path} ({type(err).__name__}: {err}): the checkpoint is "
                "damaged or from another configuration; start again with --overwrite."
            ) from err
        self.position = Position(**state["position"])
        self.distiller.latent_scale = state["latent_scale"]
        self.distiller.kind.load_state(state.get("kind", {}))
        self.distiller.seen = int(state["seen"])
        self.round_starts = list(state["round_starts"])
        self.distiller.augment_gen.set_state(state["augment_rng"].cpu())
        drop_metrics_after(self.run_dir / "metrics.jsonl", self.distiller.seen)
        return True

    # -- the phases -----------------------------------------------------------------------------

    def run(self, writer: SummaryWriter | None = None) -> dict:
        """Train from the current position to the end of the budget; return the train summary.
        The source's envs are closed on the way out, whatever happens."""
        start = time.perf_counter() - self.position.elapsed_s
        deadline = start + self.cfg.max_train_seconds if self.cfg.max_train_seconds else None
        bar = tqdm(total=self.cfg.frames, desc="frames", unit="fr", leave=False, disable=None)
        self.lines = bool(bar.disable)  # no bar (not a terminal): print progress lines instead
        try:
            data, last = self._phases(_Progress(bar, self.cfg.frames), start, deadline, writer)
        finally:
            self.source.close()
            bar.close()
        return {
            "frames": self.plan.frames if data is None else len(data),
            "samples": self.distiller.seen,
            "wall_time_s": time.perf_counter() - start,
            "collect_s": self.collect_s,
            "last_loss": last,
            "dagger_rounds": self.plan.rounds,
            "stopped_by_deadline": bool(deadline and time.perf_counter() > deadline),
            "resumed": self.position != Position(),
        }

    def _phases(self, progress, start: float, deadline: float | None, writer):
        """The phases from the current position; returns the last data and the last losses."""
        plan, pos = self.plan, self.position
        if pos.phase == DONE:
            return None, {}
        last: dict = {}
        data = self._timed(self.source.offline, plan.n_offline, progress)
        for r in range(plan.rounds):
            if r < pos.phase - 1:  # a finished round: collect its frames again
                data = data.concat(self._collect_round(r, progress))
        for phase in range(pos.phase, plan.rounds + 1):
            if phase > 0:
                if phase > pos.phase:  # a new round: keep the weights it starts from
                    self.round_starts.append(_clone(self.distiller.adapter.state_dict()))
                    self.save(Position(phase, 0, 0, time.perf_counter() - start))
                data = data.concat(self._collect_round(phase - 1, progress))
            first = (pos.epoch, pos.batch) if phase == pos.phase else (0, 0)
            last = self._train_phase(phase, data, first, start, deadline, writer)
            if deadline is not None and time.perf_counter() > deadline:
                break
        self.save(Position(DONE, 0, 0, time.perf_counter() - start))
        return data, last

    def _collect_round(self, r: int, progress: Callable[[int], None]) -> PairedData:
        """DAgger round ``r``'s frames, collected with the adapter weights the round started from."""
        distiller = self.distiller
        current = _clone(distiller.adapter.state_dict())
        distiller.adapter.load_state_dict(self.round_starts[r])
        data = self._timed(self.source.dagger, r, self.plan.n_dagger // self.plan.rounds, progress)
        distiller.adapter.load_state_dict(current)
        return data

    def _timed(self, collect_fn: Callable[..., PairedData], *args) -> PairedData:
        """``collect_fn(*args)``, its wall time added to ``collect_s`` (this process's share)."""
        t = time.perf_counter()
        data = collect_fn(*args)
        self.collect_s += time.perf_counter() - t
        return data

    def _train_phase(self, phase, data, first, start, deadline, writer) -> dict:
        cfg = self.cfg
        stage = "offline" if phase == 0 else f"dagger{phase - 1}"
        epochs = cfg.epochs if phase == 0 else cfg.dagger_epochs
        shuffle = [cfg.seed, 1_000 + phase]  # the minibatch order of this phase

        def on_position(epoch: int, batch: int) -> None:
            if time.perf_counter() - self._last_save >= cfg.checkpoint_seconds:
                self.save(Position(phase, epoch, batch, time.perf_counter() - start))

        return self.distiller.fit(
            data,
            epochs,
            self.optimizer,
            cfg.batch_size,
            shuffle,
            deadline,
            _metrics_logger(
                self.run_dir / "metrics.jsonl", stage, start, self.optimizer, writer, self.lines
            ),
            self.scheduler,
            start=first,
            on_position=on_position,
            draws=(lambda epoch: phase * 1_000 + epoch) if cfg.fresh_appearance else None,
        )


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


class _Progress:
    """Progress of data collection: the tqdm bar on a terminal, else a line every 10%."""

    def __init__(self, bar: tqdm, total: int) -> None:
        self.bar, self.total, self.done, self.next_line = bar, total, 0, 0.1

    def __call__(self, n: int) -> None:
        n = min(n, self.total - self.done)  # the last step of a batch may overshoot the budget
        self.bar.update(n)
        self.done += n
        if self.bar.disable and self.done >= self.next_line * self.total:
            print(f"frames collected: {self.done:,} / {self.total:,}", flush=True)
            self.next_line += 0.1


def _metrics_logger(path: Path, stage: str, start: float, optimizer, writer, lines: bool):
    """``on_batch`` hook: the first batch of each stage, then every 25th, to metrics.jsonl and
    TensorBoard, and as a printed line when ``lines`` (no progress bar: output is not a tty)."""
    batches = iter(range(1 << 62))

    def on_batch(rec: dict) -> None:
        if next(batches) % 25:
            return
        lr = optimizer.param_groups[0]["lr"]
        t = time.perf_counter() - start
        append_jsonl(path, {"stage": stage, "t": t, "lr": lr, **rec})
        if lines:
            print(
                f"{stage}: {rec['samples']:,} samples, loss {rec['loss']:.4f}, {t:.0f} s",
                flush=True,
            )
        if writer is not None:
            for k, v in rec.items():
                if k != "samples":
                    writer.add_scalar(f"adapter/{k}", v, rec["samples"])
            writer.add_scalar("adapter/lr", lr, rec["samples"])

    return on_batch


def drop_metrics_after(path: Path, samples: int) -> None:
    """Drop metric lines logged after the checkpoint a run resumes from."""
    from simtoreal.runs import read_jsonl

    records = read_jsonl(path)
    kept = [r for r in records if r.get("samples", 0) <= samples]
    if len(kept) != len(records):
        atomic_write_jsonl(path, kept)
