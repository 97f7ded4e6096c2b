"""Teacher kinds: what a frozen policy head outputs, the action loss a student is trained with,
and how that output becomes an action.

One small strategy per kind of SB3 teacher, so that the distiller stays one recipe:

============================  ===================================  ================================
teacher                       head output (labels)                 action loss (default first)
============================  ===================================  ================================
PPO / A2C, Discrete actions   logits of the categorical policy     ``kl``: KL(teacher || student)
PPO / A2C, Box actions        mean of the diagonal Gaussian        ``kl``: between the Gaussians
SAC                           pre-tanh mean and log-std            ``mse`` of the squashed mean
                                                                   action; ``kl`` between the
                                                                   pre-tanh Gaussians
TD3                           the deterministic action in [-1, 1]  ``mse`` on the action
DQN                           Q-values                             ``softmax``: KL of
                                                                   softmax(Q / temperature);
                                                                   ``mse`` on Q in units of its
                                                                   spread
============================  ===================================  ================================

``--action-loss`` picks among a kind's losses (``auto``: the first).

The PPO / A2C Gaussian's log-std is one state-independent parameter, frozen with the head, so the
KL between the teacher's and the student's Gaussians is the squared mean error weighted by
``1 / (2 sigma^2)``: for one action dimension (Pendulum) it *is* the MSE up to a constant, and a
mean / log-std loss would have nothing to learn in the log-std. docs/transfer.md ("Any Gymnasium
env") has the measurements behind the other choices.

Every strategy holds ``encoder`` (the teacher's state encoder that feeds the head: the policy's,
the actor's or the Q-network's features extractor) and ``head`` (the frozen part above it), both
sharing parameters with the teacher.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from simtoreal.agents.surgery import PolicyHead
from simtoreal.errors import ConfigError, IncompatibleError

#: SAC's clamp of the actor's log-std (stable_baselines3.sac.policies).
LOG_STD_MIN, LOG_STD_MAX = -20, 2


class TeacherHead:
    """A teacher kind: the frozen ``encoder`` and ``head`` of a teacher, its action loss and its
    actions. Subclasses set ``kind`` and ``losses`` (the names of their action losses, the
    default first; ``action_loss`` dispatches to the method ``_<name>``) and implement ``act``."""

    kind = ""
    losses: tuple[str, ...] = ()

    def __init__(self, encoder: nn.Module, head: nn.Module, action_space: gym.Space) -> None:
        self.encoder, self.head, self.action_space = encoder, head, action_space
        self.loss = self.losses[0]

    def use_loss(self, name: str) -> TeacherHead:
        """Train with the action loss ``name`` (``"auto"``: the kind's default); returns self.

        Raises:
            ConfigError: A loss this kind does not have.
        """
        if name != "auto" and name not in self.losses:
            raise ConfigError(
                f"action_loss={name!r} does not apply to a {self.kind} teacher: use auto or "
                f"{' or '.join(self.losses)}."
            )
        self.loss = self.losses[0] if name == "auto" else name
        return self

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    def action_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The loss of the student's head output against the teacher's. Shapes: (B, out)."""
        return getattr(self, f"_{self.loss}")(student, teacher)

    def act(self, out: torch.Tensor) -> np.ndarray:
        """Greedy actions of head outputs. Shape: (B,) for Discrete, (B, *action_shape) for Box,
        in the env's units."""
        raise NotImplementedError

    def agreement(self, student: torch.Tensor, teacher: torch.Tensor) -> float:
        """How well the student's greedy actions match the teacher's: the share of equal actions
        (Discrete), or the R^2 of the actions (Box, pooled over dimensions)."""
        if self.discrete:
            return float((student.argmax(1) == teacher.argmax(1)).float().mean())
        a, b = (torch.as_tensor(self.act(x), dtype=torch.float32) for x in (student, teacher))
        return float(1 - ((a - b) ** 2).sum() / ((b - b.mean(0)) ** 2).sum().clamp_min(1e-12))

    def prepare(self, teacher_out: torch.Tensor) -> None:
        """Statistics of the teacher's outputs on the training data (DQN: the Q spread)."""

    def state(self) -> dict[str, torch.Tensor]:
        """What :meth:`prepare` computed, for a checkpoint (a resumed run does not prepare again:
        its first fit may be on other data)."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state`."""


class Categorical(TeacherHead):
    """PPO / A2C on Discrete actions: the head gives logits; KL of the student's distribution
    from the teacher's."""

    kind = "categorical"
    losses = ("kl",)

    def _kl(self, student, teacher):
        student_logp, teacher_logp = F.log_softmax(student, 1), F.log_softmax(teacher, 1)
        return F.kl_div(student_logp, teacher_logp, log_target=True, reduction="batchmean")

    def act(self, out):
        return out.argmax(1).cpu().numpy()


class Gaussian(TeacherHead):
    """PPO / A2C on Box actions: the head gives the Gaussian's mean; the log-std is the policy's
    state-independent parameter, the same (frozen) for teacher and student."""

    kind = "gaussian"
    losses = ("kl",)

    def __init__(self, encoder, head, action_space, log_std: torch.Tensor) -> None:
        super().__init__(encoder, head, action_space)
        self.log_std = log_std

    def _kl(self, student, teacher):
        inv_var = torch.exp(-2 * self.log_std.detach())
        return (0.5 * (student - teacher) ** 2 * inv_var).sum(1).mean()

    def act(self, out):
        low, high = self.action_space.low, self.action_space.high
        return np.clip(out.cpu().numpy(), low, high)


class SquashedGaussian(TeacherHead):
    """SAC's actor: the head gives the pre-tanh mean and log-std; the greedy action is the tanh of
    the mean, rescaled to the action space. The loss is the MSE of those greedy actions in
    [-1, 1] (a KL of the pre-tanh Gaussians weighs the mean by SAC's tiny late-training std and
    chases the log-std, which the student never acts on)."""

    kind = "squashed_gaussian"
    losses = ("mse", "kl")

    def _mse(self, student, teacher):
        a = self.action_space.shape[0]
        return F.mse_loss(torch.tanh(student[:, :a]), torch.tanh(teacher[:, :a]))

    def _kl(self, student, teacher):
        """KL(teacher || student) of the pre-tanh diagonal Gaussians (tanh is a bijection, so it
        is the KL of the squashed policies), summed over action dimensions."""
        a = self.action_space.shape[0]
        mu_s, log_s, mu_t, log_t = student[:, :a], student[:, a:], teacher[:, :a], teacher[:, a:]
        var_ratio = torch.exp(2 * (log_t - log_s))
        kl = log_s - log_t + 0.5 * (var_ratio + (mu_t - mu_s) ** 2 * torch.exp(-2 * log_s) - 1)
        return kl.sum(1).mean()

    def act(self, out):
        a = self.action_space.shape[0]
        return _unscale(torch.tanh(out[:, :a]).cpu().numpy(), self.action_space)


class Deterministic(TeacherHead):
    """TD3's actor: the head gives the action in [-1, 1]; MSE on it."""

    kind = "deterministic"
    losses = ("mse",)

    def _mse(self, student, teacher):
        return F.mse_loss(student, teacher)

    def act(self, out):
        return _unscale(out.cpu().numpy(), self.action_space)


class QValues(TeacherHead):
    """DQN: the head gives Q-values and the greedy action is the argmax. ``softmax`` (the default):
    KL(teacher || student) of softmax(Q / temperature), the temperature being the mean gap
    between the teacher's best and second-best Q over the training states, so that a typical
    state's greedy action is e times as likely as the runner-up: the student matches the
    ranking of the actions, not the values. ``mse``: MSE in units of the Q spread over the
    training states. Chosen on the validation domain (Acrobot, 2 seeds at 20k frames: recovered
    0.950 against 0.636; benchmarks/results/action_loss-Acrobot-v1.md)."""

    kind = "q_values"
    losses = ("softmax", "mse")

    def __init__(self, encoder, head, action_space) -> None:
        super().__init__(encoder, head, action_space)
        self.scale, self.temperature = torch.ones(()), torch.ones(())

    def prepare(self, teacher_out):
        self.scale = teacher_out.std().clamp_min(1e-6)
        top2 = teacher_out.topk(2, dim=1).values
        self.temperature = (top2[:, 0] - top2[:, 1]).mean().clamp_min(1e-6)

    def state(self):
        return {"scale": self.scale, "temperature": self.temperature}

    def load_state(self, state):
        self.scale = state.get("scale", self.scale)
        self.temperature = state.get("temperature", self.temperature)

    def _mse(self, student, teacher):
        return (((student - teacher) / self.scale) ** 2).mean()

    def _softmax(self, student, teacher):
        t = self.temperature
        student_logp, teacher_logp = F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1)
        return F.kl_div(student_logp, teacher_logp, log_target=True, reduction="batchmean")

    def act(self, out):
        return out.argmax(1).cpu().numpy()


