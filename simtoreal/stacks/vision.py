"""The vision stack: a pretrained CNN trunk, a 3x3 conv + ReLU adapter and an FCOS-style head,
as a :class:`core.Stack` ``trunk -> adapter -> head`` trained as a detector.

    stack, info = build_vision_stack(VisionConfig(), num_classes=4, weights="path.safetensors")
    ltrb, logits = stack(images)  # (B, 4, S/16, S/16), (B, 4, S/16, S/16)

The trunk's rule is the reference's (``frozen``), low-LR fine-tuning (``scaled``) or frozen for
``unfreeze_after`` epochs then fine-tuned (``unfreeze``). While the trunk is frozen its features
are computed once per frame and cached, so the adapter and head train on a tensor of features.

Everything runs on the stack's device (``VisionConfig.device``); with ``precision="bf16"`` the
forward passes run under bf16 autocast while weights, optimizer and losses stay float32.
Predictions come back on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from simtoreal.core import Stack, Stage, TrainRule
from simtoreal.device import resolve_device
from simtoreal.errors import ConfigError
from simtoreal.stacks.detection import (
    DetectionHead,
    assign_targets,
    detection_loss,
    mean_average_precision,
    postprocess,
)
from simtoreal.stacks.vision_data import (
    DetectionSet,
    autocast,
    check_images,
    check_labels,
    device_of,
    to_device,
    to_input,
)
from simtoreal.stacks.vision_trunks import BACKBONES, DEFAULT_LAYER, Trunk, build_trunk

TrunkRule = Literal["frozen", "scaled", "unfreeze"]
Precision = Literal["fp32", "bf16"]


@dataclass
class VisionConfig:
    """The detector and how it trains."""

    backbone: str = "resnet18"
    """Trunk: resnet18, resnet34, resnet50 or efficientnet_lite0."""
    layer: str = ""
    """Tapped layer (empty: the stride-16 default, layer3 of a ResNet or _blocks.10 of
    EfficientNet-Lite0; layer4 / _blocks.15 are stride 32)."""
    trunk_rule: TrunkRule = "frozen"
    """frozen (the reference), scaled (fine-tuned at lr * trunk_lr_scale) or unfreeze (frozen
    for unfreeze_after epochs, then fine-tuned at lr * trunk_lr_scale)."""
    trunk_lr_scale: float = 0.1
    """Learning-rate scale of a fine-tuned trunk."""
    unfreeze_after: int = 2
    """Epochs the trunk stays frozen under trunk_rule=unfreeze."""
    image_size: int = 128
    """Side of the square input frames, a multiple of 32."""
    adapter_channels: int = 128
    """Channels of the 3x3 conv + ReLU adapter."""
    head_depth: int = 1
    """3x3 conv + ReLU layers in each head branch before its 1x1 conv (0: the reference's 1x1)."""
    epochs: int = 12
    """Passes over the training frames."""
    batch_size: int = 32
    """Frames per update."""
    lr: float = 2e-3
    """Adam learning rate of adapter and head (cosine decay to 0 over the epochs)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    score_threshold: float = 0.05
    """Lowest class score kept by decoding."""
    nms_iou: float = 0.5
    """IoU above which batched NMS drops the lower-scoring box of a class."""
    top_k: int = 100
    """Most detections per frame."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:N or auto (cuda when there is a GPU, else cpu)."""
    precision: Precision = "fp32"
    """fp32, or bf16: forward passes under bf16 autocast (weights, optimizer and losses stay
    float32; on CUDA, bf16 convolutions run much faster)."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"unknown backbone {self.backbone!r}: use one of {', '.join(BACKBONES)}."
            )
        self.layer = self.layer or DEFAULT_LAYER[self.backbone]
        if self.trunk_rule not in ("frozen", "scaled", "unfreeze"):
            raise ConfigError(f"trunk_rule={self.trunk_rule!r}: use frozen, scaled or unfreeze.")
        for name in ("adapter_channels", "epochs", "batch_size", "top_k"):
            _positive_int(name, getattr(self, name))
        if not (isinstance(self.head_depth, int) and self.head_depth >= 0):
            raise ConfigError(f"head_depth={self.head_depth!r}: use 0 (bare 1x1 convs) or more.")
        if not (isinstance(self.unfreeze_after, int) and self.unfreeze_after >= 0):
            raise ConfigError(f"unfreeze_after={self.unfreeze_after!r}: use an epoch >= 0.")
        if not (
            isinstance(self.image_size, int) and self.image_size >= 32 and self.image_size % 32 == 0
        ):
            raise ConfigError(
                f"image_size={self.image_size!r}: use a multiple of 32 (e.g. 128), so every "
                "tap's stride divides it."
            )
        for name in ("lr", "trunk_lr_scale"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r}: use a finite number > 0.")
        if not 0.0 <= self.score_threshold < 1.0 or not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(
                f"score_threshold={self.score_threshold}, nms_iou={self.nms_iou}: use a threshold "
                "in [0, 1) and an NMS IoU in (0, 1]."
            )
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision={self.precision!r}: use fp32 or bf16.")
        resolve_device(self.device)  # no CUDA device here: say so before anything is written

    def trunk_train_rule(self) -> TrainRule:
        if self.trunk_rule == "scaled":
            return TrainRule.scaled(self.trunk_lr_scale)
        if self.trunk_rule == "unfreeze":
            return TrainRule.frozen(self.unfreeze_after, self.trunk_lr_scale)
        return TrainRule.frozen()


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}: use a positive integer.")


# --------------------------------------------------------------------------- the stack


class Adapter(nn.Sequential):
    """The reference's adapter: ``(B, C_in, H, W)`` -> 3x3 conv -> ReLU -> ``(B, C, H, W)``."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True))


def build_vision_stack(config: VisionConfig, num_classes: int, weights: str) -> tuple[Stack, dict]:
    """``Stack(trunk -> adapter -> head)`` on ``config.device`` and a description of the trunk's
    weights, with the tap's ``stride`` and ``channels`` found by one dummy forward pass there.

    On CUDA the stack's conv weights are channels_last (see :func:`vision_data.to_device`)."""
    device = resolve_device(config.device)
    trunk, info = build_trunk(config.backbone, config.layer, weights)
    trunk = to_device(trunk, device)
    with torch.no_grad():
        trunk.eval()
        features = trunk(_dummy_input(config.image_size, device))
    channels, stride = features.shape[1], config.image_size // features.shape[-1]
    info = {**info, "backbone": config.backbone, "layer": config.layer, "stride": stride,
            "channels": channels}  # fmt: skip
    stack = Stack(
        [
            Stage("trunk", trunk, config.trunk_train_rule()),
            Stage("adapter", Adapter(channels, config.adapter_channels), TrainRule.trainable()),
            Stage(
                "head",
                DetectionHead(config.adapter_channels, num_classes, config.head_depth),
                TrainRule.trainable(),
            ),
        ]
    )
    return to_device(stack, device), info


def _dummy_input(image_size: int, device: torch.device) -> torch.Tensor:
    return to_input(np.zeros((1, image_size, image_size, 3), np.uint8), device)


def trunk_of(stack: Stack) -> Trunk:
    return stack["trunk"]  # type: ignore[return-value]


def stride_of(stack: Stack, image_size: int) -> int:
    """Stride of the trunk's tap (one dummy forward, on the stack's device)."""
    trunk = trunk_of(stack)
    with torch.no_grad():
        was = trunk.training
        trunk.eval()
        h = trunk(_dummy_input(image_size, device_of(stack))).shape[-1]
        trunk.train(was)
    return image_size // h


# --------------------------------------------------------------------------- training


class DetectorTrainer:
    """Trains a stack on a :class:`DetectionSet`, one epoch per :meth:`run_epoch`, on the stack's
    device.

    The optimizer is AdamW over :meth:`Stack.param_groups`; each group's lr follows a cosine
    decay over the planned updates. While the trunk is frozen, its features of all training
    frames are computed once (in eval mode, 16-bit storage on the device) and batches are drawn
    from them. Each frame's assigned targets are computed once too and kept on the device. The
    batch order comes from a CPU generator, so it is the same on every device.
    """

    def __init__(self, stack: Stack, data: DetectionSet, config: VisionConfig, seed: int) -> None:
        check_images(data.images, config.image_size)
        check_labels(data, stack["head"].class_branch[-1].out_channels)
        self.stack, self.data, self.config = stack, data, config
        self.device = device_of(stack)
        self.stride = stride_of(stack, config.image_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = math.ceil(len(data) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.step = 0
        self.optimizer = stack.make_optimizer(
            config.lr, 0, torch.optim.AdamW, weight_decay=config.weight_decay
        )
        self._cache: torch.Tensor | None = None
        self._targets: tuple[torch.Tensor, torch.Tensor] | None = None

    def _lr_factor(self) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(self.step / self.total_steps, 1.0)))

    def start_epoch(self, epoch: int) -> None:
        """Apply the trunk rule of ``epoch`` (adding the trunk's group when it unfreezes)."""
        self.stack.update_for_epoch(self.optimizer, epoch, base_lr=self.config.lr)
        for group in self.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])

    def trunk_frozen(self) -> bool:
        return not any(p.requires_grad for p in trunk_of(self.stack).parameters())

    def features(self) -> torch.Tensor:
        """Cached trunk features of every training frame, on the stack's device.
        Shape: (N, C, H, W), float16 (bfloat16 under ``precision="bf16"``)."""
        if self._cache is None:
            self._cache = extract_features(
                trunk_of(self.stack), self.data.images, precision=self.config.precision
            )
        return self._cache

    def targets(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`assign_targets` of every training frame for an ``(height, width)`` map, on the
        stack's device: ``label`` (N, H * W) int64 and ``box`` (N, H * W, 4) float32."""
        if self._targets is None or self._targets[0].shape[1] != height * width:
            boxes, labels = self.data.box_tensors(np.arange(len(self.data)))
            label, box = assign_targets(boxes, labels, height, width, self.stride)
            self._targets = label.to(self.device), box.to(self.device)
        return self._targets

    def run_epoch(self, epoch: int, on_step: Callable[[dict], None] | None = None) -> dict:
        """One pass over the frames in a shuffled order; returns the mean losses."""
        self.start_epoch(epoch)
        self.stack.train()
        frozen = self.trunk_frozen()
        order = torch.randperm(len(self.data), generator=self.generator).numpy()
        totals: dict[str, torch.Tensor] = {}
        for start in range(0, len(order), self.config.batch_size):
            index = order[start : start + self.config.batch_size]
            losses = self._update(index, frozen)
            for key, value in losses.items():  # summed on the device: no sync per step
                totals[key] = totals.get(key, 0.0) + value.double() * len(index)
            if on_step is not None:
                on_step(losses)
        return {key: float(value) / len(order) for key, value in totals.items()}

    def _update(self, index: np.ndarray, frozen: bool) -> dict[str, torch.Tensor]:
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("base_lr", group["lr"]) * self._lr_factor()
        cache = self.features() if frozen else None
        rows = torch.from_numpy(index).to(self.device)
        with autocast(self.device, self.config.precision):
            if cache is not None:
                ltrb, logits = self.stack["head"](self.stack["adapter"](_as_input(cache[rows])))
            else:
                ltrb, logits = self.stack(to_input(self.data.images[index], self.device))
        label, target = (t[rows] for t in self.targets(*logits.shape[-2:]))
        losses = detection_loss(ltrb.float(), logits.float(), label, target, self.stride)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        self.step += 1
        return {k: v.detach() for k, v in losses.items()}


def _as_input(features: torch.Tensor) -> torch.Tensor:
    """Cached 16-bit features as a float32 conv input (channels_last on CUDA)."""
    if features.device.type == "cuda":
        return features.to(torch.float32, memory_format=torch.channels_last)
    return features.float()


@torch.no_grad()
def extract_features(
    trunk: nn.Module, images: np.ndarray, batch: int = 64, precision: Precision = "fp32"
) -> torch.Tensor:
    """Trunk features of uint8 frames ``(N, S, S, 3)`` in eval mode, computed and kept on the
    trunk's device. Shape (N, C, h, w), float16 (bfloat16 under ``precision="bf16"``, whose
    range float16 lacks)."""
    device = device_of(trunk)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    was = trunk.training
    trunk.eval()
    chunks = []
    for i in range(0, len(images), batch):
        with autocast(device, precision):
            chunks.append(trunk(to_input(images[i : i + batch], device)).to(dtype))
    trunk.train(was)
    return torch.cat(chunks)


# --------------------------------------------------------------------------- inference


@torch.no_grad()
def predict(
    stack: Stack, images: np.ndarray, config: VisionConfig, batch: int = 64
) -> list[dict[str, torch.Tensor]]:
    """Detections of uint8 frames ``(N, S, S, 3)``: per frame ``{"boxes", "scores", "labels"}``,
    CPU tensors. The forward pass and decoding run on the stack's device."""
    check_images(images, config.image_size)
    device = device_of(stack)
    was = stack.training
    stack.eval()
    stride = stride_of(stack, config.image_size)
    out: list[dict[str, torch.Tensor]] = []
    for i in range(0, len(images), batch):
        with autocast(device, config.precision):
            ltrb, logits = stack(to_input(images[i : i + batch], device))
        detections = postprocess(
            ltrb.float(),
            logits.float(),
            stride,
            (config.image_size, config.image_size),
            config.score_threshold,
            config.nms_iou,
            config.top_k,
        )
        out += detections if device.type == "cpu" else _to_cpu(detections)
    stack.train(was)
    return out


def _to_cpu(detections: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """Per-frame detections copied to the CPU in one transfer per key (not three per frame)."""
    sizes = [len(d["scores"]) for d in detections]
    joined = {k: torch.cat([d[k] for d in detections]).cpu() for k in detections[0]}
    parts = {k: v.split(sizes) for k, v in joined.items()}
    return [{k: parts[k][i] for k in joined} for i in range(len(sizes))]


def evaluate(stack: Stack, data: DetectionSet, config: VisionConfig) -> dict[str, float]:
    """``{"map", "map_50", "images_per_s"}`` of the stack on ``data``. ``images_per_s`` counts
    :func:`predict` until its detections are on the CPU (so a CUDA run is timed to completion);
    mAP is computed on the CPU."""
    import time

    start = time.perf_counter()
    predictions = predict(stack, data.images, config)
    seconds = time.perf_counter() - start
    boxes, labels = data.box_tensors(np.arange(len(data)))
    return {
        **mean_average_precision(predictions, boxes, labels),
        "images_per_s": len(data) / seconds,
    }
