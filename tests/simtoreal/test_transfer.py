"""Transfer: tiny end-to-end runs, frozen teacher, adapter files, policy surgery, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simtoreal.agents.adapter import AdapterConfig
from simtoreal.agents.evaluate import evaluate, model_policy_fn, random_policy_fn
from simtoreal.agents.factory import load_teacher
from simtoreal.agents.surgery import build_student
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.errors import CheckpointError, ConfigError, DataError, IncompatibleError, RunDirError
from simtoreal.transfer.adapter_io import build_adapter, load_adapter, save_adapter
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import PairedData, collect, paired_batch, random_actor
from simtoreal.transfer.distill import Distiller
from simtoreal.transfer.pipeline import run_transfer, world_kwargs

EVAL_EPISODES = 300


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    return load_teacher(teacher_dir)[0]


def _distiller(teacher, **kwargs) -> Distiller:
    torch.manual_seed(0)
    return Distiller(teacher, build_adapter(AdapterConfig()), **kwargs)


def test_tiny_transfer_recovers_teacher_success_on_sim_images(teacher_dir, tmp_path):
    cfg = TransferConfig(
        teacher=teacher_dir,
        run_dir=tmp_path / "transfer",
        frames=6_000,
        epochs=6,
        train_domain="sim",
        dagger_share=0.0,
        num_envs=64,
        eval_episodes=EVAL_EPISODES,
        severities=(0.0,),
        severity=0.0,
        robustness_episodes=0,  # checked in test_transfer_reliability.py
    )
    summary = run_transfer(cfg)
    teacher_success = summary["teacher"]["success_rate"]
    student_sim = summary["student"]["sim"]["success_rate"]
    random_success = evaluate(random_policy_fn(0), {}, EVAL_EPISODES).success_rate
    assert teacher_success > 0.6
    assert student_sim > random_success + 0.25
    assert student_sim > 0.5 * teacher_success
    for name in (
        "config.json",
        "summary.json",
        "report.md",
        "metrics.jsonl",
        "student.zip",
        "adapter/adapter.safetensors",
        "adapter/adapter.json",
        "success_vs_severity.png",
    ):
        assert (tmp_path / "transfer" / name).is_file(), name
    assert (
        json.loads((tmp_path / "transfer" / "summary.json").read_text())["train"]["frames"] == 6_000
    )


def test_frozen_teacher_is_bit_identical_after_adapter_training(teacher):
    distiller = _distiller(teacher)
    before = {k: v.clone() for k, v in teacher.policy.state_dict().items()}
    adapter_before = [p.clone() for p in distiller.adapter.parameters()]
    data = collect(paired_batch({}, 32, "randomized"), 512, random_actor(0), seed=0)
    distiller.fit(data, 2, distiller.student.make_optimizer(1e-3), batch_size=64)
    for k, v in teacher.policy.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(
        not torch.equal(a, b)
        for a, b in zip(adapter_before, distiller.adapter.parameters(), strict=True)
    )


def test_dagger_share_collects_on_policy_frames(teacher_dir, tmp_path, monkeypatch):
    """DAgger frames come from states the student drives to: with beta=0 every DAgger action is
    the student's, so the student is asked for one action per env per DAgger step."""
    calls = []
    real_act = Distiller.student_act

    def counting(self, images):
        calls.append(len(images))
        return real_act(self, images)

    monkeypatch.setattr(Distiller, "student_act", counting)
    cfg = TransferConfig(
        teacher=teacher_dir,
        run_dir=tmp_path / "t",
        frames=1_024,
        epochs=1,
        dagger_share=0.5,
        dagger_rounds=2,
        dagger_beta=0.0,
        num_envs=64,
        eval_episodes=20,
        severities=(0.5,),
        gif_episodes=0,
        robustness_episodes=0,  # checked in test_transfer_reliability.py
    )
    summary = run_transfer(cfg)
    monkeypatch.undo()
    stages = [json.loads(line)["stage"] for line in (tmp_path / "t" / "metrics.jsonl").open()]
    assert summary["train"]["frames"] == 1_024 and summary["train"]["dagger_rounds"] == 2
    assert {"offline", "dagger0", "dagger1"} <= set(stages)
    # 2 rounds x 256 frames / 64 envs = 8 batched student calls of 64 frames during training
    # (evaluation calls come after and use other batch sizes).
    assert calls[:8] == [64] * 8


def test_adapter_saves_and_loads_to_identical_outputs(tmp_path):
    torch.manual_seed(1)
    adapter = build_adapter(AdapterConfig(channels=(8, 8, 4)))
    save_adapter(tmp_path / "adapter", adapter)
    loaded = load_adapter(tmp_path / "adapter")
    x = torch.rand(5, 3, 64, 64)
    assert torch.equal(adapter.eval()(x), loaded(x))
    assert loaded.config == adapter.config


def test_corrupt_or_missing_adapter_is_a_clear_error(tmp_path):
    save_adapter(tmp_path / "a", build_adapter(AdapterConfig()))
    weights = tmp_path / "a" / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_adapter(tmp_path / "a")
    with pytest.raises(RunDirError, match="adapter directory"):
        load_adapter(tmp_path / "missing")


