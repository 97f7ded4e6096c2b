"""Algorithm factory: PPO (default), A2C, DQN, SAC and TD3 from typed configs, and teacher loading.

Every teacher policy is ``GridEncoder -> mlp_extractor (pi / vf) -> action_net / value_net``;
:func:`policy_kwargs` is the one place that builds it, so *policy surgery* can later swap the
features extractor for the CNN adapter and keep the rest of the teacher.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from simtoreal.agents.extractors import GridEncoder, GridMapEncoder
from simtoreal.errors import CheckpointError, ConfigError, IncompatibleError, RunDirError
from simtoreal.runs import load_config

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
#: PolicyConfig.encoder -> the features extractor that reads the state view.
ENCODERS: dict[str, type[BaseFeaturesExtractor]] = {"mlp": GridEncoder, "grid_cnn": GridMapEncoder}
#: Model files of a teacher run directory, by ``which``.
TEACHER_FILES = {"best": "best_model.zip", "final": "model.zip"}


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class PolicyConfig:
    """The teacher network: an encoder to the latent, then separate pi / vf heads."""

    encoder: str = "mlp"
    """State encoder: mlp (GridEncoder, linear layers over the state vector) or grid_cnn
    (GridMapEncoder, a CNN over the obstacle map as a 2-D grid; obstacle worlds only)."""
    latent_dim: int = 128
    """Size of the encoder's latent (the CNN adapter must produce the same size)."""
    hidden: tuple[int, ...] = ()
    """Hidden layer sizes inside GridEncoder before the latent (encoder mlp; none: one Linear +
    ReLU)."""
    cnn_channels: tuple[int, ...] = (16, 16)
    """Channels of each 3x3 conv layer of GridMapEncoder (encoder grid_cnn)."""
    cnn_strides: tuple[int, ...] = (1, 1)
    """Stride of each conv layer of GridMapEncoder, one per cnn_channels entry (encoder grid_cnn)."""
    egocentric: bool = False
    """GridMapEncoder sees the grid centred on the agent (encoder grid_cnn)."""
    net_arch: tuple[int, ...] = (64,)
    """Hidden layer sizes of the policy and value heads (the reference's RLPolicy: 64)."""
    activation: str = "relu"
    """Activation of the heads: relu or tanh."""

    def __post_init__(self) -> None:
        self.hidden, self.net_arch = tuple(self.hidden), tuple(self.net_arch)
        self.cnn_channels, self.cnn_strides = tuple(self.cnn_channels), tuple(self.cnn_strides)
        sizes = (self.latent_dim, *self.hidden, *self.net_arch, *self.cnn_channels,
                 *self.cnn_strides)  # fmt: skip
        _require(
            all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes),
            f"layer sizes must be positive ints, got latent_dim={self.latent_dim}, "
            f"hidden={self.hidden}, net_arch={self.net_arch}, cnn_channels={self.cnn_channels}, "
            f"cnn_strides={self.cnn_strides}.",
        )
        _require(
            self.encoder in ENCODERS,
            f"unknown encoder {self.encoder!r}: use one of {', '.join(ENCODERS)} (grid_cnn for "
            "worlds with obstacles).",
        )
        _require(
            bool(self.cnn_channels) and len(self.cnn_strides) == len(self.cnn_channels),
            f"cnn_channels={self.cnn_channels} and cnn_strides={self.cnn_strides} describe the "
            "same conv layers: give them the same non-zero length, e.g. --policy.cnn-channels 16 16 "
            "--policy.cnn-strides 1 2.",
        )
        _require(
            self.activation in ACTIVATIONS,
            f"unknown activation {self.activation!r}: use one of {', '.join(ACTIVATIONS)}.",
        )


