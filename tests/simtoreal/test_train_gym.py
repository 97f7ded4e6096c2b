"""Teachers for any Gymnasium env (issue 12): tiny teachers that must learn, the run directory,
the ``ENV_ID`` shorthand, presets, resume, every refused input, and the MiniGrid state functions."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from tiny_envs import ConstantEnv

from simtoreal.agents.evaluate import evaluate_env, random_policy_fn
from simtoreal.agents.factory import DQNConfig, SACConfig, TD3Config, load_teacher
from simtoreal.envs.state_fns import EPISODE_CAP, STATE_FNS, EnvMaker, make_state_env
from simtoreal.errors import ConfigError
from simtoreal.train import main
from simtoreal.train.gym import (
    GymPPOConfig,
    GymTask,
    GymTrainConfig,
    load_config_of,
    resume,
    train,
)
from simtoreal.train.presets import PRESETS

DOORKEY = "MiniGrid-DoorKey-5x5-v0"
GYM_PRESETS = [i for i in PRESETS if not i.startswith("simtoreal/")]


def _config(run_dir: Path | None, **overrides) -> GymTrainConfig:
    """A tiny CartPole run: small evaluations, no progress bar, no GIF."""
    base = {
        "run_dir": run_dir,
        "total_steps": 2_048,
        "n_envs": 4,
        "eval_every": 1_024,
        "val_episodes": 4,
        "eval_episodes": 8,
        "checkpoint_every": 1_024,
        "gif_episodes": 0,
        "progress_bar": False,
        "ppo": GymPPOConfig(n_steps=128),
    }
    return GymTrainConfig(**{**base, **overrides})


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _parsed(monkeypatch, *argv: str) -> GymTrainConfig:
    """The config ``train ARGV`` would train, without training."""
    seen = {}
    monkeypatch.setattr("simtoreal.train.gym.train", lambda c, overwrite: seen.update(c=c) or {})
    monkeypatch.setattr("simtoreal.train.gym.print_summary", lambda s: None)
    main(list(argv))
    return seen["c"]


# -- tiny teachers learn ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("gym") / "cartpole"
    config = _config(
        run_dir,
        total_steps=12_288,
        n_envs=8,
        eval_every=4_096,
        checkpoint_every=4_096,
        val_episodes=8,
        eval_episodes=20,
        gif_episodes=1,
        ppo=GymPPOConfig(learning_rate=1e-3, n_steps=32, batch_size=256, n_epochs=20,
                         gamma=0.98, gae_lambda=0.8),
    )  # fmt: skip
    return run_dir, train(config)


def test_cartpole_ppo_teacher_learns_well_above_random(cartpole_run):
    _, summary = cartpole_run
    assert summary["mean_return"] > 150  # a random policy averages about 22
    assert summary["success_rate"] is None  # CartPole defines no success
    assert summary["return_ci"][0] <= summary["mean_return"] <= summary["return_ci"][1]


def test_run_directory_and_summary(cartpole_run):
    run_dir, summary = cartpole_run
    for name in ("config.json", "model.zip", "best_model.zip", "metrics.jsonl", "policy.gif"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").glob("step_*.zip"))
    assert list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["algo"] == "ppo" and summary["env_id"] == "CartPole-v1"
    assert summary["state_fn"] is None and summary["n_episodes"] == 20
    assert (
        summary["observation_space"].startswith("Box(") and summary["action_space"] == "Discrete(2)"
    )
    assert summary["total_steps"] >= 12_288 and summary["wall_time_s"] > 0


def test_load_the_teacher_and_its_env(cartpole_run):
    run_dir, summary = cartpole_run
    model, _ = load_teacher(run_dir)
    config = load_config_of(run_dir)
    result = evaluate_env(
        lambda obs: model.predict(obs, deterministic=True)[0], config.env_maker(), 20
    )
    assert result.mean_return == pytest.approx(summary["mean_return"])


def test_pendulum_sac_teacher_beats_random(tmp_path):
    config = _config(
        tmp_path / "pendulum",
        env_id="Pendulum-v1",
        algo="sac",
        total_steps=4_000,
        n_envs=1,
        eval_every=4_000,
        checkpoint_every=10_000,
        val_episodes=2,
        eval_episodes=8,
        sac=SACConfig(batch_size=64),
    )
    summary = train(config)
    random = evaluate_env(_random_box, config.env_maker(), 8)
    assert random.mean_return < -900
    assert summary["mean_return"] > random.mean_return + 400


def _random_box(obs: np.ndarray) -> np.ndarray:
    return np.random.default_rng(0).uniform(-2, 2, size=(len(obs), 1))


def test_dqn_teacher_runs_and_saves(tmp_path):
    config = _config(tmp_path / "dqn", algo="dqn", dqn=DQNConfig(learning_starts=200))
    summary = train(config)
    assert summary["algo"] == "dqn"
    assert list((tmp_path / "dqn" / "checkpoints").glob("*.replay.pkl"))
    model, config_dict = load_teacher(tmp_path / "dqn")
    assert type(model).__name__ == "DQN" and config_dict["algo"] == "dqn"


def test_td3_on_pendulum_runs(tmp_path):
    config = _config(
        tmp_path / "td3", env_id="Pendulum-v1", algo="td3", total_steps=400, n_envs=1,
        eval_every=400, val_episodes=1, eval_episodes=1, td3=TD3Config(learning_starts=100),
    )  # fmt: skip
    assert train(config)["algo"] == "td3"


# -- resume -----------------------------------------------------------------------------------


def test_resume_finishes_a_killed_run(tmp_path):
    run_dir = tmp_path / "run"
    first = train(_config(run_dir))
    (run_dir / "summary.json").unlink()  # as if killed after the last checkpoint
    resumed = resume(run_dir)
    assert resumed["total_steps"] == first["total_steps"]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert steps == sorted(set(steps))


def test_resume_through_the_cli(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("simtoreal.train.gym.resume", lambda d: seen.append(d) or {})
    monkeypatch.setattr("simtoreal.train.gym.print_summary", lambda s: None)
    main(["gym", "--resume", str(tmp_path)])
    assert seen == [tmp_path]


# -- the command line and presets -------------------------------------------------------------


def test_env_id_shorthand_goes_to_the_gym_command(monkeypatch):
    config = _parsed(monkeypatch, "Acrobot-v1", "--total-steps", "1234", "--seed", "2")
    assert config.env_id == "Acrobot-v1" and config.total_steps == 1234 and config.seed == 2
    assert config == _parsed(monkeypatch, "gym", "--env-id", "Acrobot-v1", "--total-steps",
                             "1234", "--seed", "2")  # fmt: skip


@pytest.mark.parametrize("env_id", GYM_PRESETS)
def test_every_gym_preset_is_a_valid_config_that_changes_something(env_id):
    config = GymTrainConfig.for_env(env_id)
    assert config != GymTrainConfig(env_id=env_id, state_fn=config.state_fn)


def test_the_preset_fills_in_and_a_flag_wins(monkeypatch):
    config = _parsed(monkeypatch, "Pendulum-v1", "--sac.batch-size", "128")
    assert (
        config.algo == "sac"
        and config.sac.learning_rate == PRESETS["Pendulum-v1"]["sac"]["learning_rate"]
    )
    assert config.sac.batch_size == 128
    config = _parsed(monkeypatch, DOORKEY, "--state-fn", "minigrid_full")
    assert (
        config.state_fn == "minigrid_full" and config.total_steps == PRESETS[DOORKEY]["total_steps"]
    )


def test_a_minigrid_id_without_its_own_preset_gets_the_full_grid_state_and_a_flag_wins(
    monkeypatch,
):
    # MiniGrid's dict observation cannot be flattened: the family preset names the state
    # function, so any MiniGrid or BabyAI id trains without --state-fn.
    for env_id in ("MiniGrid-Empty-5x5-v0", "minigrid:MiniGrid-Empty-8x8-v0"):
        assert _parsed(monkeypatch, env_id, "--total-steps", "999").state_fn == "minigrid_full"
    mine = _parsed(monkeypatch, "MiniGrid-Empty-5x5-v0", "--state-fn", "minigrid_pose")
    assert mine.state_fn == "minigrid_pose"
    assert _parsed(monkeypatch, "Acrobot-v1").state_fn is None


# -- bad input: a clear error that names the fix, exit status 2, nothing written --------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"env_id": "CartPole-v9"}, "did you mean CartPole-v1"),
        ({"env_id": DOORKEY}, "--state-fn"),
        ({"env_id": DOORKEY, "state_fn": "pose"}, "minigrid_pose"),
        ({"algo": "sac"}, "Box.*ppo, a2c or dqn"),
        ({"algo": "td3"}, "Box.*ppo, a2c or dqn"),
        ({"env_id": "Pendulum-v1", "algo": "dqn"}, "Discrete.*sac or td3"),
        ({"algo": "trpo"}, "ppo, a2c, dqn, sac, td3"),
        ({"n_envs": 0}, "n_envs=0: use a positive integer"),
        ({"frame_stack": 0}, "frame_stack=0"),
        ({"obs_noise": (0.1, 0.2)}, "one per state entry \\(4 for CartPole-v1\\)"),
        ({"obs_noise": (-0.1,)}, "std|deviation >= 0"),
        ({"total_steps": -5}, "positive integer"),
        ({"success": "goal"}, "auto, is_success"),
        ({"vec_env": "ray"}, "dummy, subproc"),
        ({"env_kwargs": {"colour": "red"}}, "--env-kwargs"),
        ({"ppo": GymPPOConfig(n_steps=8, batch_size=64)}, "batch_size"),
    ],
)
def test_bad_input_is_refused(overrides, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        _config(tmp_path / "run", **overrides)


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["CartPole-v9"], "did you mean CartPole-v1"),
        (["gym", "--env-id", DOORKEY, "--state-fn", "None"], "--state-fn NAME"),  # preset names one
        (["Pendulum-v1", "--algo", "dqn"], "sac or td3 for continuous actions"),
        (["CartPole-v1", "--algo", "sac"], "ppo, a2c or dqn for discrete actions"),
        (["CartPole-v1", "--n-envs", "0"], "use a positive integer"),
        (["CartPole-v1", "--frame-stack", "0"], "frame_stack=0"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(argv, fix, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--run-dir", str(run_dir)])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())  # tyro boxes flag errors
    assert fix in err
    assert not run_dir.exists()


# -- state functions --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STATE_FNS))
def test_minigrid_state_fn_shape_space_and_determinism(name):
    first, second = (make_state_env(DOORKEY, state_fn=name) for _ in range(2))
    actions = [2, 1, 2, 3, 0, 2, 5, 2]  # forward, turn, pick up, toggle: the state changes
    states = []
    for env in (first, second):
        obs, _ = env.reset(seed=7)
        trajectory = [obs]
        for action in actions:
            trajectory.append(env.step(action)[0])
        states.append(np.stack(trajectory))
    assert states[0].shape == (len(actions) + 1, *first.observation_space.shape)
    assert states[0].dtype == np.float32
    assert all(first.observation_space.contains(s) for s in states[0])
    np.testing.assert_array_equal(states[0], states[1])  # a function of the env's state
    assert len({s.tobytes() for s in states[0]}) > 1
    other = make_state_env(DOORKEY, state_fn=name).reset(seed=8)[0]
    assert not np.array_equal(other, states[0][0])  # the layout is in the state


def test_minigrid_pose_reads_the_layout():
    env = make_state_env(DOORKEY, state_fn="minigrid_pose")
    obs, _ = env.reset(seed=0)
    grid = env.unwrapped
    np.testing.assert_allclose(obs[:2], np.array(grid.agent_pos) / 4)
    assert obs[6] == 0.0  # carries nothing
    assert obs[7] == obs[10] == obs[13] == 1.0  # key, door and goal present
    assert obs[16:].tolist() == [0.0, 1.0]  # the door is closed and locked


def test_frame_stack_concatenates_states():
    env = EnvMaker("CartPole-v1", frame_stack=3)()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12,) and np.array_equal(obs[:4], obs[8:])
    obs = env.step(0)[0]
    assert not np.array_equal(obs[4:8], obs[8:])


def test_obs_noise_reaches_training_envs_only(tmp_path):
    """The noise is in the training envs (per entry, seeded by the env), not in the env that
    evaluations and transfer's paired states use."""
    config = _config(tmp_path / "run", obs_noise=(0.0, 0.0, 0.0, 0.5))
    clean, noisy = config.env_maker()(), config.env_maker(noisy=True)()
    (a, _), (b, _), (c, _) = clean.reset(seed=3), noisy.reset(seed=3), noisy.reset(seed=3)
    assert np.array_equal(a[:3], b[:3]) and abs(b[3] - a[3]) > 1e-4
    assert np.array_equal(b, c)  # seeded: the same noise again
    noise = np.array([noisy.reset(seed=i)[0][3] - clean.reset(seed=i)[0][3] for i in range(300)])
    assert 0.4 < noise.std() < 0.6
    envs = GymTask(config).build_env()
    assert envs.get_attr("std")[0][3] == pytest.approx(0.5)
    envs.close()


