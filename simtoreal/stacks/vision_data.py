"""Detection data for the vision stack: frames of the toolkit's own world, or a COCO-format set.

A :class:`DetectionSet` holds square uint8 frames ``(N, S, S, 3)`` and, per frame, xyxy pixel
boxes ``(n_i, 4)`` and class ids ``(n_i,)``. The world sets render several worlds (0 to 8
obstacles) so that the number of objects varies; their boxes are exact (envs/detection.py).
:func:`to_input` turns a batch of frames into the model's input on a torch device.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from simtoreal.envs.detection import CLASSES, render_detection
from simtoreal.envs.render import Renderer
from simtoreal.envs.world import WorldParams, max_obstacles
from simtoreal.errors import DataError

OBSTACLE_COUNTS = (0, 2, 4, 6, 8)
"""Obstacles per world in the generated sets: frames cycle through these worlds."""


@dataclass(frozen=True)
class DetectionSet:
    """Frames and their objects. ``images``: (N, S, S, 3) uint8; ``boxes[i]``: (n_i, 4) float32
    xyxy pixels; ``labels[i]``: (n_i,) int64 in ``range(len(class_names))``."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def subset(self, index: np.ndarray) -> DetectionSet:
        return DetectionSet(
            self.images[index],
            [self.boxes[i] for i in index],
            [self.labels[i] for i in index],
            self.class_names,
        )

    def box_tensors(self, index: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Boxes and labels of frames ``index`` as tensors."""
        return (
            [torch.from_numpy(self.boxes[i]) for i in index],
            [torch.from_numpy(self.labels[i]) for i in index],
        )

    def counts(self) -> np.ndarray:
        """Objects of each class per frame. Shape: (N, K), int64."""
        k = len(self.class_names)
        return np.stack([np.bincount(lab, minlength=k) for lab in self.labels])


def world_set(
    n: int,
    seed: int,
    domain: str,
    severity: float = 0.5,
    image_size: int = 128,
    world_size: int = 8,
) -> DetectionSet:
    """``n`` frames of the world in ``domain``; frame ``i`` is world seed ``seed + i`` with
    ``OBSTACLE_COUNTS[i % 5]`` obstacles (at most a third of the cells). Disjoint seed ranges give disjoint frame sets."""
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    boxes: list[np.ndarray] = [np.empty((0, 4), np.float32)] * n
    labels: list[np.ndarray] = [np.empty(0, np.int64)] * n
    for j, n_obstacles in enumerate(OBSTACLE_COUNTS):
        index = np.arange(j, n, len(OBSTACLE_COUNTS))
        if not len(index):
            continue
        params = WorldParams(world_size, min(n_obstacles, max_obstacles(world_size)))
        renderer = _renderer(world_size, domain, float(severity), image_size)
        frames = render_detection(params, seed + index, renderer=renderer)
        images[index] = frames.images
        for i, b, lab in zip(index, frames.boxes, frames.labels, strict=True):
            boxes[i], labels[i] = b, lab
    return DetectionSet(images, boxes, labels, CLASSES)


@functools.lru_cache(maxsize=8)
def _renderer(world_size: int, domain: str, severity: float, image_size: int) -> Renderer:
    """One renderer per world size and domain: its banks do not depend on the obstacle count
    (a world with obstacles renders obstacle-free states too)."""
    params = WorldParams(world_size, max(1, max_obstacles(world_size)))
    return Renderer(params, domain, severity, image_size)


def check_images(images: np.ndarray, image_size: int | None = None) -> np.ndarray:
    """Refuse frames that are not ``(N, S, S, 3)`` uint8 (with ``S == image_size`` if given)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise DataError(
            f"images have dtype {dtype}: pass uint8 RGB frames in [0, 255] of shape (N, S, S, 3) "
            "(for float images in [0, 1], use (images * 255).round().astype(np.uint8))."
        )
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise DataError(
            f"images have shape {images.shape}: pass square RGB frames (N, S, S, 3), channels last."
        )
    if image_size is not None and images.shape[1] != image_size:
        raise DataError(
            f"images are {images.shape[1]}x{images.shape[2]} but the model takes "
            f"{image_size}x{image_size}: resize them, or pass --image-size {images.shape[1]}."
        )
    if images.shape[1] % 32:
        raise DataError(
            f"image side {images.shape[1]} is not a multiple of 32: resize to e.g. "
            f"{max(32, round(images.shape[1] / 32) * 32)} so every tap's stride divides it."
        )
    return images


def to_input(images: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 frames ``(B, S, S, 3)`` -> float ``(B, 3, S, S)`` in [0, 1] on ``device`` (default
    CPU).

    The frames travel as uint8 (a quarter of the bytes of float32) and are converted where they
    land; on CUDA the result is channels_last, the layout of the model (:func:`to_device`).
    """
    frames = torch.from_numpy(images)
    device = torch.device("cpu" if device is None else device)
    if device.type == "cpu":
        return frames.permute(0, 3, 1, 2).float().div_(255.0)
    frames = frames.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return frames.to(torch.float32, memory_format=torch.channels_last).div_(255.0)


# --------------------------------------------------------------------------- devices

M = TypeVar("M", bound=nn.Module)


def to_device(module: M, device: torch.device | str) -> M:
    """``module`` moved to ``device``; on CUDA its conv weights are also made channels_last (the
    layout Hopper's bf16 convolutions are fastest in). On CPU the layout is left alone."""
    device = torch.device(device)
    if device.type == "cuda":
        return module.to(device, memory_format=torch.channels_last)
    return module.to(device)


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (CPU for a module without parameters)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The context of a forward pass: bf16 autocast on ``device`` for ``precision="bf16"``,
    a no-op for ``"fp32"``. Weights stay float32 either way."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# --------------------------------------------------------------------------- COCO format


def load_coco(images_dir: str | Path, annotations: str | Path, image_size: int) -> DetectionSet:
    """A COCO-format detection set: ``images_dir`` holds the files named in the annotation JSON
    (``images``, ``annotations`` with ``bbox = [x, y, w, h]`` in pixels, ``categories``).

    Every image is resized to ``image_size`` squared (boxes scaled with it); category ids are
    mapped to 0..K-1 in the order of ``categories``; crowd annotations are skipped.
    """
    import cv2

    data = _read_coco_json(Path(annotations))
    categories = data["categories"]
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    per_image: dict[int, list[dict]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        _check_annotation(ann, index_of, per_image, annotations)
        if not ann.get("iscrowd", 0):
            per_image[ann["image_id"]].append(ann)
    images, boxes, labels = [], [], []
    for img in data["images"]:
        path = Path(images_dir) / img["file_name"]
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise DataError(
                f"cannot read image {path} named in {annotations}: check --coco-images points at "
                "the folder that holds the annotation's file_name entries."
            )
        h, w = frame.shape[:2]
        images.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (image_size,) * 2))
        anns = per_image[img["id"]]
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        scale = np.array([image_size / w, image_size / h] * 2, np.float32)
        boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1) * scale)
        labels.append(np.array([index_of[a["category_id"]] for a in anns], np.int64))
    names = tuple(str(c.get("name", c["id"])) for c in categories)
    return DetectionSet(np.stack(images), boxes, labels, names)