@dataclass
class PPOConfig:
    """PPO hyperparameters (defaults tuned on the 8x8 world; see docs/teacher.md)."""

    learning_rate: float = 1e-2
    """Adam learning rate."""
    n_steps: int = 16
    """Steps per env per rollout; a rollout holds n_steps * n_envs transitions."""
    batch_size: int = 1024
    """Minibatch size; at most n_steps * n_envs."""
    n_epochs: int = 4
    """Passes over each rollout."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clipping parameter."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""

    def __post_init__(self) -> None:
        _check_common(self)
        _require(self.batch_size >= 2, f"batch_size={self.batch_size}: use at least 2.")
        _require(self.n_epochs >= 1, f"n_epochs={self.n_epochs}: use at least 1.")
        _require(self.clip_range > 0, f"clip_range={self.clip_range}: use a positive value.")


@dataclass
class A2CConfig:
    """A2C hyperparameters (one-seed probe on the 8x8 world: 0.97 after about 60k steps)."""

    learning_rate: float = 3e-3
    """RMSprop learning rate."""
    n_steps: int = 4
    """Steps per env per update."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: plain n-step returns)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass
class DQNConfig:
    """DQN hyperparameters (untuned; 0.998 test success after the default 50k steps, one seed)."""

    learning_rate: float = 5e-4
    """Adam learning rate."""
    buffer_size: int = 50_000
    """Replay buffer capacity, in transitions."""
    learning_starts: int = 1_000
    """Transitions collected before learning starts."""
    batch_size: int = 128
    """Minibatch size."""
    train_freq: int = 1
    """Vectorised env steps between updates."""
    gradient_steps: int = 4
    """Gradient steps per update."""
    target_update_interval: int = 2_000
    """Env steps between target network updates."""
    exploration_fraction: float = 0.3
    """Share of training over which epsilon decays."""
    exploration_final_eps: float = 0.05
    """Final epsilon."""
    gamma: float = 0.99
    """Discount factor."""

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, f"learning_rate={self.learning_rate}: use a value > 0.")
        _require(0 < self.gamma <= 1, f"gamma={self.gamma}: use a value in (0, 1].")
        _require(
            self.buffer_size >= self.batch_size >= 1, "DQN needs buffer_size >= batch_size >= 1."
        )
        _require(0 <= self.exploration_final_eps <= 1, "exploration_final_eps is in [0, 1].")


