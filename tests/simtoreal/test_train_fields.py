"""Every field of the teacher's configs reaches what it configures (issue 7): hyperparameters and
network fields reach the SB3 model; run fields change what a tiny run does or writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from simtoreal.agents.factory import A2CConfig, DQNConfig, PolicyConfig, PPOConfig, make_model
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.runs import read_jsonl
from simtoreal.train import TrainConfig, train

# -- algorithm hyperparameters reach the SB3 model -------------------------------------------------

ALGO_VALUES = {
    PPOConfig: {"learning_rate": 7e-4, "n_steps": 32, "batch_size": 128, "n_epochs": 2,
                "gamma": 0.9, "gae_lambda": 0.8, "clip_range": 0.1, "ent_coef": 0.01,
                "vf_coef": 0.25, "max_grad_norm": 1.0},
    A2CConfig: {"learning_rate": 7e-4, "n_steps": 8, "gamma": 0.9, "gae_lambda": 0.8,
                "ent_coef": 0.01, "vf_coef": 0.25, "max_grad_norm": 1.0},
    DQNConfig: {"learning_rate": 7e-4, "buffer_size": 1_000, "learning_starts": 10,
                "batch_size": 32, "train_freq": 2, "gradient_steps": 2,
                "target_update_interval": 100, "exploration_fraction": 0.5,
                "exploration_final_eps": 0.1, "gamma": 0.9},
}  # fmt: skip
ALGO_OF = {PPOConfig: "ppo", A2CConfig: "a2c", DQNConfig: "dqn"}


def _model_value(model, name: str):
    value = getattr(model, name)
    if callable(value):  # SB3 keeps learning rates and clip ranges as schedules
        return value(1.0)
    return getattr(value, "frequency", value)  # train_freq is a TrainFreq


def test_every_algorithm_field_has_a_probe():
    for cls, values in ALGO_VALUES.items():
        assert set(values) == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@pytest.mark.parametrize(
    ("cls", "name"), [(cls, name) for cls, values in ALGO_VALUES.items() for name in values]
)
def test_algorithm_field_reaches_the_model(cls, name):
    env = GridWorldVecEnv(16)
    value = ALGO_VALUES[cls][name]
    default = make_model(ALGO_OF[cls], env, cls(**_valid(cls)), seed=0)
    changed = make_model(ALGO_OF[cls], env, cls(**{**_valid(cls), name: value}), seed=0)
    assert _model_value(changed, name) == pytest.approx(value)
    assert _model_value(changed, name) != _model_value(default, name)


def _valid(cls) -> dict:
    """Defaults that fit 16 envs (PPO's batch must fit one rollout)."""
    return {"n_steps": 64, "batch_size": 256} if cls is PPOConfig else {}


# -- network fields reach the policy ---------------------------------------------------------------


def _policy(env_kwargs: dict | None = None, **fields):
    env = GridWorldVecEnv(4, **(env_kwargs or {}))
    return make_model(
        "ppo", env, PPOConfig(n_steps=64, batch_size=256), PolicyConfig(**fields)
    ).policy


OBSTACLES = {"n_obstacles": 6}
POLICY_PROBES = {
    "encoder": ({"encoder": "grid_cnn"}, OBSTACLES, lambda p: type(p.features_extractor).__name__),
    "latent_dim": ({"latent_dim": 32}, None, lambda p: p.features_extractor.features_dim),
    "hidden": ({"hidden": (16, 16)}, None, lambda p: _n_linear(p.features_extractor)),
    "cnn_channels": ({"encoder": "grid_cnn", "cnn_channels": (8, 4)}, OBSTACLES,
                     lambda p: _conv_channels(p.features_extractor)),
    "cnn_strides": ({"encoder": "grid_cnn", "cnn_strides": (1, 2)}, OBSTACLES,
                    lambda p: _conv_strides(p.features_extractor)),
    "egocentric": ({"encoder": "grid_cnn", "egocentric": True}, OBSTACLES,
                   lambda p: _output(p, {"n_obstacles": 6})),
    "net_arch": ({"net_arch": (32, 32)}, None, lambda p: _n_linear(p.mlp_extractor.policy_net)),
    "activation": ({"activation": "tanh"}, None, lambda p: p.activation_fn.__name__),
}  # fmt: skip


def _n_linear(module) -> int:
    return sum(isinstance(m, torch.nn.Linear) for m in module.modules())


def _conv_channels(module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def _conv_strides(module) -> list:
    return [m.stride for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def _output(policy, env_kwargs) -> float:
    torch.manual_seed(0)
    obs = torch.as_tensor(GridWorldVecEnv(2, seed=0, **env_kwargs).reset())
    return float(policy.features_extractor(obs).sum().detach())


def test_every_policy_field_has_a_probe():
    assert set(POLICY_PROBES) == {f.name for f in dataclasses.fields(PolicyConfig)}


@pytest.mark.parametrize("name", list(POLICY_PROBES))
def test_policy_field_reaches_the_network(name):
    fields, env_kwargs, probe = POLICY_PROBES[name]
    base = {"encoder": fields["encoder"]} if "encoder" in fields and name != "encoder" else {}
    torch.manual_seed(0)
    changed = probe(_policy(env_kwargs, **fields))
    torch.manual_seed(0)
    default = probe(_policy(env_kwargs, **base))
    assert changed != default


# -- run fields change what a tiny run does --------------------------------------------------------


def _tiny(run_dir: Path, **overrides) -> TrainConfig:
    base = {
        "run_dir": run_dir,
        "total_steps": 2_048,
        "n_envs": 16,
        "eval_every": 1_024,
        "val_episodes": 20,
        "eval_episodes": 20,
        "checkpoint_every": 1_024,
        "gif_episodes": 0,
        "progress_bar": False,
        "ppo": PPOConfig(n_steps=64, batch_size=256),
    }
    return TrainConfig(**{**base, **overrides})


def _checkpoints(d: Path) -> int:
    return len(list((d / "checkpoints").glob("*.zip")))


RUN_PROBES = {
    "env_id": ("simtoreal/GridWorldObstacles-v0", lambda s, d: s["env_kwargs"].get("n_obstacles")),
    "env_kwargs": ({"size": 6}, lambda s, d: s["env_kwargs"].get("size")),
    "algo": ("a2c", lambda s, d: s["algo"]),
    "seed": (1, lambda s, d: s["final"]["mean_length"]),
    "total_steps": (3_072, lambda s, d: s["total_steps"]),
    "n_envs": (32, lambda s, d: s["n_envs"]),
    "torch_threads": (2, lambda s, d: s["torch_threads"]),
    "eval_every": (2_048, lambda s, d: len(read_jsonl(d / "metrics.jsonl"))),
    "val_episodes": (10, lambda s, d: read_jsonl(d / "metrics.jsonl")[0]["n_episodes"]),
    "val_seed": (2_100_000, lambda s, d: read_jsonl(d / "metrics.jsonl")[0]["mean_length"]),
    "eval_episodes": (10, lambda s, d: s["n_episodes"]),
    "eval_seed": (1_100_000, lambda s, d: s["final"]["mean_length"]),
    "checkpoint_every": (2_048, lambda s, d: _checkpoints(d)),
    "gif_episodes": (1, lambda s, d: (d / "policy.gif").is_file()),
    "policy": (PolicyConfig(latent_dim=32), lambda s, d: _latent(d)),
    "ppo": (PPOConfig(n_steps=32, batch_size=256), lambda s, d: _config(d)["ppo"]["n_steps"]),
}  # fmt: skip
# Fields whose effect another test shows.
RUN_TESTED_ELSEWHERE = {
    "train_env_kwargs": "test_train_env_kwargs_reach_the_training_envs_only",
    "run_dir": "every run here writes into its own",
    "device": "test_train.py::test_bad_config_is_refused (cuda without a GPU)",
    "progress_bar": "a display-only switch (tqdm); see test_progress_bar_reaches_sb3",
    "a2c": "test_algorithm_field_reaches_the_model (A2CConfig, through TrainConfig.algo_config)",
    "dqn": "test_algorithm_field_reaches_the_model (DQNConfig, through TrainConfig.algo_config)",
}


def _config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def _latent(d: Path) -> int:
    from simtoreal.agents.factory import load_teacher

    return load_teacher(d)[0].policy.features_extractor.features_dim


def test_every_run_field_has_a_probe():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert names == set(RUN_PROBES) | set(RUN_TESTED_ELSEWHERE)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("train-default") / "run"
    return train(_tiny(run_dir)), run_dir


@pytest.mark.parametrize("name", list(RUN_PROBES))
def test_run_field_reaches_what_it_configures(name, default_run, tmp_path):
    value, probe = RUN_PROBES[name]
    base_summary, base_dir = default_run
    summary = train(_tiny(tmp_path / "run", **{name: value}))
    assert probe(summary, tmp_path / "run") != probe(base_summary, base_dir), name


def test_algo_config_follows_algo():
    config = _tiny(Path("unused"), algo="a2c", a2c=A2CConfig(n_steps=8))
    assert config.algo_config == A2CConfig(n_steps=8)


@pytest.mark.parametrize("shown", [False, True])
def test_progress_bar_reaches_sb3(shown, tmp_path, monkeypatch):
    from stable_baselines3 import PPO

    seen = []
    learn = PPO.learn

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("progress_bar"))
        return learn(self, *args, **{**kwargs, "progress_bar": False})

    monkeypatch.setattr(PPO, "learn", spy)
    train(_tiny(tmp_path / "run", progress_bar=shown))
    assert seen == [shown]


def test_train_env_kwargs_reach_the_training_envs_only(tmp_path, monkeypatch):
    from simtoreal.train import grid

    built = []
    real = grid.GridWorldVecEnv

    def spy(*args, **kwargs):
        built.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(grid, "GridWorldVecEnv", spy)
    summary = train(_tiny(tmp_path / "run", train_env_kwargs={"max_steps": 10}))
    assert [kw.get("max_steps") for kw in built] == [10]
    assert "max_steps" not in summary["env_kwargs"]  # evaluation uses the id's own world