def _read_coco_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist: check --coco-annotations.")
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}): pass a COCO annotation file.") from err
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations")):
        raise DataError(
            f"{path} is empty or not a COCO detection file: it needs 'images', 'annotations' "
            "and 'categories' lists (pycocotools' instances_*.json layout)."
        )
    if not data["images"] or not data.get("categories"):
        raise DataError(
            f"{path} has no images or no categories: add at least one image and one category."
        )
    return data


def _check_annotation(ann: dict, index_of: dict, per_image: dict, source) -> None:
    if ann.get("category_id") not in index_of:
        raise DataError(
            f"{source}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}, "
            f"which is not in 'categories' (ids {sorted(index_of)}): fix the id or add the category."
        )
    if ann.get("image_id") not in per_image:
        raise DataError(
            f"{source}: annotation {ann.get('id')} refers to image_id {ann.get('image_id')!r}, "
            "which is not in 'images': fix the id or add the image."
        )
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0):
        raise DataError(
            f"{source}: annotation {ann.get('id')} has bbox {bbox!r}: COCO boxes are "
            "[x, y, width, height] in pixels with width and height > 0."
        )


def check_labels(data: DetectionSet, num_classes: int) -> None:
    """Refuse class ids outside ``range(num_classes)``."""
    for i, lab in enumerate(data.labels):
        if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
            bad = int(lab[(lab < 0) | (lab >= num_classes)][0])
            raise DataError(
                f"frame {i} has class id {bad}, outside 0..{num_classes - 1} "
                f"({num_classes} classes: {list(data.class_names)}): fix the labels or build the "
                "model with more classes."
            )
