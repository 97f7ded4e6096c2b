"""Transfer reliability: overwrite never loses an input, refusals write nothing, failed runs are
marked, kill -9 resumes to the same adapter, and every config field reaches what it configures."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from stable_baselines3 import DQN, PPO

from simtoreal.errors import CheckpointError, ConfigError, IncompatibleError, RunDirError
from simtoreal.runs import FAILED_FILE, prepare_run_dir
from simtoreal.transfer import pipeline
from simtoreal.transfer.__main__ import main as transfer_main
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.distill import Distiller, check_teacher
from simtoreal.transfer.pipeline import resume_transfer, run_transfer
from simtoreal.transfer.training import CHECKPOINT_FILE

_MKDIR = Path.mkdir
TINY = {
    "robustness_episodes": 0,
    "frames": 1_024,
    "epochs": 1,
    "dagger_share": 0.0,
    "num_envs": 64,
    "batch_size": 128,
    "eval_episodes": 8,
    "severities": (0.5,),
    "gif_episodes": 0,
    "torch_threads": 1,
}


def _cfg(teacher_dir, run_dir, **kwargs) -> TransferConfig:
    return TransferConfig(teacher=teacher_dir, run_dir=run_dir, **{**TINY, **kwargs})


def _adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter.safetensors")


def _weights(run_dir: Path) -> float:
    """A fingerprint of the trained adapter: the sum of all its weights."""
    return sum(t.double().sum().item() for t in _adapter(run_dir).values())


# -- overwrite and the run directory -------------------------------------------------------------


def test_overwrite_keeps_the_teacher_that_lives_inside_the_run_dir(teacher_dir, tmp_path):
    """The README job's natural rerun: --teacher X/teacher --run-dir X --overwrite."""
    run = tmp_path / "X"
    shutil.copytree(teacher_dir, run / "teacher")
    (run / "config.json").write_text('{"kind": "transfer"}')
    (run / "old-output.txt").write_text("from the earlier run")
    summary = run_transfer(_cfg(run / "teacher", run, overwrite=True))
    assert (run / "teacher" / "best_model.zip").is_file()
    assert (run / "teacher" / "summary.json").is_file()
    assert not (run / "old-output.txt").exists()
    assert summary["teacher_dir"] == str(run / "teacher")
    assert [p.name for p in tmp_path.iterdir()] == ["X"]  # nothing left aside


