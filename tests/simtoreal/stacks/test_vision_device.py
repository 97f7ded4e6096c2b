"""The vision stack on a chosen device and precision: refusals, bf16 and ``auto`` on the CPU, and
a CUDA class (skipped where there is no GPU) that trains on the GPU, returns predictions on the
CPU and moves checkpoints between CUDA and the CPU."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from simtoreal.device import resolve_device
from simtoreal.envs.detection import CLASSES
from simtoreal.errors import ConfigError
from simtoreal.stacks.vision import (
    DetectorTrainer,
    VisionConfig,
    build_vision_stack,
    extract_features,
    predict,
    trunk_of,
)
from simtoreal.stacks.vision_data import device_of, to_input, world_set

SIZE, WORLD = 64, 4
CLI_ARGS = ["--image-size", "64", "--world-size", "4", "--source-frames", "16", "--source-epochs",
            "1", "--train-frames", "16", "--eval-frames", "8", "--epochs", "3", "--adapter-channels",
            "16", "--batch-size", "8", "--severities", "1.0"]  # fmt: skip


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", message=".*RANDOM weights.*")


def _config(**kw) -> VisionConfig:
    base = dict(image_size=SIZE, adapter_channels=16, epochs=2, batch_size=8, lr=3e-3)
    return VisionConfig(**{**base, **kw})


def _train(config: VisionConfig, frames: int = 16):
    """A stack with a random ResNet-18 trained ``config.epochs`` epochs; returns it, its trainer,
    the frames and the mean loss of each epoch."""
    torch.manual_seed(0)
    data = world_set(frames, 0, "sim", 0.0, SIZE, WORLD)
    stack, _ = build_vision_stack(config, len(CLASSES), "random")
    trainer = DetectorTrainer(stack, data, config, seed=0)
    losses = [trainer.run_epoch(epoch) for epoch in range(config.epochs)]
    return stack, trainer, data, losses


def _finite(predictions: list[dict[str, torch.Tensor]]) -> bool:
    return all(torch.isfinite(p["boxes"]).all() and torch.isfinite(p["scores"]).all()
               for p in predictions)  # fmt: skip


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_refused_before_the_run_directory_is_written(
    device, monkeypatch, tmp_path, capsys
):
    from simtoreal.train.vision import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device.*--device cpu, or --device auto"):
        VisionConfig(device=device)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli([*CLI_ARGS, "--device", device, "--run-dir", str(run)])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert "no CUDA device" in err and "--device cpu" in err and "--device auto" in err
    assert not run.exists()


def test_unknown_device_and_precision_are_refused_naming_the_choices():
    with pytest.raises(ConfigError, match="use fp32 or bf16"):
        VisionConfig(precision="bogus")
    with pytest.raises(ConfigError, match="use cpu, cuda, cuda:N or auto"):
        VisionConfig(device="tpu")


# --------------------------------------------------------------------------- on the CPU


def test_to_input_on_the_cpu_is_the_plain_conversion():
    images = world_set(2, 0, "sim", 0.0, SIZE, WORLD).images
    want = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    for device in (None, "cpu"):
        got = to_input(images, device)
        assert got.device.type == "cpu" and got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bf16_on_the_cpu_trains_with_finite_losses_and_predictions():
    config = _config(precision="bf16")
    stack, trainer, data, losses = _train(config)
    assert all(np.isfinite(v) for epoch in losses for v in epoch.values()), losses
    assert trainer.features().dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in stack.parameters())  # weights stay float32
    predictions = predict(stack, data.images[:4], config)
    assert len(predictions) == 4 and _finite(predictions)
    assert all(p["scores"].dtype == torch.float32 for p in predictions)


def test_auto_device_resolves_to_the_gpu_only_when_there_is_one_and_runs():
    config = _config(device="auto", epochs=1)
    stack, trainer, data, losses = _train(config, frames=8)
    want = resolve_device("auto")
    assert device_of(stack).type == want.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert trainer.features().device.type == want.type
    assert np.isfinite(losses[0]["loss"])
    assert all(p["boxes"].device.type == "cpu" for p in predict(stack, data.images[:2], config))


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
class TestCuda:
    """Run by ``python -m pytest tests/simtoreal/stacks/test_vision_device.py`` on a GPU machine."""

    @pytest.mark.parametrize("precision", ["fp32", "bf16"])
    def test_trains_on_the_gpu_and_predicts_to_the_cpu(self, precision):
        config = _config(device="cuda", precision=precision, epochs=4)
        stack, trainer, data, losses = _train(config, frames=32)
        assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in stack.parameters())
        conv = trunk_of(stack).backbone[0].conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
        features = trainer.features()
        assert features.device.type == "cuda"
        assert features.dtype == (torch.bfloat16 if precision == "bf16" else torch.float16)
        assert all(np.isfinite(v) for epoch in losses for v in epoch.values()), losses
        assert losses[-1]["loss"] < losses[0]["loss"], losses
        predictions = predict(stack, data.images[:10], config, batch=4)
        assert len(predictions) == 10 and _finite(predictions)
        assert all(t.device.type == "cpu" for p in predictions for t in p.values())

    def test_a_fine_tuned_trunk_trains_from_uint8_frames_on_the_gpu(self):
        config = _config(device="cuda", precision="bf16", trunk_rule="scaled", epochs=3)
        stack, trainer, _, losses = _train(config, frames=32)
        assert trainer._cache is None  # no feature cache: every batch went through to_input
        assert all(np.isfinite(v) for epoch in losses for v in epoch.values()), losses
        assert losses[-1]["loss"] < losses[0]["loss"], losses

    def test_gpu_forward_matches_the_cpu(self):
        torch.manual_seed(0)
        cpu, _ = build_vision_stack(_config(), len(CLASSES), "random")
        gpu, _ = build_vision_stack(_config(device="cuda"), len(CLASSES), "random")
        gpu.load_state_dict(cpu.state_dict())
        images = world_set(4, 0, "sim", 0.0, SIZE, WORLD).images
        x = to_input(images, "cuda")
        assert x.device.type == "cuda" and x.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(
            x.cpu(), to_input(images), rtol=0, atol=1e-6
        )  # x / 255 vs x * (1 / 255)
        want = extract_features(trunk_of(cpu), images).float()
        got = extract_features(trunk_of(gpu), images).float().cpu()
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=0.02, atol=0.02 * scale)  # TF32 convs on GPU
        with torch.no_grad():
            for w, g in zip(cpu.eval()(to_input(images)), gpu.eval()(x), strict=True):
                torch.testing.assert_close(g.cpu(), w, rtol=0.02, atol=0.02 * w.abs().max().item())

    def test_checkpoints_move_between_the_gpu_and_the_cpu(self, tmp_path):
        from simtoreal.train.vision import cli

        run = tmp_path / "run"
        first = cli([*CLI_ARGS, "--device", "cuda", "--precision", "bf16", "--run-dir", str(run)])
        assert first["device"].startswith("cuda:0 (") and first["precision"] == "bf16"
        checkpoints = sorted((run / "checkpoints").glob("*.pt"))
        state = torch.load(checkpoints[-1], weights_only=True)  # no map_location: as saved
        tensors = [*state["model"].values(), *_tensors(state["optimizer"])]
        assert tensors and all(t.device.type == "cpu" for t in tensors)
        (run / "summary.json").unlink()
        checkpoints[-1].unlink()
        on_cpu = cli(["--resume", str(run), "--device", "cpu"])  # the CUDA checkpoint on the CPU
        assert (
            on_cpu["device"] == "cpu" and len((run / "metrics.jsonl").read_text().splitlines()) == 3
        )
        (run / "summary.json").unlink()
        on_gpu = cli(["--resume", str(run), "--device", "cuda"])  # the CPU checkpoint on CUDA
        assert on_gpu["device"].startswith("cuda:0 (")
        assert json.loads((run / "config.json").read_text())["device"] == "cuda"


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in _tensors(v)]
    return []
