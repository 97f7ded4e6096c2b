"""Policy surgery: put a CNN state adapter under a trained teacher's policy head.

The student is an ordinary Stable-Baselines3 model of the teacher's algorithm on the image
observation space. Its features extractor is a :class:`CnnStateAdapter`, or a state estimator
under a frozen copy of the teacher's encoder (:class:`StateEstimatorExtractor`); its ``mlp_extractor``,
``action_net`` and ``value_net`` are copies of the teacher's, frozen by default.
"""

from __future__ import annotations

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from simtoreal.agents.adapter import AdapterConfig, CnnStateAdapter, adapter_kwargs
from simtoreal.agents.estimator import StateEstimatorExtractor
from simtoreal.errors import IncompatibleError

HEAD_PARTS = ("mlp_extractor", "action_net", "value_net")


class PolicyHead(nn.Module):
    """The part of an actor-critic policy above its features extractor, as one module.

    Shares its parameters with the policy it was taken from. Shape: (B, latent) -> (B, n_actions).
    """

    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        _check_actor_critic(policy)
        self.mlp_extractor = policy.mlp_extractor
        self.action_net = policy.action_net
        self.value_net = policy.value_net

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Action logits."""
        return self.action_net(self.mlp_extractor.forward_actor(latent))


def teacher_latent_dim(teacher: BaseAlgorithm) -> int:
    _check_actor_critic(teacher.policy)
    return int(teacher.policy.features_extractor.features_dim)


def build_student(
    teacher: BaseAlgorithm,
    env: VecEnv,
    adapter: AdapterConfig | None = None,
    freeze_head: bool = True,
    **algo_kwargs,
) -> BaseAlgorithm:
    """A model of the teacher's algorithm on ``env``'s image observations, wearing its head.

    Args:
        teacher: A trained PPO or A2C model whose features extractor outputs the latent.
        env: The image-observation VecEnv the student will act in.
        adapter: Architecture of the CNN adapter; its ``latent_dim`` must be the teacher's.
        freeze_head: Set ``requires_grad=False`` on the copied head (the default).
        algo_kwargs: Passed to the algorithm's constructor (learning rate, n_steps, ...).
    """
    latent = teacher_latent_dim(teacher)
    adapter = adapter or AdapterConfig(latent_dim=latent, image_shape=env.observation_space.shape)
    if adapter.latent_dim != latent:
        raise IncompatibleError(
            f"the adapter's latent_dim={adapter.latent_dim} does not match the teacher's latent size "
            f"{latent}: build the adapter with latent_dim={latent}."
        )
    if tuple(env.observation_space.shape) != tuple(adapter.image_shape):
        raise IncompatibleError(
            f"the env's images have shape {env.observation_space.shape} but the adapter takes "
            f"{adapter.image_shape}: make the env with the adapter's image_size and frame_stack."
        )
    policy_kwargs = {
        k: v for k, v in teacher.policy_kwargs.items() if not k.startswith("features_extractor")
    }
    if adapter.target == "state":
        policy_kwargs.update(
            features_extractor_class=StateEstimatorExtractor,
            features_extractor_kwargs={
                "config": adapter.to_dict(),
                "encoder_class": type(teacher.policy.features_extractor),
                "encoder_kwargs": teacher.policy_kwargs.get("features_extractor_kwargs", {}),
                "state_space": teacher.observation_space,
            },
        )
    else:
        policy_kwargs.update(
            features_extractor_class=CnnStateAdapter,
            features_extractor_kwargs=adapter_kwargs(adapter),
        )
    algo_kwargs.setdefault("device", "cpu")
    student = type(teacher)(type(teacher.policy), env, policy_kwargs=policy_kwargs, **algo_kwargs)
    copy_head(teacher, student)
    if adapter.target == "state":
        extractor = student.policy.features_extractor
        extractor.encoder.load_state_dict(teacher.policy.features_extractor.state_dict())
    if freeze_head:
        set_head_trainable(student, False)
    return student


def copy_head(source: BaseAlgorithm, target: BaseAlgorithm) -> None:
    """Copy mlp_extractor, action_net and value_net weights from ``source`` to ``target``."""
    for part in HEAD_PARTS:
        getattr(target.policy, part).load_state_dict(getattr(source.policy, part).state_dict())


def set_head_trainable(model: BaseAlgorithm, trainable: bool) -> None:
    for part in HEAD_PARTS:
        for p in getattr(model.policy, part).parameters():
            p.requires_grad_(trainable)


def _check_actor_critic(policy) -> None:
    if not isinstance(policy, ActorCriticPolicy) or not policy.share_features_extractor:
        raise IncompatibleError(
            f"policy surgery needs an actor-critic policy with a shared features extractor (PPO or "
            f"A2C as trained by `python -m simtoreal.train grid`), got {type(policy).__name__}."
        )