def test_run_dir_that_is_the_teacher_is_refused_and_nothing_moves(teacher_dir, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    before = sorted(p.name for p in teacher.iterdir())
    with pytest.raises(RunDirError, match="input of this run"):
        run_transfer(_cfg(teacher, teacher, overwrite=True))
    assert sorted(p.name for p in teacher.iterdir()) == before


def test_overwrite_puts_the_old_run_back_when_the_new_config_cannot_be_written(
    tmp_path, monkeypatch
):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "teacher").mkdir()
    (run / "teacher" / "model.zip").write_text("weights")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("simtoreal.runs.atomic_write_json", disk_full)
    with pytest.raises(RunDirError, match="no space left"):
        prepare_run_dir(run, overwrite=True, keep=(run / "teacher",), config={"a": 1})
    assert (run / "teacher" / "model.zip").read_text() == "weights"
    assert (run / "config.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_file_or_read_only_parent_as_run_dir_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="file"):
        prepare_run_dir(tmp_path / "file" / "run")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the file system say no instead

        def refuse(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

        Path.mkdir = refuse  # restored below
    try:
        with pytest.raises(RunDirError, match="permission denied"):
            prepare_run_dir(locked / "run")
    finally:
        Path.mkdir = _MKDIR
    assert not (locked / "run").exists()


# -- refusals happen before anything is written --------------------------------------------------


BAD_CONFIGS = {
    "num_envs 0": ({"num_envs": 0}, "num_envs=0"),
    "frame_stack 0": ({"frame_stack": 0}, "frame_stack=0"),
    "eval_episodes 0": ({"eval_episodes": 0}, "eval_episodes=0"),
    "channels length": ({"channels": (16, 16)}, "same non-zero length"),
    "pool nonsense": ({"pool": "nonsense"}, "pool='nonsense'"),
    "strides too large": ({"strides": (64, 64, 64)}, "shrink"),
    "no severities": ({"severities": ()}, "severities is empty"),
    "negative lr": ({"lr": -1.0}, "lr=-1.0"),
}


@pytest.mark.parametrize(("kwargs", "message"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_refused_before_the_run_dir_exists(kwargs, message, tmp_path):
    argv = ["--run-dir", str(tmp_path / "run")]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, str(value)]
    with pytest.raises(ConfigError, match=message):
        TransferConfig(**kwargs)
    try:  # newer tyro reports the ConfigError itself and exits; older tyro lets main report it
        code = transfer_main(argv)
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    assert not (tmp_path / "run").exists()


def test_cuda_without_a_gpu_names_cpu_and_auto(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert transfer_main(["--device", "cuda", "--run-dir", str(tmp_path / "r")]) == 2
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()


def test_truncated_teacher_is_refused_before_the_run_dir_exists(teacher_dir, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    best = teacher / "best_model.zip"
    best.write_bytes(best.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        run_transfer(_cfg(teacher, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_dqn_teacher_is_refused_before_the_run_dir_exists(teacher_dir, tmp_path):
    teacher = tmp_path / "dqn"
    shutil.copytree(teacher_dir, teacher)
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "algo": "dqn"}))
    env = gym.make("simtoreal/GridWorld-v0")
    DQN("MlpPolicy", env, learning_starts=0).save(teacher / "best_model.zip")
    with pytest.raises(IncompatibleError, match="actor-critic"):
        run_transfer(_cfg(teacher, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_continuous_action_teacher_is_refused_by_the_grid_recipe_not_the_distiller():
    teacher = PPO("MlpPolicy", gym.make("Pendulum-v1"), device="cpu")
    with pytest.raises(IncompatibleError, match="continuous-action"):
        check_teacher(teacher)
    from simtoreal.agents.adapter import AdapterConfig
    from simtoreal.transfer.adapter_io import build_adapter

    # The Distiller itself labels Gaussian teachers since issue 12 (simtoreal/transfer/heads.py).
    distiller = Distiller(teacher, build_adapter(AdapterConfig(latent_dim=64)))
    assert distiller.teacher_act(np.zeros((2, 3), np.float32)).shape[0] == 2


# -- failures, markers and resume ----------------------------------------------------------------


def test_a_failed_run_is_marked_and_a_rerun_proceeds_without_overwrite(
    teacher_dir, tmp_path, monkeypatch
):
    run = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(pipeline, "evaluate_transfer", broken)
    with pytest.raises(RuntimeError):
        run_transfer(_cfg(teacher_dir, run))
    marker = json.loads((run / FAILED_FILE).read_text())
    assert marker["error"] == "RuntimeError" and "exploded" in marker["message"]
    assert "--resume" in marker["next"]
    monkeypatch.undo()
    run_transfer(_cfg(teacher_dir, run))  # no --overwrite needed
    assert (run / "summary.json").is_file() and not (run / FAILED_FILE).exists()


def test_resume_after_an_interruption_gives_the_same_adapter(
    teacher_dir, tmp_path, monkeypatch, interrupt_fit
):
    """Interrupt during a DAgger round (after a mid-epoch checkpoint), resume, compare with an
    uninterrupted run of the same config."""
    kwargs = {
        "dagger_share": 0.5,
        "dagger_rounds": 2,
        "checkpoint_seconds": 1e-9,
        "augment": ("shift", "hue"),
    }  # the augmentation generator resumes too
    run_transfer(_cfg(teacher_dir, tmp_path / "whole", **kwargs))

    interrupt_fit(2, 3)  # the first DAgger round: stop after its third batch
    with pytest.raises(KeyboardInterrupt):
        run_transfer(_cfg(teacher_dir, tmp_path / "cut", **kwargs))
    monkeypatch.undo()
    assert (tmp_path / "cut" / CHECKPOINT_FILE).is_file()
    assert json.loads((tmp_path / "cut" / FAILED_FILE).read_text())["error"] == "KeyboardInterrupt"
    summary = resume_transfer(tmp_path / "cut")
    assert summary["train"]["resumed"]
    whole, cut = _adapter(tmp_path / "whole"), _adapter(tmp_path / "cut")
    for name in whole:
        torch.testing.assert_close(cut[name], whole[name], rtol=1e-5, atol=1e-6)


def test_resume_of_a_finished_or_foreign_run_is_refused(teacher_dir, tmp_path):
    run_transfer(_cfg(teacher_dir, tmp_path / "done"))
    with pytest.raises(RunDirError, match="already finished"):
        resume_transfer(tmp_path / "done")
    with pytest.raises(RunDirError, match="not a transfer run"):
        resume_transfer(teacher_dir)


def _transfer_cmd(teacher_dir, run_dir, *extra) -> list[str]:
    flags = []
    for key, value in {
        **TINY,
        "frames": 4_096,
        "dagger_share": 0.5,
        "checkpoint_seconds": 0.05,
    }.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, str(value)]
    return [sys.executable, "-m", "simtoreal.transfer", "--teacher", str(teacher_dir),
            "--run-dir", str(run_dir), *flags, *extra]  # fmt: skip


@pytest.mark.parametrize("after_samples", [256, 3_000])
def test_kill_9_then_resume_from_the_command_line(teacher_dir, tmp_path, after_samples):
    """A real SIGKILL, during offline training (256) or the DAgger round (3,000 samples)."""
    run = tmp_path / "run"
    proc = subprocess.Popen(_transfer_cmd(teacher_dir, run), stdout=subprocess.DEVNULL)
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        lines = (
            (run / "metrics.jsonl").read_text().splitlines()
            if (run / "metrics.jsonl").exists()
            else []
        )
        if (
            lines
            and json.loads(lines[-1])["samples"] >= after_samples
            and (run / CHECKPOINT_FILE).exists()
        ):
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not killed:
        pytest.skip("the run finished before it could be killed")
    assert not (run / "summary.json").exists()
    done = subprocess.run(
        [sys.executable, "-m", "simtoreal.transfer", "--resume", str(run)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train"]["resumed"] and summary["train"]["frames"] == 4_096
    samples = [
        json.loads(line)["samples"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert samples == sorted(samples)  # lines logged after the checkpoint were dropped


def test_a_run_saved_for_cuda_resumes_on_the_cpu_with_device(
    teacher_dir, tmp_path, monkeypatch, interrupt_fit, capsys
):
    """A run killed on a GPU machine continues on one without: its config.json names cuda,
    which a plain --resume refuses there, and --resume RUN --device cpu continues."""
    run = tmp_path / "cut"
    interrupt_fit(1, 2)
    with pytest.raises(KeyboardInterrupt):
        run_transfer(_cfg(teacher_dir, run, checkpoint_seconds=1e-9))
    monkeypatch.undo()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "device": "cuda"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert transfer_main(["--resume", str(run)]) == 2
    assert "no CUDA device" in " ".join(capsys.readouterr().out.split())
    assert transfer_main(["--resume", str(run), "--device", "cpu"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["train"]["resumed"]


def test_resume_takes_no_other_flags(tmp_path, capsys):
    assert transfer_main(["--resume", str(tmp_path), "--frames", "2048"]) == 2
    assert "--resume takes no other flags" in capsys.readouterr().out


# -- every field reaches what it configures ------------------------------------------------------


def _adapter_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "adapter" / "adapter.json").read_text())


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# field -> (new value, probe of the finished run that differs from the default run's)
FIELD_PROBES = {
    "seed": (1, lambda s, d: _weights(d)),
    "frames": (1_536, lambda s, d: s["train"]["frames"]),
    "dagger_share": (0.5, lambda s, d: sorted({m["stage"] for m in _metrics(d)})),
    "dagger_rounds": (2, lambda s, d: s["train"]["dagger_rounds"]),
    "dagger_beta": (1.0, lambda s, d: _weights(d)),
    "train_domain": ("sim", lambda s, d: s["signals"]["adapter"]),
    "num_envs": (32, lambda s, d: _weights(d)),
    "frame_stack": (2, lambda s, d: _adapter_json(d)["image_shape"]),
    "loss": ("latent", lambda s, d: sorted(_metrics(d)[0])),
    "latent_weight": (3.0, lambda s, d: _metrics(d)[0]["loss"]),
    "action_weight": (3.0, lambda s, d: _metrics(d)[0]["loss"]),
    "epochs": (2, lambda s, d: s["train"]["samples"]),
    "dagger_epochs": (2, lambda s, d: s["train"]["samples"]),
    "batch_size": (64, lambda s, d: _metrics(d)[0]["samples"]),
    "lr": (1e-4, lambda s, d: _metrics(d)[0]["lr"]),
    "augment": (("shift", "cutout"), lambda s, d: _metrics(d)[0]["loss"]),
    "max_train_seconds": (1e-6, lambda s, d: s["train"]["stopped_by_deadline"]),
    "channels": ((8, 8, 4), lambda s, d: _adapter_json(d)["channels"]),
    "kernels": ((4, 3, 1), lambda s, d: _adapter_json(d)["kernels"]),
    "strides": ((4, 2, 1), lambda s, d: _adapter_json(d)["strides"]),
    "target": ("latent", lambda s, d: sorted(_adapter(d))),
    "eval_episodes": (5, lambda s, d: s["teacher"]["n_episodes"]),
    "severities": ((0.25,), lambda s, d: sorted(s["student"]["real"])),
    "severity": (0.25, lambda s, d: sorted(s["student"]["real"])),
    "gif_episodes": (1, lambda s, d: (d / "student.gif").is_file()),
    "torch_threads": (2, lambda s, d: s["torch_threads"]),
    "robustness_episodes": (4, lambda s, d: s.get("robustness", {}).get("n_episodes")),
}
# Fields tested elsewhere, with the test that shows their effect.
TESTED_ELSEWHERE = {
    "teacher": "test_overwrite_keeps_the_teacher_that_lives_inside_the_run_dir",
    "run_dir": "every test here",
    "overwrite": "test_overwrite_keeps_the_teacher_that_lives_inside_the_run_dir",
    "checkpoint_seconds": "test_resume_after_an_interruption_gives_the_same_adapter",
    "finetune_steps": "test_transfer.py::test_finetune_and_baseline_stages_report_what_they_measured",
    "finetune_domain": "test_finetune_domain_reaches_the_finetuning_env",
    "head_lr_scale": "test_transfer.py::test_finetune_with_a_scaled_head_learning_rate_changes_the_head",
    "baseline": "test_transfer.py::test_finetune_and_baseline_stages_report_what_they_measured",
    "baseline_max_frames": "test_baseline_budgets_reach_the_baseline",
    "baseline_wall_multiple": "test_baseline_budgets_reach_the_baseline",
    "baseline_extractor": "test_baseline_budgets_reach_the_baseline",
    "baseline_lr": "test_baseline_budgets_reach_the_baseline",
    "baseline_envs": "test_baseline_budgets_reach_the_baseline",
    "device": "test_cuda_without_a_gpu_names_cpu_and_auto",
    "min_teacher_success": "test_weak_teacher_is_flagged_in_summary_and_report",
    "robustness_severity": "test_robustness_check_reports_every_shift_and_an_honest_score",
    "pool": "test_robust_transfer.py::test_pool_reaches_the_latent_adapter",
    "action_loss": "test_transfer_anyenv.py::test_action_loss_reaches_the_summary_and_a_wrong_one_is_refused",
    "fresh_appearance": "test_robust_transfer.py::test_fresh_appearance_redraws_every_epoch_and_only_that",
    "frame_size": "test_transfer_anyenv.py::test_the_camera_reaches_data_student_and_gif",
    "crop": "test_transfer_anyenv.py::test_the_camera_reaches_data_student_and_gif",
}


def test_every_field_is_probed():
    fields = {f.name for f in dataclasses.fields(TransferConfig)}
    assert fields == set(FIELD_PROBES) | set(TESTED_ELSEWHERE)


@pytest.fixture(scope="module")
def default_run(teacher_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("default") / "run"
    return run_transfer(_cfg(teacher_dir, run_dir)), run_dir


@pytest.mark.parametrize("field", list(FIELD_PROBES))
def test_field_reaches_what_it_configures(field, default_run, teacher_dir, tmp_path):
    value, probe = FIELD_PROBES[field]
    base_summary, base_dir = default_run
    kwargs = {field: value}
    if field in ("dagger_rounds", "dagger_beta", "dagger_epochs"):
        kwargs["dagger_share"] = 0.5  # DAgger settings act only when there is DAgger data
    summary = run_transfer(_cfg(teacher_dir, tmp_path / "run", **kwargs))
    assert probe(summary, tmp_path / "run") != probe(base_summary, base_dir), field


def test_finetune_domain_reaches_the_finetuning_env(teacher_dir, tmp_path, monkeypatch):
    seen = []
    from simtoreal.envs.sb3 import GridWorldVecEnv as real
    from simtoreal.transfer import finetune

    def spy(*args, **kwargs):
        seen.append(kwargs.get("domain"))
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune, "GridWorldVecEnv", spy)
    run_transfer(_cfg(teacher_dir, tmp_path / "run", finetune_steps=128, finetune_domain="real"))
    assert seen == ["real"]


def test_baseline_budgets_reach_the_baseline(teacher_dir, tmp_path, monkeypatch):
    from stable_baselines3.common.torch_layers import NatureCNN

    from simtoreal.transfer import baseline

    built = {}
    real_ppo = baseline.PPO

    def spy(policy, env, **kwargs):
        built.update(kwargs, n_envs=env.num_envs)
        return real_ppo(policy, env, **kwargs)

    monkeypatch.setattr(baseline, "PPO", spy)
    summary = run_transfer(
        _cfg(
            teacher_dir,
            tmp_path / "run",
            baseline=True,
            baseline_max_frames=512,
            baseline_wall_multiple=0.5,
            baseline_extractor="nature_cnn",
            baseline_lr=5e-4,
            baseline_envs=8,
        )
    )
    assert built["learning_rate"] == 5e-4 and built["n_envs"] == 8
    assert built["policy_kwargs"]["features_extractor_class"] is NatureCNN
    assert built["policy_kwargs"]["activation_fn"] is torch.nn.ReLU  # the teacher's
    base = summary["baseline"]
    assert base["budget_s"] == pytest.approx(0.5 * summary["transfer_wall_s"])
    assert summary["transfer_wall_s"] > summary["train"]["wall_time_s"]  # teacher time counted
    assert base["final"]["frames"] <= 512 + 8 * 128  # stops within one rollout of the budget
    assert "sampled_success_rate" in base["final"]


def test_weak_teacher_is_flagged_in_summary_and_report(teacher_dir, tmp_path):
    from simtoreal.agents.factory import PolicyConfig, PPOConfig, make_model
    from simtoreal.envs.sb3 import GridWorldVecEnv
    from simtoreal.runs import atomic_save_model

    weak = tmp_path / "weak"
    shutil.copytree(teacher_dir, weak)
    untrained = make_model("ppo", GridWorldVecEnv(128), PPOConfig(), PolicyConfig(), seed=3)
    atomic_save_model(untrained, weak / "best_model.zip")
    summary = run_transfer(_cfg(weak, tmp_path / "run", eval_episodes=40))
    assert summary["teacher"]["success_rate"] < 0.8
    assert "means little" in summary["warnings"][0]
    assert "means little" in (tmp_path / "run" / "report.md").read_text()
    quiet = run_transfer(_cfg(weak, tmp_path / "quiet", eval_episodes=40, min_teacher_success=0.0))
    assert quiet["warnings"] == []


# -- what the README shows -----------------------------------------------------------------------


def test_the_readme_snippet_acts_with_a_trained_student(teacher_dir, tmp_path):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Use a trained student", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    run_transfer(_cfg(teacher_dir, tmp_path / "run"))
    placeholder = "runs/transfer-20261129-101500/student.zip"
    assert placeholder in code
    scope: dict = {}
    exec(code.replace(placeholder, str(tmp_path / "run" / "student.zip")), scope)
    assert scope["done"] and scope["env"].observation_space.contains(scope["obs"])
    from simtoreal.transfer.pipeline import load_student

    student = load_student(tmp_path / "run")  # the teacher's algorithm, whatever it was
    assert type(student).__name__ == "PPO"
    assert (
        student.predict(scope["obs"], deterministic=True)[0]
        == scope["student"].predict(scope["obs"], deterministic=True)[0]
    )


def test_transfer_help_names_the_module_command():
    done = subprocess.run(
        [sys.executable, "-m", "simtoreal.transfer", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m simtoreal.transfer")
    assert "runs/teacher-" in done.stdout and "runs/grid-" not in done.stdout


# -- honest numbers ------------------------------------------------------------------------------


def test_the_adapter_never_sees_held_out_domains_unless_named(teacher_dir, tmp_path, monkeypatch):
    from simtoreal.transfer import training

    seen = []
    real_batch = training.paired_batch

    def spy(env_kwargs, num_envs, domain, severity=0.5):
        seen.append(domain)
        return real_batch(env_kwargs, num_envs, domain, severity)

    monkeypatch.setattr(training, "paired_batch", spy)
    summary = run_transfer(_cfg(teacher_dir, tmp_path / "a", dagger_share=0.5))
    assert seen == ["randomized"]
    assert "real" not in summary["signals"]["adapter"]
    run_transfer(_cfg(teacher_dir, tmp_path / "b", train_domain="real"))
    assert seen[-1] == "real"


def test_a_transfer_run_is_reproducible_for_a_seed(teacher_dir, tmp_path):
    kwargs = {"dagger_share": 0.5, "seed": 3}
    a = run_transfer(_cfg(teacher_dir, tmp_path / "a", **kwargs))
    b = run_transfer(_cfg(teacher_dir, tmp_path / "b", **kwargs))
    for name, value in _adapter(tmp_path / "a").items():
        assert torch.equal(value, _adapter(tmp_path / "b")[name]), name
    assert a["student"] == b["student"] and a["validation"] == b["validation"]


def test_summary_records_domains_seeds_floor_and_validation(teacher_dir, tmp_path):
    summary = run_transfer(_cfg(teacher_dir, tmp_path / "run", eval_episodes=20))
    protocol = summary["protocol"]
    val, test = protocol["validation"]["episode_seeds"], protocol["test"]["episode_seeds"]
    assert set(range(*val)).isdisjoint(range(*test))
    assert protocol["validation"]["domain"] == "validation@0.5"
    assert summary["validation"]["n_episodes"] == 20
    floor = summary["random_policy"]["success_rate"]
    assert 0.0 < floor < summary["teacher"]["success_rate"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "random actions (floor)" in report and "**not run**" in report


def test_scaled_adam_steps_the_head_at_its_scale():
    from simtoreal.transfer.finetune import ScaledAdam

    adapter, head = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    opt = ScaledAdam(
        [{"params": [adapter], "lr_scale": 1.0}, {"params": [head], "lr_scale": 0.1}], lr=1e-2
    )
    (adapter.sum() + head.sum()).backward()
    opt.step()
    # Adam's first step moves each weight by lr (times the scale), whatever the gradient size.
    torch.testing.assert_close(adapter.detach(), torch.full((3,), -1e-2))
    torch.testing.assert_close(head.detach(), torch.full((3,), -1e-3))
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 1e-2]  # what SB3 sets is left alone


def test_the_cli_runs_the_readme_job_at_tiny_scale(tmp_path):
    """`python -m simtoreal.transfer` with no teacher trains the default one first."""
    flags = ["--frames", "1024", "--num-envs", "64", "--eval-episodes", "10", "--severities", "0.5",
             "--gif-episodes", "1", "--epochs", "1", "--robustness-episodes", "4"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "simtoreal.transfer", "--run-dir", str(tmp_path / "run"), *flags],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "recovered" in done.stdout and "baseline not run" in done.stdout
    run = tmp_path / "run"
    for name in ("teacher/summary.json", "summary.json", "student.zip", "student.gif", "report.md"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())


# -- robustness to shifts never trained on --------------------------------------------------------


def test_robustness_check_reports_every_shift_and_an_honest_score(teacher_dir, tmp_path):
    from simtoreal.agents.evaluate import model_policy_fn
    from simtoreal.envs.shifts import shift_names
    from simtoreal.transfer.robustness import evaluate_robustness

    # A student that works on clean frames (real at severity 0 is the sim render), so that
    # shifts have success to take away.
    kwargs = {"train_domain": "sim", "severity": 0.0, "severities": (0.0,), "frames": 6_000,
              "epochs": 6, "robustness_episodes": 30, "robustness_severity": 1,
              "augment": ()}  # fmt: skip
    summary = run_transfer(_cfg(teacher_dir, tmp_path / "run", **kwargs))
    mild = summary["robustness"]
    assert set(mild["shifts"]) == set(shift_names()) and mild["severity"] == 1
    uncovered = [x["recovered"] for x in mild["shifts"].values() if not x["covered_by_training"]]
    assert mild["score"] == pytest.approx(np.mean(uncovered))
    assert mild["families_uncovered"] == [
        "noise",
        "blur",
        "digital",
        "colour",
        "lighting",
        "geometry",
        "occlusion",
        "texture",
    ]  # sim varies nothing, and no augmentation ran
    assert "Robustness score" in (tmp_path / "run" / "report.md").read_text()
    student = PPO.load(tmp_path / "run" / "student.zip", device="cpu")
    world = {"domain": "real", "severity": 0.0}
    harsh = evaluate_robustness(model_policy_fn(student), world, summary["teacher"]["success_rate"],
                                "randomized", 5, 30, 1_000_000)  # fmt: skip

    # Stronger shifts cost success overall: a check that fails if the severity never arrives.
    def total(r):
        return sum(x["success_rate"] for x in r["shifts"].values())

    assert total(harsh) < total(mild)
    assert {"digital", "occlusion", "geometry"} == set(harsh["families_uncovered"])


def test_shifted_policy_sees_shifted_frames_with_stacks():
    from simtoreal.envs.shifts import apply_shift
    from simtoreal.transfer.robustness import shifted_policy

    seen = []
    policy = shifted_policy(lambda f: seen.append(f) or np.zeros(len(f), int), "hue_shift", 3, 0)
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 6), dtype=np.uint8)
    policy(frames)
    for c in (0, 3):
        expected = apply_shift(np.ascontiguousarray(frames[..., c : c + 3]), "hue_shift", 3, 0, 0)
        np.testing.assert_array_equal(seen[0][..., c : c + 3], expected)