class _NoStepAfterEnd(gym.Wrapper):
    """Raises when stepped after its episode ended (as some envs do; CartPole only warns)."""

    def reset(self, **kwargs):
        self.ended = False
        return self.env.reset(**kwargs)

    def step(self, action):
        if self.ended:
            raise RuntimeError("stepped after the episode ended")
        out = self.env.step(action)
        self.ended = out[2] or out[3]
        return out


def _strict_cartpole() -> gym.Env:
    return _NoStepAfterEnd(gym.make("CartPole-v1"))


def test_evaluation_in_subprocesses_never_steps_an_ended_env():
    """Subprocess envs are stepped together, idle ones too: an idle env whose episode ends is
    reset, never stepped past its end. Random CartPole episodes end at different times."""
    gen = np.random.default_rng(0)
    policy = lambda obs: gen.integers(0, 2, len(obs))  # noqa: E731
    result = evaluate_env(policy, _strict_cartpole, 12, 0, "none", 8, True)
    assert result.n_episodes == 12 and result.mean_return > 5


def test_evaluate_env_success_rules():
    doorkey = EnvMaker(DOORKEY, state_fn="minigrid_pose")
    result = evaluate_env(random_policy_fn(0, 7), doorkey, 6, success="positive_reward")
    assert result.n_episodes == 6 and 0.0 <= result.success_rate <= 1.0
    assert result.success_ci[0] <= result.success_rate <= result.success_ci[1]
    cartpole = EnvMaker("CartPole-v1")
    for rule in ("none", "is_success"):  # CartPole reports no success: undefined, not 0
        result = evaluate_env(random_policy_fn(0, 2), cartpole, 4, success=rule)
        assert result.success_rate is None and result.success_ci is None


