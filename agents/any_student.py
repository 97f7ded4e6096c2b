"""Policy surgery for every teacher kind: a student SB3 model of the teacher's algorithm (PPO,
A2C, DQN, SAC, TD3) on image observations, wearing the teacher's frozen heads.

The student's policy is the teacher's policy class with another features extractor: the trained
CNN (a latent adapter, or a state estimator under a frozen copy of the teacher's encoder). Every
teacher parameter outside a features extractor (actor-critic heads and log-std, Q-network,
SAC / TD3 actor and critics, target networks) is copied by name and frozen, and every features
extractor of the student (the shared one; DQN's online and target Q-networks'; SAC / TD3's
actor's and critics') gets the trained CNN. Only the actor acts, so a SAC or TD3 student's
critics are the teacher's critic heads on the adapter's latent: fine to act with, a starting
point at best for RL fine-tuning.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

EXTRACTOR = "features_extractor"


class SpacesEnv(gym.Env):
    """An env that only declares spaces: what SB3 needs to build a model that is not trained."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


def build_any_student(
    teacher: BaseAlgorithm,
    image_shape: tuple[int, int, int],
    cnn: nn.Module,
    extractor_class: type[nn.Module],
    extractor_kwargs: dict,
    estimates_state: bool,
) -> BaseAlgorithm:
    """The student of ``teacher`` acting from uint8 frames of ``image_shape`` (H, W, 3k).

    Args:
        cnn: The trained adapter (latent target) or state estimator.
        extractor_class, extractor_kwargs: The student's features extractor, built by SB3.
        estimates_state: Whether the extractor is ``estimator`` under ``encoder`` (the teacher's
            encoder is then copied into each extractor's ``encoder``).
    """
    image = gym.spaces.Box(0, 255, tuple(image_shape), np.uint8)
    env = DummyVecEnv([lambda: SpacesEnv(image, teacher.action_space)])
    policy_kwargs = {k: v for k, v in teacher.policy_kwargs.items() if not k.startswith(EXTRACTOR)}
    policy_kwargs.update(
        features_extractor_class=extractor_class, features_extractor_kwargs=extractor_kwargs
    )
    # an untrained student needs no replay memory (64x64 frames would take gigabytes)
    extra = {"buffer_size": 1} if isinstance(teacher, OffPolicyAlgorithm) else {}
    student = type(teacher)(
        type(teacher.policy), env, policy_kwargs=policy_kwargs, device="cpu", **extra
    )
    state = student.policy.state_dict()
    state.update({k: v for k, v in teacher.policy.state_dict().items() if EXTRACTOR not in k})
    student.policy.load_state_dict(state)
    for name, module in student.policy.named_modules():
        if not name.endswith(EXTRACTOR):
            continue
        if estimates_state:
            module.estimator.load_state_dict(cnn.state_dict())
            module.encoder.load_state_dict(teacher.policy.get_submodule(name).state_dict())
        else:
            module.load_state_dict(cnn.state_dict())
    freeze_all_but_cnn(student, estimates_state)
    return student


def freeze_all_but_cnn(student: BaseAlgorithm, estimates_state: bool) -> None:
    """``requires_grad`` on the CNN of each features extractor only (the heads and the copied
    encoder stay frozen)."""
    trainable = f"{EXTRACTOR}.estimator." if estimates_state else f"{EXTRACTOR}."
    for name, p in student.policy.named_parameters():
        p.requires_grad_(trainable in name)
