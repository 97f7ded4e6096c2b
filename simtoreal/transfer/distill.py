"""Adapter training: distil the teacher's view of the state into a CNN that sees frames.

The student is a :class:`~simtoreal.core.Stack` of ``adapter`` (trainable) and the teacher's
``head`` (frozen). Targets come from the frozen teacher: its encoder's latent for the latent loss,
its action distribution through the same head for the action loss. A state-estimating adapter
(:class:`~simtoreal.agents.estimator.GridStateEstimator`) sits under a frozen ``encoder`` stage,
a copy of the teacher's, and also learns from the privileged state itself (the state loss).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from simtoreal.agents.adapter import CnnStateAdapter, frames_to_tensor
from simtoreal.agents.estimator import GridStateEstimator
from simtoreal.agents.surgery import PolicyHead
from simtoreal.agents.vector_estimator import VectorStateEstimator
from simtoreal.core import Stack, Stage, TrainRule
from simtoreal.errors import IncompatibleError
from simtoreal.transfer.augment import apply_augmentations, check_augmentations
from simtoreal.transfer.data import PairedData
from simtoreal.transfer.heads import TeacherHead, teacher_head

_CHUNK = 1024  # inference batch


class Distiller:
    """Trains ``adapter`` so that ``head(adapter(frame))`` acts like ``head(encoder(state))``.

    Args:
        teacher: The trained teacher model: PPO or A2C (a shared features extractor), SAC, TD3
            or DQN; its kind (:mod:`simtoreal.transfer.heads`) supplies labels, action loss
            and actions.
        adapter: The CNN adapter to train; its latent size is the teacher's.
        loss: ``"latent"``, ``"action"`` or ``"both"``.
        latent_weight, action_weight: Weights of the two terms in ``"both"``.
        state_weight: Weight of the state loss of a state-estimating adapter (always on).
        action_loss: The teacher kind's action loss (:mod:`simtoreal.transfer.heads`; ``"auto"``
            is the kind's default).
        augment: Names of frame augmentations applied to every training batch
            (:mod:`simtoreal.transfer.augment`), drawn from a generator seeded by ``seed``.
    """

    def __init__(
        self,
        teacher: BaseAlgorithm,
        adapter: CnnStateAdapter | GridStateEstimator,
        loss: str = "both",
        latent_weight: float = 1.0,
        action_weight: float = 1.0,
        device: str | torch.device = "cpu",
        augment: Sequence[str] = (),
        seed: int = 0,
        state_weight: float = 1.0,
        action_loss: str = "auto",
    ) -> None:
        # refuses a teacher it cannot label for, or an action loss its kind does not have
        self.kind: TeacherHead = teacher_head(teacher).use_loss(action_loss)
        self.device = torch.device(device)
        self.encoder = teacher.policy.features_extractor
        self.encoder, self.head = self.kind.encoder, self.kind.head
        # channels_last: frames arrive as NHWC memory already, and oneDNN convolutions run
        # about 1.3x faster on it on a CPU (benchmarks/results/transfer.md).
        adapter = adapter.to(memory_format=torch.channels_last)
        self.estimates_state = isinstance(adapter, GridStateEstimator | VectorStateEstimator)
        stages = [Stage("adapter", adapter, TrainRule.trainable())]
        if self.estimates_state:
            stages.append(Stage("encoder", copy.deepcopy(self.encoder), TrainRule.frozen()))
        self.student = Stack([*stages, Stage("head", self.head, TrainRule.frozen())]).to(
            self.device
        )
        self.encoder.to(self.device).requires_grad_(False).eval()
        self.student.apply_rules()
        self.weights = {
            "latent": latent_weight if loss in ("latent", "both") else 0.0,
            "action": action_weight if loss in ("action", "both") else 0.0,
            "state": state_weight if self.estimates_state else 0.0,
        }
        check_augmentations(augment)
        self.augment = tuple(augment)
        self.augment_gen = torch.Generator(device=self.device).manual_seed(seed)
        self.seen = 0  # training samples processed
        self.latent_scale: torch.Tensor | None = None  # per-dim std of the teacher's latents

    @property
    def adapter(self) -> CnnStateAdapter | GridStateEstimator:
        return self.student["adapter"]

    def latent_of(self, images: torch.Tensor) -> torch.Tensor:
        """The student's latent of a batch of frames (float, channel-first, in [0, 1])."""
        if self.estimates_state:
            return self.student["encoder"](self.adapter(images))
        return self.adapter(images)

    @torch.no_grad()
    def labels(self, states: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher latent and head output of each state (logits, Gaussian mean, SAC's mean and
        log-std, TD3's action or Q-values). Shapes: (M, latent), (M, out)."""
        latents, logits = [], []
        for i in range(0, len(states), 8 * _CHUNK):
            z = self.encoder(torch.as_tensor(states[i : i + 8 * _CHUNK], device=self.device))
            latents.append(z)
            logits.append(self.head(z))
        return torch.cat(latents), torch.cat(logits)

    def loss(self, images: torch.Tensor, latent: torch.Tensor, logits: torch.Tensor, states=None):
        """Weighted loss of one batch and its parts (floats, for logging)."""
        parts = {}
        total = torch.zeros((), device=self.device)
        if self.estimates_state:
            estimate = self.adapter.estimate(images)
            parts["state"] = self.adapter.state_loss(estimate, states)
            total = total + self.weights["state"] * parts["state"]
            z = self.student["encoder"](self.adapter.to_state(estimate))
        else:
            z = self.adapter(images)
        if self.weights["latent"]:
            # MSE in units of the latent's spread (1 - R^2 pooled over dims), so the loss reads the
            # same whatever the teacher's latent scale.
            parts["latent_mse"] = (((z - latent) / self.latent_scale) ** 2).mean()
            total = total + self.weights["latent"] * parts["latent_mse"]
        if self.weights["action"]:
            parts["action_kl"] = self.kind.action_loss(self.head(z), logits)
            total = total + self.weights["action"] * parts["action_kl"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def fit(
        self,
        data: PairedData,
        epochs: int,
        optimizer: torch.optim.Optimizer,
        batch_size: int = 256,
        seed: int = 0,
        deadline: float | None = None,
        on_batch: Callable[[dict], None] | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        start: tuple[int, int] = (0, 0),
        on_position: Callable[[int, int], None] | None = None,
        draws: Callable[[int], int] | None = None,
    ) -> dict:
        """Train on ``data`` for ``epochs`` passes (or until ``time.perf_counter() > deadline``).

        ``draws(epoch)`` names the appearance draw of each epoch's frames when ``data`` renders
        them (:meth:`PairedData.frames`): a new draw per epoch gives fresh randomisation of the
        same states. None keeps the frames seen at collection time.

        ``start=(epoch, batch)`` skips what a resumed run already trained on: the shuffles are
        drawn from ``seed`` exactly as in the first run. ``on_position(epoch, batch)`` is called
        after every batch with the position of the next one (a checkpoint hook).
        Returns the mean loss parts of the last epoch.
        """
        data.check_nonempty()
        latent, logits = self.labels(data.states)
        if self.latent_scale is None:  # the first fit: statistics of the training labels
            self.latent_scale = latent.var(0).mean().sqrt().clamp_min(1e-6)
            self.kind.prepare(logits)
            if isinstance(self.adapter, VectorStateEstimator):
                self.adapter.set_standardisation(torch.as_tensor(data.states, device=self.device))
        gen = np.random.default_rng(seed)
        self.student.train()
        last: dict[str, list[float]] = {}
        for epoch in range(epochs):
            order = gen.permutation(len(data))
            if epoch < start[0]:
                continue
            last = {}
            starts = range(0, max(len(order) - batch_size + 1, 1), batch_size)
            first = start[1] if epoch == start[0] else 0
            draw = draws(epoch) if draws is not None and data.renders else 0
            for b, i in enumerate(starts):
                if b < first:
                    continue
                idx = np.sort(order[i : i + batch_size])
                states = torch.as_tensor(data.states[idx], device=self.device)
                parts = self._step(
                    data.frames(idx, draw), latent[idx], logits[idx], states, optimizer
                )
                if scheduler is not None:
                    scheduler.step()
                self.seen += len(idx)
                for k, v in parts.items():
                    last.setdefault(k, []).append(v)
                if on_batch is not None:
                    on_batch({**parts, "samples": self.seen})
                if on_position is not None:
                    done = b + 1 == len(starts)
                    on_position(epoch + done, 0 if done else b + 1)
                if deadline is not None and time.perf_counter() > deadline:
                    return {k: float(np.mean(v)) for k, v in last.items()}
        return {k: float(np.mean(v)) for k, v in last.items()}

    def _step(self, images: np.ndarray, latent, logits, states, optimizer) -> dict[str, float]:
        """One optimiser step on a batch of uint8 frames; returns the loss and its parts."""
        x = frames_to_tensor(images, self.device)
        if self.augment:
            x = apply_augmentations(x, self.augment, self.augment_gen)
        total, parts = self.loss(x, latent, logits, states)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return {"loss": float(total.detach()), **parts}

    @torch.no_grad()
    def student_logits(self, images: np.ndarray) -> torch.Tensor:
        self.student.eval()
        out = [
            self.student(frames_to_tensor(images[i : i + _CHUNK], self.device))
            for i in range(0, len(images), _CHUNK)
        ]
        return torch.cat(out)

    def student_act(self, images: np.ndarray) -> np.ndarray:
        """Greedy actions of the student from frames (B, H, W, C) uint8."""
        return self.kind.act(self.student_logits(images))

    def teacher_act(self, states: np.ndarray) -> np.ndarray:
        """Greedy actions of the teacher from states (B, state_dim)."""
        return self.kind.act(self.labels(states)[1])

    @torch.no_grad()
    def agreement(self, data: PairedData) -> dict:
        """Latent R^2 and greedy action agreement of student vs teacher on held-out pairs."""
        self.student.eval()
        latent, logits = self.labels(data.states)
        z = torch.cat(
            [
                self.latent_of(frames_to_tensor(data.frames(slice(i, i + _CHUNK)), self.device))
                for i in range(0, len(data), _CHUNK)
            ]
        )
        sse = ((z - latent) ** 2).sum()
        sst = ((latent - latent.mean(0)) ** 2).sum()
        agree = self.kind.agreement(self.head(z), logits)
        return {"latent_r2": float(1 - sse / sst), "action_agreement": float(agree)}


def check_teacher(teacher: BaseAlgorithm) -> None:
    """Refuse a grid-world teacher the grid recipe cannot carry: it needs a categorical
    (Discrete-action) actor-critic policy whose head sits on a shared features extractor (the
    student is built by policy surgery). Teachers of ``train gym`` go through gym_pipeline."""
    space = teacher.action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise IncompatibleError(
            f"the teacher acts in {space}: transfer distils a categorical policy over Discrete "
            "actions, and continuous-action (Gaussian) teachers are not supported yet. Train the "
            "teacher on a Discrete action space (PPO or A2C), e.g. python -m simtoreal.train grid."
        )
    PolicyHead(teacher.policy)  # refuses DQN and policies without a shared extractor


def linear_decay(optimizer: torch.optim.Optimizer, total_updates: int, warmup: int = 50):
    """Linear warm-up, then linear decay to 0 at ``total_updates``: for a fixed budget of updates
    this reaches a lower loss than a constant learning rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, 1.0 - (step - warmup) / max(1, total_updates - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
