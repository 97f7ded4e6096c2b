"""Transfer for any Gymnasium env (issue 12): every teacher kind's head and loss, frame domains,
paired collection in subprocesses, tiny end-to-end transfers on CartPole (discrete) and Pendulum
(continuous), a DQN student, save / load of each student kind, and every refused input."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tiny_envs import ConstantEnv

from simtoreal.agents.evaluate import evaluate_env
from simtoreal.agents.factory import load_teacher
from simtoreal.envs.state_fns import EnvMaker
from simtoreal.errors import ConfigError, SimToRealError
from simtoreal.train import main as train_main
from simtoreal.train.gym import GymTrainConfig, train
from simtoreal.transfer.__main__ import main as transfer_main
from simtoreal.transfer.adapter_io import load_adapter
from simtoreal.transfer.augment import appearance
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import stack_frames
from simtoreal.transfer.frame_domains import FRAME_DOMAINS, apply_frame_domain
from simtoreal.transfer.gym_data import (
    PackedVectorEnv,
    PairedEnvMaker,
    collect_vector,
    random_actions,
    vector_env,
)
from simtoreal.transfer.gym_pipeline import recovered
from simtoreal.transfer.heads import teacher_head
from simtoreal.transfer.pipeline import load_student, run_transfer
from simtoreal.transfer.training import CHECKPOINT_FILE

TINY = {  # a transfer that runs in seconds: small data, few evaluation episodes
    "frames": 3_000,
    "epochs": 2,
    "dagger_share": 0.0,
    "eval_episodes": 4,
    "num_envs": 1,
    "gif_episodes": 0,
    "robustness_episodes": 0,
}


def _teacher(run_dir: Path, env_id: str, algo: str, steps: int, **overrides) -> Path:
    """A teacher trained by ``train gym`` into ``run_dir`` (tiny evaluations, no GIF)."""
    config = GymTrainConfig.for_env(
        env_id,
        run_dir=run_dir,
        algo=algo,
        total_steps=steps,
        eval_every=steps,
        val_episodes=2,
        eval_episodes=4,
        checkpoint_every=steps,
        gif_episodes=0,
        progress_bar=False,
        **overrides,
    )
    train(config)
    return run_dir


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    """One tiny teacher per algorithm (untrained but for CartPole's PPO, which is the preset)."""
    root = tmp_path_factory.mktemp("anyenv")
    return {
        "ppo": _teacher(root / "ppo", "CartPole-v1", "ppo", 20_000),
        "dqn": _teacher(root / "dqn", "CartPole-v1", "dqn", 2_000, dqn={"learning_starts": 500}),
        "sac": _teacher(root / "sac", "Pendulum-v1", "sac", 400, sac={"learning_starts": 100}),
        "td3": _teacher(root / "td3", "Pendulum-v1", "td3", 400, td3={"learning_starts": 100}),
        "ppo_box": _teacher(
            root / "ppo_box",
            "Pendulum-v1",
            "ppo",
            1_024,
            n_envs=2,
            ppo={"n_steps": 256, "batch_size": 64},
        ),
    }


@pytest.fixture(scope="module")
def pendulum_teacher(tmp_path_factory) -> Path:
    """A SAC teacher on Pendulum trained long enough to swing up (6k steps, about half a minute)."""
    root = tmp_path_factory.mktemp("pendulum")
    return _teacher(root / "sac", "Pendulum-v1", "sac", 6_000, sac={"learning_starts": 100})


# -- teacher kinds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algo", "kind"),
    [
        ("ppo", "categorical"),
        ("dqn", "q_values"),
        ("sac", "squashed_gaussian"),
        ("td3", "deterministic"),
        ("ppo_box", "gaussian"),
    ],
)
def test_each_teacher_kind_gives_its_own_actions(teachers, algo, kind):
    """The head on the encoder's latent acts as the teacher's own deterministic predict."""
    teacher, _ = load_teacher(teachers[algo])
    head = teacher_head(teacher)
    assert head.kind == kind
    states = np.stack([teacher.observation_space.sample() for _ in range(32)])
    with torch.no_grad():
        out = head.head(head.encoder(torch.as_tensor(states)))
    expected, _ = teacher.predict(states, deterministic=True)
    np.testing.assert_allclose(head.act(out), expected, rtol=1e-4, atol=1e-4)
    assert float(head.action_loss(out, out)) == pytest.approx(0.0, abs=1e-6)
    assert float(head.action_loss(0.5 - out, out)) > 1e-3


