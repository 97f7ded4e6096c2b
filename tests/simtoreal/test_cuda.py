"""The RL transfer on a CUDA device: skipped where there is none (CI), run by
``benchmarks/gpu_check.sh`` on a machine with a GPU. The vision stack's CUDA tests live in
tests/simtoreal/stacks/test_vision_device.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simtoreal.agents.evaluate import evaluate, model_policy_fn, random_policy_fn
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.pipeline import load_student, resume_transfer, run_transfer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _on_cuda(teacher_dir, run_dir, **kwargs) -> TransferConfig:
    """A small grid transfer on the GPU: 64 batched worlds, no robustness suite, no GIF."""
    base = {"num_envs": 64, "severities": (0.5,), "robustness_episodes": 0, "gif_episodes": 0}
    return TransferConfig(teacher=teacher_dir, run_dir=run_dir, device="cuda", **base, **kwargs)


def test_grid_transfer_on_cuda_learns_and_its_student_runs_on_the_cpu(teacher_dir, tmp_path):
    """The grid chain with the adapter, its augmentations and DAgger on the GPU: the student
    beats a random policy by a clear margin, and the saved student loads and acts on the CPU."""
    cfg = _on_cuda(
        teacher_dir, tmp_path / "t", frames=6_000, epochs=6, dagger_share=0.3, eval_episodes=200
    )
    summary = run_transfer(cfg)
    assert summary["device"].startswith("cuda")
    random_success = evaluate(random_policy_fn(0), {}, 200).success_rate
    assert summary["teacher"]["success_rate"] > 0.6
    assert summary["student"]["sim"]["success_rate"] > random_success + 0.25, summary["student"]

    student = load_student(tmp_path / "t")  # SB3 loads onto the CPU here
    assert next(student.policy.parameters()).device.type == "cpu"
    env = GridWorldVecEnv(4, view="image")
    actions, _ = student.predict(env.reset(), deterministic=True)
    assert actions.shape == (4,) and np.isin(actions, np.arange(env.action_space.n)).all()
    on_cpu = evaluate(model_policy_fn(student), {}, 200, view="image").success_rate
    assert on_cpu > random_success + 0.25, (on_cpu, random_success)


def test_a_killed_cuda_transfer_resumes(teacher_dir, tmp_path, monkeypatch, interrupt_fit):
    """A checkpoint written from the GPU (optimizer, adapter, CUDA augmentation generator) is
    read back and the run finishes its frame budget."""
    cfg = _on_cuda(
        teacher_dir,
        tmp_path / "t",
        frames=1_024,
        epochs=2,
        dagger_share=0.0,
        eval_episodes=20,
        checkpoint_seconds=1e-9,
    )
    interrupt_fit(1, 2)
    with pytest.raises(KeyboardInterrupt):
        run_transfer(cfg)
    monkeypatch.undo()
    summary = resume_transfer(tmp_path / "t")
    assert summary["train"]["resumed"] and summary["device"].startswith("cuda")
    assert summary["train"]["frames"] == 1_024