def test_student_is_an_sb3_model_that_acts_from_images(teacher, tmp_path):
    distiller = _distiller(teacher)
    env = GridWorldVecEnv(4, seed=0, view="image", domain="sim")
    student = build_student(teacher, env, distiller.adapter.config)
    student.policy.features_extractor.load_state_dict(distiller.adapter.state_dict())
    frames = env.reset()
    expected = distiller.student_act(frames)
    actions, _ = student.predict(frames, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    student.save(tmp_path / "student.zip")
    reloaded = type(student).load(tmp_path / "student.zip", device="cpu")
    np.testing.assert_array_equal(reloaded.predict(frames, deterministic=True)[0], expected)
    head = [
        p
        for n, p in student.policy.named_parameters()
        if not n.startswith(("features", "pi_f", "vf_f"))
    ]
    assert head and not any(p.requires_grad for p in head)
    result = evaluate(model_policy_fn(student), {"domain": "sim"}, 8, view="image")
    assert result.n_episodes == 8 and result.mean_length > 0


def test_bad_teacher_dirs_are_refused(teacher_dir, tmp_path):
    with pytest.raises(RunDirError):
        run_transfer(TransferConfig(teacher=tmp_path / "nope", run_dir=tmp_path / "t1"))
    assert not (tmp_path / "t1").exists()  # refused before anything was written
    transfer_run, vision_run = tmp_path / "transfer", tmp_path / "vision"
    other_runs = {
        transfer_run: {"kind": "transfer", "teacher": str(teacher_dir)},
        vision_run: {"backbone": "resnet18", "image_size": 128},
    }
    for run, config in other_runs.items():
        run.mkdir()
        (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        RunDirError, match=f"transfer run, not a teacher: pass --teacher {teacher_dir}"
    ):
        run_transfer(TransferConfig(teacher=transfer_run, run_dir=tmp_path / "t2"))
    with pytest.raises(RunDirError, match="not a teacher run .* names no env_id"):
        run_transfer(TransferConfig(teacher=vision_run, run_dir=tmp_path / "t3"))
    assert not (tmp_path / "t2").exists() and not (tmp_path / "t3").exists()
    with pytest.raises(IncompatibleError, match="state view"):
        world_kwargs({"env_id": "CartPole-v1"})
    with pytest.raises(IncompatibleError, match="state view"):
        world_kwargs({"env_id": "simtoreal/GridWorldImage-v0"})


def test_mismatched_latent_or_image_shape_is_refused(teacher):
    env = GridWorldVecEnv(1, view="image")
    with pytest.raises(IncompatibleError, match="latent_dim=128"):
        build_student(teacher, env, AdapterConfig(latent_dim=64))
    with pytest.raises(IncompatibleError, match="frame_stack"):
        build_student(teacher, env, AdapterConfig(image_shape=(64, 64, 6)))


def test_empty_data_and_bad_config_are_refused(teacher):
    distiller = _distiller(teacher)
    empty = PairedData(np.zeros((0, 4), np.float32), np.zeros((0, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match="empty"):
        distiller.fit(empty, 1, distiller.student.make_optimizer(1e-3))
    with pytest.raises(ConfigError, match="frame budget"):
        TransferConfig(frames=10)
    with pytest.raises(ConfigError, match="loss"):
        TransferConfig(loss="l2")
    with pytest.raises(ConfigError, match="severity"):
        TransferConfig(severity=1.5)


def test_finetune_and_baseline_stages_report_what_they_measured(teacher_dir, tmp_path):
    cfg = TransferConfig(
        teacher=teacher_dir,
        run_dir=tmp_path / "t",
        frames=1_024,
        epochs=1,
        dagger_share=0.0,
        num_envs=64,
        eval_episodes=30,
        severities=(0.5,),
        finetune_steps=256,
        baseline=True,
        baseline_max_frames=2_048,
        robustness_episodes=0,  # checked in test_transfer_reliability.py
    )
    summary = run_transfer(cfg)
    tuned = summary["finetune"]
    # The head was frozen while fine-tuning, so putting it back on the GridEncoder changes nothing.
    assert tuned["retained_head_sim_success"] == tuned["teacher_sim_success"]
    assert (tmp_path / "t" / "student_finetuned.zip").is_file()
    base = summary["baseline"]
    final = base["final"]
    # It stopped for one of its two stated reasons: the frame budget or the wall-time budget.
    assert final["frames"] >= 2_048 or final["train_s"] >= base["budget_s"]
    assert final["frames"] > 0
    # Curve points are strictly increasing in wall time and bracket any crossing they report.
    times = [p["train_s"] for p in base["curve"]]
    assert times == sorted(times)
    if base["reached_target"] is not None:
        crossed = base["reached_target"]
        assert crossed["before_s"] < crossed["after_s"]
        assert crossed["success_rate"] >= base["target_success"]
    assert "Baseline" in (tmp_path / "t" / "report.md").read_text()


def test_finetune_with_a_scaled_head_learning_rate_changes_the_head(teacher, teacher_dir, tmp_path):
    from simtoreal.transfer.finetune import finetune_student

    distiller = _distiller(teacher)
    env = GridWorldVecEnv(1, view="image", domain="sim")
    student = build_student(teacher, env, distiller.adapter.config)
    cfg = TransferConfig(
        teacher=teacher_dir, finetune_steps=256, head_lr_scale=0.1, eval_episodes=20
    )
    result = finetune_student(student, teacher_dir, {}, cfg, tmp_path)
    tuned = type(student).load(tmp_path / "student_finetuned.zip", device="cpu")
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            tuned.policy.action_net.parameters(),
            teacher.policy.action_net.parameters(),
            strict=True,
        )
    ]
    assert any(changed)
    assert result["steps_run"] >= result["steps_requested"] == 256
