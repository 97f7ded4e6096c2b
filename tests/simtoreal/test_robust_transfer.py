"""Issue 11: frames rendered on the fly from stored states, the state-estimating adapter on the
obstacle world, coverage accounting of the robustness score, the occluder augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from simtoreal.agents.adapter import AdapterConfig
from simtoreal.agents.estimator import GridStateEstimator
from simtoreal.agents.evaluate import model_policy_fn
from simtoreal.agents.factory import load_teacher
from simtoreal.agents.surgery import build_student
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.envs.shifts import FAMILIES
from simtoreal.errors import ConfigError
from simtoreal.train import TrainConfig, train
from simtoreal.transfer.augment import AUGMENTATIONS, cutout
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import collect, paired_batch, random_actor
from simtoreal.transfer.distill import Distiller, linear_decay
from simtoreal.transfer.pipeline import run_transfer
from simtoreal.transfer.robustness import covered_families

OBSTACLE_WORLD = {"size": 8, "n_obstacles": 8}


def _stored_frames(world: dict, domain: str, n_envs: int, steps: int, seed: int) -> np.ndarray:
    """Frames as the env returned them, stepped with the same random actions as ``collect``."""
    batch = paired_batch(world, n_envs, domain)
    obs = batch.reset(seeds=seed + np.arange(n_envs))
    act = random_actor(seed)
    frames = [obs["image"]]
    for _ in range(steps - 1):
        obs, *_ = batch.step(act(obs))
        frames.append(obs["image"])
    return np.concatenate(frames)


@pytest.mark.parametrize("domain", ["randomized", "real", "sim"])
def test_frames_rendered_from_stored_states_equal_the_frames_observed(domain):
    data = collect(paired_batch(OBSTACLE_WORLD, 16, domain), 16 * 12, random_actor(3), 3)
    assert data.renders and data.images is None
    np.testing.assert_array_equal(
        data.frames(np.arange(len(data))), _stored_frames(OBSTACLE_WORLD, domain, 16, 12, 3)
    )


def test_a_new_draw_changes_appearance_not_the_world():
    data = collect(paired_batch(OBSTACLE_WORLD, 32, "randomized"), 256, random_actor(0), 0)
    idx = np.arange(0, 256, 3)
    first, again, other = data.frames(idx, 1), data.frames(idx, 1), data.frames(idx, 2)
    np.testing.assert_array_equal(first, again)  # a draw is deterministic
    assert (first != data.frames(idx, 0)).mean() > 0.5 and (first != other).mean() > 0.5
    # The world did not move: a sim render of the redrawn states shows the same cells.
    sim = collect(paired_batch(OBSTACLE_WORLD, 32, "sim"), 256, random_actor(0), 0)
    np.testing.assert_array_equal(sim.frames(idx, 0), sim.frames(idx, 5))
    np.testing.assert_array_equal(sim.states, data.states)


def test_pairs_hold_states_not_frames_and_frame_stacks_keep_frames():
    data = collect(paired_batch(OBSTACLE_WORLD, 64, "randomized"), 10_000, random_actor(0), 0)
    frame_bytes = 10_000 * 64 * 64 * 3
    assert data.nbytes < 0.05 * frame_bytes
    stacked = collect(
        paired_batch({**OBSTACLE_WORLD, "frame_stack": 2}, 8, "randomized"), 64, random_actor(0), 0
    )
    assert not stacked.renders and stacked.frames(slice(None)).shape == (64, 64, 64, 6)
    merged = data.concat(data)
    assert merged.renders and len(merged) == 20_000


@pytest.fixture(scope="module")
def obstacle_teacher(tmp_path_factory):
    """A briefly trained obstacle-world teacher (the GridMapEncoder of the world's preset)."""
    run_dir = tmp_path_factory.mktemp("obstacle-teacher") / "run"
    config = TrainConfig.for_env("simtoreal/GridWorldObstacles-v0")
    train(
        TrainConfig(**{**config.__dict__, "run_dir": run_dir, "total_steps": 8_192,
                       "eval_every": 8_192, "checkpoint_every": 8_192, "val_episodes": 50,
                       "eval_episodes": 50, "gif_episodes": 0, "progress_bar": False})
    )  # fmt: skip
    return load_teacher(run_dir)[0]


def test_state_estimator_reads_the_obstacle_world_and_the_student_acts_like_the_teacher(
    obstacle_teacher,
):
    """A tiny distillation on sim frames: the estimator recovers agent, goal and obstacle map, and
    the student (estimator -> frozen encoder -> frozen head) picks the teacher's actions."""
    torch.manual_seed(0)
    config = AdapterConfig(
        latent_dim=obstacle_teacher.policy.features_extractor.features_dim,
        channels=(32, 32, 32), kernels=(4, 3, 3), strides=(4, 1, 1),
        target="state", grid_size=8, obstacle_map=True,
    )  # fmt: skip
    distiller = Distiller(obstacle_teacher, GridStateEstimator(config))
    batch = paired_batch(OBSTACLE_WORLD, 128, "sim")
    data = collect(batch, 12_000, random_actor(0), 0)
    optimizer = distiller.student.make_optimizer(3e-3)
    distiller.fit(data, 4, optimizer, scheduler=linear_decay(optimizer, 4 * 12_000 // 256))
    held_out = collect(batch, 2_000, random_actor(1), 500_000)
    with torch.no_grad():
        x = torch.as_tensor(held_out.frames(slice(None))).permute(0, 3, 1, 2).float() / 255
        _, points, cells = distiller.adapter.estimate(x)
    truth = torch.as_tensor(held_out.states)
    cell_error = (points.reshape(-1, 4) - truth[:, :4] * 7).abs()
    assert (cell_error < 0.5).float().mean() > 0.95  # positions round to the right cell
    assert ((cells > 0) == (truth[:, 4:] > 0.5)).float().mean() > 0.98  # obstacle map
    assert distiller.agreement(held_out)["action_agreement"] > 0.9


def test_state_estimating_student_is_an_sb3_model_that_acts_like_the_distiller(
    obstacle_teacher,
):
    config = AdapterConfig(
        latent_dim=obstacle_teacher.policy.features_extractor.features_dim,
        target="state", grid_size=8, obstacle_map=True,
    )  # fmt: skip
    distiller = Distiller(obstacle_teacher, GridStateEstimator(config))
    env = GridWorldVecEnv(1, view="image", domain="sim", **OBSTACLE_WORLD)
    student = build_student(obstacle_teacher, env, config)
    student.policy.features_extractor.estimator.load_state_dict(distiller.adapter.state_dict())
    frames = collect(paired_batch(OBSTACLE_WORLD, 32, "randomized"), 64, random_actor(0), 0)
    images = frames.frames(slice(None))
    np.testing.assert_array_equal(model_policy_fn(student)(images), distiller.student_act(images))
    encoder = student.policy.features_extractor.encoder
    assert not any(p.requires_grad for p in encoder.parameters())


def test_state_target_needs_a_grid_size():
    with pytest.raises(ConfigError, match="grid_size"):
        AdapterConfig(target="state")
    with pytest.raises(ConfigError, match="target"):
        AdapterConfig(target="pixels")


def test_robustness_score_leaves_out_what_augmentations_cover():
    assert "occlusion" not in covered_families("randomized")
    assert "occlusion" in covered_families("randomized", ["cutout"])
    assert covered_families("sim") == frozenset()
    # every augmentation a run may name says what it covers (a run would otherwise fail after
    # training, at the robustness check)
    assert covered_families("sim", list(AUGMENTATIONS)) <= set(FAMILIES)
    assert "lighting" in covered_families("sim", ["lighting"])


def test_cutout_paints_occluders_of_one_colour_per_frame_across_a_stack():
    x = torch.rand(16, 6, 64, 64)
    gen = torch.Generator().manual_seed(0)
    y = cutout(x.clone(), gen)
    assert y.shape == x.shape and y.dtype == x.dtype
    changed = (y != x).any(1)
    assert 0.2 < changed.flatten(1).any(1).float().mean() < 0.8  # about half got occluders
    assert torch.equal((y[:, :3] != x[:, :3]).any(1), (y[:, 3:] != x[:, 3:]).any(1))
    again = cutout(x.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(y, again)


TINY = {"robustness_episodes": 0, "frames": 1_024, "dagger_share": 0.0, "num_envs": 64,
        "batch_size": 128, "eval_episodes": 8, "severities": (0.5,), "gif_episodes": 0,
        "torch_threads": 1}  # fmt: skip


def _adapter_weights(run_dir) -> float:
    tensors = load_file(run_dir / "adapter" / "adapter.safetensors")
    return sum(t.double().sum().item() for t in tensors.values())


def test_fresh_appearance_redraws_every_epoch_and_only_that(teacher_dir, tmp_path):
    def run(name, **kwargs):
        run_transfer(
            TransferConfig(teacher=teacher_dir, run_dir=tmp_path / name, **{**TINY, **kwargs})
        )
        return _adapter_weights(tmp_path / name)

    # One epoch sees the collected frames either way; a second epoch sees new draws only if fresh.
    assert run("one-fresh", epochs=1) == run("one-same", epochs=1, fresh_appearance=False)
    assert run("two-fresh", epochs=2) != run("two-same", epochs=2, fresh_appearance=False)


def test_pool_reaches_the_latent_adapter(teacher_dir, tmp_path):
    shapes = {}
    for pool in ("spatial_softmax", "flatten"):
        cfg = TransferConfig(teacher=teacher_dir, run_dir=tmp_path / pool, target="latent",
                             pool=pool, epochs=1, **TINY)  # fmt: skip
        run_transfer(cfg)
        tensors = load_file(tmp_path / pool / "adapter" / "adapter.safetensors")
        shapes[pool] = tuple(tensors["linear.0.weight"].shape)
    assert shapes["spatial_softmax"] != shapes["flatten"]