# -- frame domains and paired data -------------------------------------------------------------


def test_frame_domains_keep_shape_and_fix_the_look_per_episode():
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for domain in FRAME_DOMAINS:
        a, b = (apply_frame_domain(frame, domain, 5, 0) for _ in range(2))
        assert a.shape == frame.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    other = apply_frame_domain(frame, "randomized", 6, 0)
    assert not np.array_equal(apply_frame_domain(frame, "randomized", 5, 0), other)
    with pytest.raises(ConfigError, match="frame domain"):
        PairedEnvMaker(EnvMaker("CartPole-v1"), "mars")()


def test_appearance_draws_one_look_for_every_stacked_frame():
    x = torch.rand(4, 3, 8, 8).repeat(1, 3, 1, 1)  # three identical frames per sample
    out = appearance(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    torch.testing.assert_close(out[:, :3], out[:, 3:6])


def test_collection_in_subprocesses_pairs_states_with_their_frames():
    maker = PairedEnvMaker(EnvMaker("CartPole-v1"), "sim", frame_stack=2)
    envs = vector_env(maker, 2)
    data = collect_vector(envs, 50, random_actions(envs.single_action_space, 0), seed=3)
    envs.close()
    assert data.states.shape == (50, 4) and data.frames(slice(None)).shape == (50, 64, 64, 6)
    # the same seeds in this process give the same pairs
    single = vector_env(maker, 2, processes=False)
    again = collect_vector(single, 50, random_actions(single.single_action_space, 0), seed=3)
    single.close()
    np.testing.assert_array_equal(data.states, again.states)
    np.testing.assert_array_equal(data.frames(slice(None)), again.frames(slice(None)))


def test_collected_stacks_are_the_observed_stacks_with_each_frame_stored_once():
    """Each frame is stored once, and every pair's stack is exactly the observation the env gave
    (recorded here by stepping the same envs by hand), across episode ends and resets."""
    maker = PairedEnvMaker(EnvMaker("CartPole-v1"), "randomized", frame_stack=3, image_size=16)
    envs = vector_env(maker, 3, processes=False)
    data = collect_vector(envs, 120, random_actions(envs.single_action_space, 0), seed=4)
    envs.close()
    by_hand = vector_env(maker, 3, processes=False)
    act = random_actions(by_hand.single_action_space, 0)
    obs, _ = by_hand.reset(seed=[4, 5, 6])
    seen, ends = [], 0
    for _ in range(40):
        seen.append(obs["image"])
        obs, _, terminated, truncated, _ = by_hand.step(act(obs))
        ends += int(terminated.sum() + truncated.sum())
    by_hand.close()
    assert ends > 0  # random CartPole episodes end within 40 steps
    np.testing.assert_array_equal(data.frames(slice(None)), np.concatenate(seen))
    np.testing.assert_array_equal(data.frames(np.array([7, 2])), np.concatenate(seen)[[7, 2]])
    assert data.images.shape == (120, 16, 16, 3)  # one frame a pair, not three
    both = data.concat(data)
    np.testing.assert_array_equal(both.frames(slice(120, None)), data.frames(slice(None)))
    assert both.nbytes == 2 * data.nbytes


@pytest.mark.parametrize(("channels", "k"), [(3, 3), (1, 2), (3, 1), (4, 5)])
def test_stack_frames_puts_each_indexed_frame_on_the_channels_in_order(channels, k):
    gen = np.random.default_rng(channels * 10 + k)
    frames = gen.integers(0, 256, (50, 7, 9, channels), np.uint8)
    index = gen.integers(0, 50, (11, k))
    stacked = stack_frames(frames, index)
    assert stacked.shape == (11, 7, 9, k * channels)
    for i in range(11):
        for j in range(k):
            np.testing.assert_array_equal(
                stacked[i, ..., j * channels : (j + 1) * channels], frames[index[i, j]]
            )


def test_packed_processes_step_like_one_vector_env():
    """Four envs in two processes, two each: the same observations, rewards and episode ends, in
    the same order, as four envs in this process, across resets."""
    maker = PairedEnvMaker(EnvMaker("CartPole-v1"), "randomized", frame_stack=2, image_size=24)
    packed, single = vector_env(maker, 4, workers=2), vector_env(maker, 4, processes=False)
    assert isinstance(packed, PackedVectorEnv) and (packed.procs, packed.num_envs) == (2, 4)
    assert packed.single_action_space == single.single_action_space
    assert packed.single_observation_space == single.single_observation_space
    try:
        seeds = [11, 5, 8, 2]
        (a, _), (b, _) = packed.reset(seed=seeds), single.reset(seed=seeds)
        actions, ends = np.random.default_rng(0), 0
        for _ in range(40):
            act = actions.integers(0, 2, 4)
            (a, *ra), (b, *rb, _) = packed.step(act)[:4], single.step(act)
            for key in ("state", "image"):
                np.testing.assert_array_equal(a[key], b[key])
            for x, y in zip(ra, rb, strict=True):
                np.testing.assert_array_equal(x, y)
            ends += int(rb[1].sum() + rb[2].sum())
        assert ends > 0  # random CartPole episodes end within 40 steps
    finally:
        packed.close()
        single.close()


def test_vector_env_shares_envs_evenly_among_processes():
    maker = PairedEnvMaker(EnvMaker("CartPole-v1"), "sim", image_size=16)
    for n_envs, workers, procs in ((6, 4, 3), (4, 8, 4)):
        envs = vector_env(maker, n_envs, workers=workers)
        assert (envs.procs, envs.num_envs) == (procs, n_envs)
        envs.close()
    for n_envs, workers in ((5, 2), (3, 1)):  # no even share: in this process
        envs = vector_env(maker, n_envs, workers=workers)
        assert not isinstance(envs, PackedVectorEnv)
        envs.close()


def test_evaluation_in_subprocesses_matches_in_process():
    maker = PairedEnvMaker(EnvMaker("CartPole-v1"), "real", image_only=True)
    policy = lambda obs: (obs[..., 0].mean((1, 2)) > 200).astype(int)  # noqa: E731
    here, there = (
        evaluate_env(policy, maker, 5, 10, "none", 3, processes=p) for p in (False, True)
    )
    assert here == there


def test_alternative_action_losses_vanish_only_at_the_teacher(teachers):
    """SAC's pre-tanh KL and DQN's softmax KL: zero when the student's output is the teacher's,
    positive otherwise; the softmax ignores a constant shift of the Q-values (it matches their
    ranking, not their values), the MSE does not."""
    g = torch.Generator().manual_seed(0)
    sac = teacher_head(load_teacher(teachers["sac"])[0]).use_loss("kl")
    out = torch.randn(16, 2, generator=g)  # Pendulum: pre-tanh mean and log-std
    assert sac.action_loss(out, out).abs() < 1e-6
    assert sac.action_loss(out + 0.3, out) > 0.01
    same_std = out.clone()
    same_std[:, 0] += 0.5  # the means differ by 0.5, the log-stds agree: KL = 0.5^2 / (2 sigma^2)
    expected = (0.25 / (2 * torch.exp(2 * out[:, 1]))).mean()
    torch.testing.assert_close(sac.action_loss(same_std, out), expected)

    dqn = teacher_head(load_teacher(teachers["dqn"])[0])
    q = torch.randn(64, 2, generator=g)
    dqn.prepare(q)

    def mse(student, teacher):
        return dqn.use_loss("mse").action_loss(student, teacher)

    def softmax(student, teacher):
        return dqn.use_loss("softmax").action_loss(student, teacher)

    assert softmax(q, q).abs() < 1e-6 and softmax(q + 5.0, q).abs() < 1e-5
    assert mse(q + 5.0, q) > 1.0 and softmax(q.flip(1), q) > 0.01
    assert dqn.state()["temperature"] > 0


def test_action_loss_reaches_the_summary_and_a_wrong_one_is_refused(tmp_path, teachers):
    summary = _transfer(
        tmp_path, teachers["dqn"], frames=600, epochs=1, action_loss="mse", gif_episodes=1
    )
    assert summary["action_loss"] == "mse" and summary["teacher_kind"] == "q_values"
    assert (tmp_path / "t" / "student.gif").stat().st_size > 1_000  # what the student saw
    assert summary["train"]["last_loss"]["action_kl"] >= 0
    _refused(
        tmp_path, teachers["sac"], "does not apply to a squashed_gaussian", action_loss="softmax"
    )
    _refused(tmp_path, teachers["ppo"], "auto or kl", action_loss="mse")
    with pytest.raises(ConfigError, match="action_loss='huber'"):
        TransferConfig(action_loss="huber")


# -- end to end --------------------------------------------------------------------------------


def _transfer(tmp_path: Path, teacher: Path, **overrides) -> dict:
    return run_transfer(
        TransferConfig(teacher=teacher, run_dir=tmp_path / "t", **{**TINY, **overrides})
    )


@pytest.mark.slow  # an expected failure: it would spend a minute of every CI run to fail
@pytest.mark.xfail(
    reason="not met at this scale: CartPole's students hold the pole only with the preset's "
    "camera, 32 keypoints and noise-trained teacher (150k steps) at 60k frames (recovered 0.95, "
    "3 seeds), not with a 20k-step teacher and 4k frames. docs/transfer.md, 'Any Gymnasium env'",
    strict=False,
)
def test_cartpole_student_beats_random(tmp_path, teachers):
    summary = _transfer(tmp_path, teachers["ppo"], frames=4_000, epochs=4, eval_episodes=4)
    student = summary["student"]["sim"]["mean_return"]
    assert student > 2 * summary["random_policy"]["mean_return"], summary["student"]
    assert isinstance(load_student(tmp_path / "t"), type(load_teacher(teachers["ppo"])[0]))


@pytest.mark.slow  # 5-10 minutes on 2 cores; 3k and 10k frames were not enough (docs/transfer.md)
def test_pendulum_student_beats_random(tmp_path, pendulum_teacher):
    """Continuous actions end to end: a SAC teacher that swings the pendulum up, distilled from
    20k frames (half the preset's, with its DAgger share), beats a random policy by a clear
    margin in the held-out ``real`` domain: over a quarter of the teacher's margin over random.
    Two runs at this budget (two teachers) kept 0.37 and 0.69 of it; the benchmark's 40k frames
    keep about all of it."""
    summary = _transfer(
        tmp_path,
        pendulum_teacher,
        frames=20_000,
        epochs=4,
        dagger_share=0.3,
        num_envs=4,
        eval_episodes=8,
    )
    teacher, floor = summary["teacher"]["mean_return"], summary["random_policy"]["mean_return"]
    student = summary["student"]["real"]["mean_return"]
    assert teacher > floor + 400, (teacher, floor)  # the fixture's teacher did learn
    assert summary["recovered"]["return_share_over_random"] > 0.25, (student, teacher, floor)
    assert summary["student_class"] == "SAC"


class _Reach(gym.Env):
    """A dot on a line, pushed by a continuous action towards the middle: a continuous-action
    task a SAC teacher learns in a thousand steps and a camera shows in one frame."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode, self.x = render_mode, 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.25 * float(np.asarray(action).reshape(-1)[0]), -1, 1))
        return np.array([self.x], np.float32), -abs(self.x), False, False, {}

    def render(self) -> np.ndarray:
        frame = np.full((64, 64, 3), 255, np.uint8)
        col = int(round((self.x + 1) * 28))
        frame[26:38, col : col + 8] = (200, 40, 40)
        return frame


@pytest.fixture
def reach_id():
    gym.register("simtoreal_test/Reach-v0", entry_point=_Reach, max_episode_steps=20)
    yield "simtoreal_test/Reach-v0"
    gym.registry.pop("simtoreal_test/Reach-v0")


def test_continuous_student_beats_random(tmp_path, reach_id):
    """Continuous actions end to end in the default suite: a SAC teacher on a camera-visible
    task, distilled from 3k frames, keeps most of its margin over random in ``real`` (0.99 when
    written; 3 epochs instead of 8 kept 0.63). About a minute on 2 cores."""
    teacher = _teacher(tmp_path / "sac", reach_id, "sac", 1_500, sac={"learning_starts": 200})
    summary = _transfer(tmp_path, teacher, frame_stack=1, epochs=8, eval_episodes=8)
    teacher_r, floor = summary["teacher"]["mean_return"], summary["random_policy"]["mean_return"]
    assert teacher_r > floor + 3, (teacher_r, floor)  # the teacher learned to reach the middle
    assert summary["recovered"]["return_share_over_random"] > 0.7, summary["student"]["real"]
    assert summary["student_class"] == "SAC"


def test_dqn_student_agrees_with_greedy_teacher(tmp_path, teachers):
    summary = _transfer(tmp_path, teachers["dqn"], frames=4_000, epochs=4)
    assert summary["teacher_kind"] == "q_values"
    pairs = summary["held_out_pairs"]["validation"]
    agreement, majority = pairs["action_agreement"], pairs["teacher_majority_share"]
    # above chance: more than always taking the teacher's commonest action (unless it always does)
    assert agreement > 0.7 and (agreement > majority + 0.05 or majority > 0.95), pairs


def test_killed_third_party_transfer_resumes_to_the_same_adapter(
    tmp_path, teachers, monkeypatch, interrupt_fit
):
    """A DQN transfer (its Q spread is checkpointed state) interrupted in its first DAgger round,
    then resumed: the same adapter as an uninterrupted run, the pairs collected again in
    subprocesses from their seeds and the round's starting weights."""
    kwargs = {
        "frames": 1_200,
        "epochs": 2,
        "dagger_share": 0.5,
        "dagger_rounds": 2,
        "num_envs": 2,
        "eval_episodes": 2,
        "checkpoint_seconds": 1e-9,
    }
    _transfer(tmp_path / "whole", teachers["dqn"], **kwargs)
    interrupt_fit(2, 2)  # the first DAgger round: stop after its second batch
    with pytest.raises(KeyboardInterrupt):
        _transfer(tmp_path / "cut", teachers["dqn"], **kwargs)
    monkeypatch.undo()
    cut = tmp_path / "cut" / "t"
    assert (cut / CHECKPOINT_FILE).is_file() and not (cut / "summary.json").exists()
    assert transfer_main(["--resume", str(cut)]) == 0
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["train"]["resumed"] and summary["train"]["frames"] == 1_200
    whole = load_adapter(tmp_path / "whole" / "t" / "adapter").state_dict()
    for name, value in load_adapter(cut / "adapter").state_dict().items():
        torch.testing.assert_close(value, whole[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algo", ["sac", "td3", "ppo_box"])
def test_every_continuous_student_saves_and_loads(tmp_path, teachers, algo):
    _transfer(tmp_path, teachers[algo], frames=600, epochs=1, eval_episodes=2)
    student = load_student(tmp_path / "t")
    teacher, _ = load_teacher(teachers[algo])
    assert load_adapter(tmp_path / "t" / "adapter").config.target == "vector"
    assert type(student) is type(teacher)
    frames = np.zeros((2, 64, 64, 9), np.uint8)
    action, _ = student.predict(frames, deterministic=True)
    assert action.shape == (2, *teacher.action_space.shape)
    frozen = [n for n, p in student.policy.named_parameters() if not p.requires_grad]
    assert frozen and all("features_extractor" not in n or "encoder" in n for n in frozen)


# -- refused inputs: a clear error and nothing written ------------------------------------------


class _NoRender(ConstantEnv):
    metadata = {"render_modes": []}


def _fake_teacher(tmp_path: Path, **config) -> Path:
    run = tmp_path / "teacher"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    return run


def _refused(tmp_path: Path, teacher: Path, match: str, **overrides) -> None:
    with pytest.raises(SimToRealError, match=match):
        run_transfer(TransferConfig(teacher=teacher, run_dir=tmp_path / "out", **overrides))
    assert not (tmp_path / "out").exists()


def test_an_env_that_cannot_render_is_refused(tmp_path):
    gym.register("simtoreal_test/NoRender-v0", entry_point=_NoRender, max_episode_steps=5)
    try:
        teacher = _fake_teacher(tmp_path, env_id="simtoreal_test/NoRender-v0")
        _refused(tmp_path, teacher, "cannot render rgb_array")
    finally:
        gym.registry.pop("simtoreal_test/NoRender-v0")


def test_an_unregistered_env_id_is_refused(tmp_path):
    _refused(tmp_path, _fake_teacher(tmp_path, env_id="CartPol-v1"), "did you mean CartPole-v1")


def _needs_a_missing_package(**kwargs):
    raise gym.error.DependencyNotInstalled(
        'Box2D is not installed, you can install it by run `pip install "gymnasium[box2d]"`'
    )


def test_an_env_whose_package_is_missing_is_refused_with_the_install_command(tmp_path, capsys):
    """Train and transfer alike: a clear error naming the install, and no run directory."""
    env_id = "simtoreal_test/NeedsBox2D-v0"
    gym.register(env_id, entry_point=_needs_a_missing_package)
    try:
        _refused(tmp_path, _fake_teacher(tmp_path, env_id=env_id), "not installed.*pip install")
        with pytest.raises(SystemExit) as exit_info:
            train_main(["gym", "--env-id", env_id, "--run-dir", str(tmp_path / "new")])
        assert exit_info.value.code == 2
        assert "needs a package that is not installed" in capsys.readouterr().err
        assert not (tmp_path / "new").exists()
    finally:
        gym.registry.pop(env_id)


def test_an_unflattenable_observation_without_state_fn_is_refused(tmp_path):
    teacher = _fake_teacher(tmp_path, env_id="MiniGrid-Empty-5x5-v0")
    _refused(tmp_path, teacher, "--state-fn")


def test_a_model_of_another_algorithm_than_its_config_is_refused(tmp_path, teachers):
    teacher = tmp_path / "mixed"
    teacher.mkdir()
    config = json.loads((teachers["td3"] / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "algo": "sac"}))
    (teacher / "best_model.zip").write_bytes((teachers["td3"] / "best_model.zip").read_bytes())
    _refused(tmp_path, teacher, "sac|SAC")


@pytest.mark.parametrize(
    "overrides",
    [{"severity": 0.25}, {"robustness_episodes": 50}, {"finetune_steps": 1_000},
     {"baseline": True}, {"train_domain": "sim"}, {"min_teacher_success": 0.5}],
)  # fmt: skip
def test_grid_only_options_are_refused_not_ignored(tmp_path, teachers, overrides):
    (name,) = overrides
    _refused(tmp_path, teachers["dqn"], f"--{name.replace('_', '-')} is not available", **overrides)


def test_the_camera_reaches_data_student_and_gif(tmp_path, teachers):
    """--frame-size and --crop: the adapter trains, the student is saved and acts on the cropped
    40x128 frames, and a camera is refused on the grid world (which renders its own)."""
    summary = _transfer(
        tmp_path,
        teachers["dqn"],
        frames=600,
        epochs=1,
        frame_stack=2,
        frame_size=(40, 128),
        crop=(0.375, 0.0, 0.8, 1.0),
        gif_episodes=1,
    )
    assert summary["student_class"] == "DQN"
    student = load_student(tmp_path / "t")
    assert student.observation_space.shape[-3:] in ((40, 128, 6), (6, 40, 128))
    assert (tmp_path / "t" / "student.gif").stat().st_size > 1_000
    saved = json.loads((tmp_path / "t" / "config.json").read_text())
    assert saved["frame_size"] == [40, 128] and saved["crop"] == [0.375, 0.0, 0.8, 1.0]
    with pytest.raises(ConfigError, match="--crop sets the camera of third-party envs"):
        run_transfer(TransferConfig(crop=(0.2, 0.0, 1.0, 1.0), run_dir=tmp_path / "grid"))
    assert not (tmp_path / "grid").exists()
    with pytest.raises(ConfigError, match="frame_size"):
        TransferConfig(frame_size=(64,))
    thin = (0.5, 0.0, 0.501, 1.0)  # 0.4 of one of CartPole's 400 rows
    _refused(tmp_path, teachers["dqn"], "keeps no pixel of the 600x400 render", crop=thin)


def test_a_frame_stack_of_zero_is_refused():
    with pytest.raises(ConfigError, match="frame_stack"):
        TransferConfig(frame_stack=0)


# -- the vector state estimator's pooling --------------------------------------------------------


@pytest.mark.parametrize("pool", ["spatial_softmax", "flatten"])
def test_vector_estimator_pools_and_round_trips(tmp_path, pool):
    """Both poolings learn a one-hot state laid out over the image (which cell of a 2x2 grid is
    lit) and survive save / load with the same outputs."""
    from simtoreal.agents.adapter import AdapterConfig
    from simtoreal.transfer.adapter_io import build_adapter, save_adapter

    torch.manual_seed(0)
    config = AdapterConfig(
        channels=(8, 8), kernels=(3, 3), strides=(2, 2), image_shape=(16, 16, 3),
        pool=pool, target="vector", state_dim=4, hidden=32,
    )  # fmt: skip
    estimator = build_adapter(config)
    cells = torch.randint(0, 4, (256,))  # a 2x2 grid of 8x8 cells, one lit: a one-hot state
    frames = torch.zeros(256, 3, 16, 16)
    for i, c in enumerate(cells.tolist()):
        frames[i, :, 8 * (c // 2) : 8 * (c // 2) + 8, 8 * (c % 2) : 8 * (c % 2) + 8] = 1.0
    states = torch.nn.functional.one_hot(cells, 4).float()
    estimator.set_standardisation(states)
    optimizer = torch.optim.Adam(estimator.parameters(), 3e-3)
    for _ in range(150):
        loss = estimator.state_loss(estimator.estimate(frames), states)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (estimator(frames).argmax(1) == cells).float().mean()
    assert estimator(frames).shape == (256, 4)
    assert accuracy > 0.95, (pool, float(accuracy))
    save_adapter(tmp_path / "a", estimator)
    again = load_adapter(tmp_path / "a")
    assert again.config.pool == pool
    with torch.no_grad():
        torch.testing.assert_close(again(frames), estimator(frames))


def test_pool_reaches_the_estimator_through_config_and_presets():
    """``--pool`` builds the estimator's pooling, and MiniGrid's preset picks ``flatten``."""
    from simtoreal.transfer.gym_pipeline import build_cnn
    from simtoreal.transfer.presets import with_transfer_preset

    for pool, layer in (("spatial_softmax", "SpatialSoftmax"), ("flatten", "Flatten")):
        cfg = with_transfer_preset(TransferConfig(pool=pool), "CartPole-v1")
        assert type(build_cnn(cfg, latent_dim=64, state_dim=4).keypoints).__name__ == layer
    doorkey = with_transfer_preset(TransferConfig(), "MiniGrid-DoorKey-5x5-v0")
    assert (doorkey.pool, doorkey.frame_stack) == ("flatten", 1)
    assert with_transfer_preset(TransferConfig(), "Acrobot-v1").pool == "spatial_softmax"
    # any other MiniGrid id gets the family's pooling and stack, not DoorKey's own budget
    empty = with_transfer_preset(TransferConfig(), "MiniGrid-Empty-8x8-v0")
    assert (empty.pool, empty.frame_stack, empty.frames) == ("flatten", 1, 60_000)
    assert doorkey.frames == 80_000


def test_cartpole_preset_gives_32_keypoints_and_a_flag_wins():
    """CartPole's preset widens the estimator to 32 keypoints (docs/transfer.md); other envs keep
    the default 16, and ``--channels`` replaces the preset's."""
    from simtoreal.transfer.gym_pipeline import build_cnn
    from simtoreal.transfer.presets import with_transfer_preset

    def keypoints(cfg: TransferConfig) -> int:
        return build_cnn(cfg, latent_dim=64, state_dim=4).mlp[0].in_features // 2

    assert keypoints(with_transfer_preset(TransferConfig(), "CartPole-v1")) == 32
    assert keypoints(with_transfer_preset(TransferConfig(), "Acrobot-v1")) == 16
    mine = TransferConfig(channels=(8, 8, 8), kernels=(3, 3, 1), strides=(2, 2, 1))
    assert keypoints(with_transfer_preset(mine, "CartPole-v1")) == 8


def test_cartpole_preset_trains_with_lighting_and_saturation_and_a_flag_wins():
    """CartPole's preset adds the lighting and saturation augmentations to training (chosen on
    validation: docs/transfer.md); they reach the distiller after the ``randomized`` appearance,
    other envs keep the default, and ``--augment`` replaces the preset's."""
    from stable_baselines3 import PPO

    from simtoreal.transfer.gym_pipeline import make_distiller
    from simtoreal.transfer.presets import with_transfer_preset

    teacher = PPO("MlpPolicy", gym.make("CartPole-v1"), device="cpu")  # untrained: labels only

    def augment(cfg: TransferConfig) -> tuple[str, ...]:
        cnn = torch.nn.Identity()  # the augmentations do not depend on the CNN
        return make_distiller(cfg, teacher, cnn, "cpu").augment

    cartpole = with_transfer_preset(TransferConfig(), "CartPole-v1")
    assert augment(cartpole) == ("appearance", "cutout", "lighting", "saturation")
    assert with_transfer_preset(TransferConfig(), "Acrobot-v1").augment == ("cutout",)
    mine = with_transfer_preset(TransferConfig(augment=("hue",)), "CartPole-v1")
    assert augment(mine) == ("appearance", "hue")


def _returns(mean_return: float) -> dict:
    return {"success_rate": None, "mean_return": mean_return}


def test_recovered_is_the_share_from_random_to_teacher_and_undefined_without_a_gap():
    rec = recovered(_returns(-300.0), _returns(-100.0), _returns(-500.0))
    assert rec["return_share_over_random"] == pytest.approx(0.5) and "undefined" not in rec
    # MountainCar after a short run: teacher and random both at -200. NaN would make summary.json
    # invalid JSON; the share is None and the reason names the fix.
    for teacher in (-200.0, -250.0):
        rec = recovered(_returns(-200.0), _returns(teacher), _returns(-200.0))
        assert rec["return_share_over_random"] is None
        assert "no better than random" in rec["undefined"] and "--total-steps" in rec["undefined"]
        json.dumps(rec, allow_nan=False)