def test_evaluation_is_independent_of_parallel_envs(cartpole_run):
    run_dir, _ = cartpole_run
    model, _ = load_teacher(run_dir)
    maker = load_config_of(run_dir).env_maker()
    policy = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
    one, many = (evaluate_env(policy, maker, 6, n_parallel=n) for n in (1, 4))
    assert dataclasses.asdict(one) == dataclasses.asdict(many)


def test_a_toy_text_env_trains_and_draws_its_gif(tmp_path):
    """FrozenLake: a Discrete observation (flattened one-hot) and a Discrete action that the env
    indexes a dict with, so the GIF's single-env steps must pass a Python int, not SB3's 0-d
    array (which once raised "unhashable type")."""
    config = _config(tmp_path / "run", env_id="FrozenLake-v1", gif_episodes=1)
    summary = train(config)
    assert summary["env_id"] == "FrozenLake-v1"
    assert (tmp_path / "run" / "policy.gif").stat().st_size > 0


class _Endless(ConstantEnv):
    """Never terminates: an id registered without max_episode_steps."""

    terminates = False


def _steps_to_end(env: gym.Env) -> int:
    env.reset(seed=0)
    for n in range(1, 10_000):
        if any(env.step(0)[2:4]):
            return n
    return -1


def test_an_env_without_an_episode_limit_gets_one_with_a_warning():
    gym.register("simtoreal_test/Endless-v0", entry_point=_Endless)
    try:
        with pytest.warns(UserWarning, match="registers no episode limit.*max_episode_steps"):
            capped = make_state_env("simtoreal_test/Endless-v0")
        assert _steps_to_end(capped) == EPISODE_CAP
        chosen = make_state_env("simtoreal_test/Endless-v0", {"max_episode_steps": 7})
        assert _steps_to_end(chosen) == 7
    finally:
        gym.registry.pop("simtoreal_test/Endless-v0")


def test_an_env_with_its_own_step_limit_is_not_capped_or_warned_about():
    """MiniGrid registers no max_episode_steps but ends episodes at its own ``max_steps``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make_state_env(DOORKEY, state_fn="minigrid_full")
    assert _steps_to_end(env) == env.unwrapped.max_steps == 250