class SacActorHead(nn.Module):
    """SAC's actor above its features extractor: ``(B, latent) -> (B, 2 * action_dim)``, the
    pre-tanh mean then the clamped log-std. Shares parameters with the actor."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.latent_pi, self.mu, self.log_std = actor.latent_pi, actor.mu, actor.log_std

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.latent_pi(latent)
        return torch.cat([self.mu(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)], dim=1)


def teacher_head(teacher: BaseAlgorithm) -> TeacherHead:
    """The strategy of a trained SB3 teacher (PPO, A2C, SAC, TD3 or DQN).

    Raises:
        IncompatibleError: Another algorithm, an actor-critic policy without a shared features
            extractor, or gSDE (a state-dependent exploration noise has no frozen log-std).
    """
    policy, space = teacher.policy, teacher.action_space
    if isinstance(teacher, DQN):
        return QValues(policy.q_net.features_extractor, policy.q_net.q_net, space)
    if isinstance(teacher, SAC):
        actor = policy.actor
        return SquashedGaussian(actor.features_extractor, SacActorHead(actor), space)
    if isinstance(teacher, TD3):
        return Deterministic(policy.actor.features_extractor, policy.actor.mu, space)
    if not isinstance(policy, ActorCriticPolicy):
        raise IncompatibleError(
            f"cannot distil a {type(teacher).__name__} teacher ({type(policy).__name__}): "
            "transfer takes PPO, A2C, SAC, TD3 or DQN teachers as python -m simtoreal.train makes them."
        )
    head = PolicyHead(policy)  # refuses an actor-critic without a shared extractor
    if isinstance(space, gym.spaces.Discrete):
        return Categorical(policy.features_extractor, head, space)
    if getattr(policy, "use_sde", False):
        raise IncompatibleError(
            "the teacher uses gSDE, whose noise depends on the state: transfer distils a Gaussian "
            "policy with a state-independent log-std; retrain the teacher without --use-sde."
        )
    return Gaussian(policy.features_extractor, head, space, policy.log_std)


def _unscale(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Actions in [-1, 1] to the space's range (SB3's ``unscale_action``)."""
    return space.low + 0.5 * (action + 1.0) * (space.high - space.low)