@dataclass
class OffPolicyConfig:
    """What SAC and TD3 share: the replay buffer and the update schedule (SB3's defaults, with
    RL Zoo's learning rate of 1e-3 for Pendulum-v1). Box action spaces only."""

    learning_rate: float = 1e-3
    """Adam learning rate."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity, in transitions."""
    learning_starts: int = 100
    """Transitions collected (with uniformly random actions) before learning starts."""
    batch_size: int = 256
    """Minibatch size."""
    tau: float = 0.005
    """Soft update coefficient of the target networks."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 1
    """Vectorised env steps between updates."""
    gradient_steps: int = 1
    """Gradient steps per update."""

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, f"learning_rate={self.learning_rate}: use a value > 0.")
        _require(0 < self.gamma <= 1, f"gamma={self.gamma}: use a value in (0, 1].")
        _require(0 < self.tau <= 1, f"tau={self.tau}: use a value in (0, 1].")
        _require(
            self.buffer_size >= self.batch_size >= 1,
            f"buffer_size={self.buffer_size}, batch_size={self.batch_size}: use buffer_size >= "
            "batch_size >= 1.",
        )
        _require(
            self.train_freq >= 1 and self.gradient_steps >= 1,
            "train_freq and gradient_steps: use at least 1.",
        )


@dataclass
class SACConfig(OffPolicyConfig):
    """SAC hyperparameters (Box action spaces only)."""

    ent_coef: str = "auto"
    """Entropy coefficient: auto (learned, SB3's default), auto_0.1 (learned from 0.1) or a
    number, e.g. 0.01."""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            _ent_coef(self.ent_coef)
        except ValueError as err:
            raise ConfigError(
                f"ent_coef={self.ent_coef!r}: use auto, auto_<initial value> (e.g. auto_0.1) or a "
                "positive number."
            ) from err


def _ent_coef(value: str) -> str | float:
    """SAC's entropy coefficient as SB3 takes it: ``"auto[_x]"`` as is, else a positive float."""
    if value == "auto" or (value.startswith("auto_") and float(value[5:]) > 0):
        return value
    if float(value) <= 0:
        raise ValueError(value)
    return float(value)


@dataclass
class TD3Config(OffPolicyConfig):
    """TD3 hyperparameters, with Gaussian exploration noise as RL Zoo uses (Box action spaces
    only)."""

    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    target_policy_noise: float = 0.2
    """Std of the smoothing noise added to the target policy's actions."""
    target_noise_clip: float = 0.5
    """Bound of that smoothing noise."""
    action_noise_std: float = 0.1
    """Std of the Gaussian exploration noise, as a share of each action's half-range (0: none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.policy_delay >= 1, f"policy_delay={self.policy_delay}: use at least 1.")
        _require(self.action_noise_std >= 0, "action_noise_std: use 0 (no noise) or more.")


def _check_common(config: PPOConfig | A2CConfig) -> None:
    _require(config.learning_rate > 0, f"learning_rate={config.learning_rate}: use a value > 0.")
    _require(config.n_steps >= 1, f"n_steps={config.n_steps}: use at least 1.")
    _require(0 < config.gamma <= 1, f"gamma={config.gamma}: use a value in (0, 1].")
    _require(0 <= config.gae_lambda <= 1, f"gae_lambda={config.gae_lambda}: use [0, 1].")


#: name -> (SB3 class, config class).
ALGORITHMS: dict[str, tuple[type[BaseAlgorithm], type]] = {
    "ppo": (PPO, PPOConfig),
    "a2c": (A2C, A2CConfig),
    "dqn": (DQN, DQNConfig),
    "sac": (SAC, SACConfig),
    "td3": (TD3, TD3Config),
}
#: Algorithms whose policy needs a Discrete or a Box action space; the others take either.
DISCRETE_ONLY, BOX_ONLY = ("dqn",), ("sac", "td3")


def check_algo(algo: str, allowed: tuple[str, ...] = tuple(ALGORITHMS)) -> None:
    """Refuse an algorithm name outside ``allowed`` (default: every algorithm here)."""
    if algo not in allowed:
        raise ConfigError(f"unknown algorithm {algo!r}: use one of {', '.join(allowed)}.")


def policy_kwargs(algo: str, policy: PolicyConfig) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` of the teacher: the encoder's features, then the heads."""
    check_algo(algo)
    if policy.encoder == "grid_cnn":
        encoder_kwargs = {
            "latent_dim": policy.latent_dim,
            "channels": policy.cnn_channels,
            "strides": policy.cnn_strides,
            "egocentric": policy.egocentric,
        }
    else:
        encoder_kwargs = {"latent_dim": policy.latent_dim, "hidden": policy.hidden}
    kwargs: dict[str, Any] = {
        "features_extractor_class": ENCODERS[policy.encoder],
        "features_extractor_kwargs": encoder_kwargs,
        "activation_fn": ACTIVATIONS[policy.activation],
    }
    if algo == "dqn":
        kwargs["net_arch"] = list(policy.net_arch)
    elif algo in BOX_ONLY:  # actor and critics, each over its own copy of the encoder
        kwargs["net_arch"] = {"pi": list(policy.net_arch), "qf": list(policy.net_arch)}
    else:
        kwargs["net_arch"] = {"pi": list(policy.net_arch), "vf": list(policy.net_arch)}
        kwargs["share_features_extractor"] = True
    return kwargs


def make_model(
    algo: str,
    env: VecEnv,
    algo_config: PPOConfig | A2CConfig | DQNConfig | SACConfig | TD3Config,
    policy: PolicyConfig | None = None,
    *,
    seed: int | None = None,
    device: str = "cpu",
    tensorboard_log: str | None = None,
) -> BaseAlgorithm:
    """Build an SB3 model of ``algo`` on ``env`` with the teacher policy."""
    check_algo(algo)
    cls, config_cls = ALGORITHMS[algo]
    if not isinstance(algo_config, config_cls):
        raise ConfigError(
            f"{algo} takes a {config_cls.__name__}, got {type(algo_config).__name__}."
        )
    check_action_space(algo, env.action_space)
    hyper = {f.name: getattr(algo_config, f.name) for f in fields(algo_config)}
    if algo == "ppo":
        check_batch_size(algo_config, env.num_envs)
    if algo == "td3":
        hyper["action_noise"] = _action_noise(hyper.pop("action_noise_std"), env.action_space)
    if algo == "sac":
        hyper["ent_coef"] = _ent_coef(hyper["ent_coef"])
    return cls(
        "MlpPolicy",
        env,
        policy_kwargs=policy_kwargs(algo, policy or PolicyConfig()),
        seed=seed,
        device=device,
        tensorboard_log=tensorboard_log,
        verbose=0,
        **hyper,
    )


def _action_noise(std: float, action_space: gym.spaces.Box) -> NormalActionNoise | None:
    """Gaussian exploration noise of ``std`` times each action's half-range (None for 0)."""
    if std == 0:
        return None
    half_range = (action_space.high - action_space.low) / 2
    return NormalActionNoise(np.zeros(action_space.shape), std * half_range)


def check_action_space(algo: str, action_space: gym.Space) -> None:
    """DQN needs a Discrete action space, SAC and TD3 a Box one, PPO and A2C either: say so
    before SB3 fails deeper down."""
    if algo in DISCRETE_ONLY and not isinstance(action_space, gym.spaces.Discrete):
        raise IncompatibleError(
            f"{algo.upper()} needs a Discrete action space, got {action_space}: use --algo ppo "
            "or a2c (any action space), or sac or td3 for continuous actions."
        )
    if algo in BOX_ONLY and not isinstance(action_space, gym.spaces.Box):
        raise IncompatibleError(
            f"{algo.upper()} needs a continuous (Box) action space, got {action_space}: use "
            "--algo ppo, a2c or dqn for discrete actions."
        )
    if not isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
        raise IncompatibleError(
            f"the teacher supports Discrete and Box action spaces, got {action_space}: wrap the "
            "env so that its actions are one of those."
        )


def check_batch_size(config: PPOConfig, n_envs: int) -> None:
    """A PPO minibatch must fit in one rollout of ``n_steps * n_envs`` transitions."""
    rollout = config.n_steps * n_envs
    _require(
        config.batch_size <= rollout,
        f"batch_size={config.batch_size} is larger than a rollout of n_steps * n_envs = "
        f"{config.n_steps} * {n_envs} = {rollout}: lower batch_size or raise n_steps / n_envs.",
    )


def load_teacher(run_dir: str | Path, which: str = "best") -> tuple[BaseAlgorithm, dict]:
    """Load a teacher run's SB3 model on CPU, with the run's config dict.

    Args:
        run_dir: A directory written by ``python -m simtoreal.train grid``.
        which: ``"best"`` (best periodic evaluation, ``best_model.zip``) or ``"final"``
            (``model.zip``).

    SB3 ``.zip`` files hold pickled objects and unpickling runs code: load only run directories
    you trust.

    Raises:
        RunDirError: The directory, its config.json or the model file is missing.
        CheckpointError: The model file is corrupt or not an SB3 model of the run's algorithm.
    """
    if which not in TEACHER_FILES:
        raise ConfigError(f"which={which!r}: use one of {', '.join(TEACHER_FILES)}.")
    config = load_config(run_dir)
    path = Path(run_dir) / TEACHER_FILES[which]
    if not path.is_file():
        other = "final" if which == "best" else "best"
        raise RunDirError(
            f"{path} is missing: the run may not have finished (resume it with --resume "
            f"{run_dir}), or try which={other!r}."
        )
    algo = config.get("algo")
    check_algo(algo)
    return load_model(ALGORITHMS[algo][0], path), config


def load_model(cls: type[BaseAlgorithm], path: Path, env: VecEnv | None = None) -> BaseAlgorithm:
    """``cls.load`` on CPU, with a corrupt or foreign file reported as CheckpointError."""
    try:
        return cls.load(path, env=env, device="cpu")
    except (
        zipfile.BadZipFile,
        EOFError,
        pickle.UnpicklingError,
        KeyError,
        ValueError,
        AssertionError,  # SB3 asserts that the zip holds its "data" entry
    ) as err:
        raise CheckpointError(
            f"cannot read {path} as an SB3 {cls.__name__} model ({type(err).__name__}: {err}): "
            "the file is corrupt or truncated; use another checkpoint or retrain."
        ) from err
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not fit an SB3 {cls.__name__} teacher ({err}): was it written by "
            "another algorithm or network size?"
        ) from err
