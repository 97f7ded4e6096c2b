"""The detection head and its maths, FCOS-style: separate box and class branches, one location
per object, ``ltrb`` distances, focal + IoU losses, and post-processing apart from the forward.

Locations: the feature map ``(H, W)`` of a stride-``s`` tap has one location per cell, centred at
``((j + 0.5) s, (i + 0.5) s)`` in pixels. Each true box is assigned to the location whose cell
holds its centre (CenterNet's rule, which never leaves a small object without a location); when
two boxes share a location, the smaller one wins, as in FCOS. A location predicts the distances
``(l, t, r, b)`` from its centre to the box's sides, in units of the stride.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import (
    batched_nms,
    box_area,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)


class DetectionHead(nn.Module):
    """Adapted features ``(B, C, H, W)`` -> ``(ltrb (B, 4, H, W), class logits (B, K, H, W))``.

    Each branch is ``depth`` 3x3 conv + ReLU layers and a 1x1 conv (``depth=0``: the reference's
    bare 1x1 convs). The class bias starts at the focal-loss prior ``p = 0.01``.
    """

    def __init__(self, channels: int, num_classes: int, depth: int = 1) -> None:
        super().__init__()
        self.box_branch = _branch(channels, 4, depth)
        self.class_branch = _branch(channels, num_classes, depth)
        nn.init.constant_(self.class_branch[-1].bias, -torch.log(torch.tensor(99.0)).item())
        nn.init.zeros_(self.box_branch[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.box_branch(x), self.class_branch(x)


def _branch(channels: int, out: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(channels, out, 1))


def location_centres(
    height: int, width: int, stride: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Pixel centres of the locations, row-major. Shape: (H * W, 2) as ``x, y``."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    return (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * stride


def encode_ltrb(boxes: torch.Tensor, centres: torch.Tensor, stride: int) -> torch.Tensor:
    """Boxes ``(N, 4)`` xyxy seen from ``centres`` ``(N, 2)`` -> ``(N, 4)`` ltrb / stride."""
    x, y = centres.unbind(-1)
    return (
        torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1)
        / stride
    )


def decode_ltrb(ltrb: torch.Tensor, centres: torch.Tensor, stride: int) -> torch.Tensor:
    """Inverse of :func:`encode_ltrb`: ``(N, 4)`` ltrb / stride -> ``(N, 4)`` xyxy boxes."""
    d = ltrb * stride
    x, y = centres.unbind(-1)
    return torch.stack([x - d[:, 0], y - d[:, 1], x + d[:, 2], y + d[:, 3]], -1)


def assign_targets(
    boxes: list[torch.Tensor], labels: list[torch.Tensor], height: int, width: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-location targets of a batch.

    Args:
        boxes: Per image, ``(n_i, 4)`` xyxy pixel boxes.
        labels: Per image, ``(n_i,)`` int64 class ids.

    Returns:
        ``label`` (B, H * W) int64, the class of the box assigned to each location or -1, and
        ``box`` (B, H * W, 4) float32, that box (zeros where no box is assigned); both on the
        device of ``boxes``.
    """
    batch = len(boxes)
    device = boxes[0].device if boxes else None
    label = torch.full((batch, height * width), -1, dtype=torch.int64, device=device)
    target = torch.zeros(batch, height * width, 4, device=device)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        if len(b) == 0:
            continue
        centre = (b[:, :2] + b[:, 2:]) / 2
        col = (centre[:, 0] / stride).long().clamp(0, width - 1)
        row = (centre[:, 1] / stride).long().clamp(0, height - 1)
        order = box_area(b).argsort(descending=True)  # smaller boxes written last: they win
        loc = (row * width + col)[order]
        label[i, loc] = lab[order]
        target[i, loc] = b[order].float()
    return label, target


def detection_loss(
    ltrb: torch.Tensor,
    logits: torch.Tensor,
    label: torch.Tensor,
    target: torch.Tensor,
    stride: int,
    box_weight: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Focal loss on classes plus GIoU and L1 losses on the boxes of assigned locations.

    Args:
        ltrb: (B, 4, H, W) predicted distances / stride.
        logits: (B, K, H, W) class logits.
        label, target: from :func:`assign_targets`.

    Returns:
        ``{"loss", "cls", "giou", "l1"}``, each a scalar, normalised by the number of boxes. The
        L1 term on ``ltrb`` keeps predicted boxes valid (``l + r > 0``) early on, where GIoU alone
        would see inverted boxes.
    """
    b, k, h, w = logits.shape
    logits = logits.permute(0, 2, 3, 1).reshape(b, h * w, k)
    ltrb = ltrb.permute(0, 2, 3, 1).reshape(b, h * w, 4)
    pos = label >= 0
    n_pos = max(int(pos.sum()), 1)
    onehot = F.one_hot(label.clamp_min(0), k).float() * pos[..., None]
    cls = sigmoid_focal_loss(logits, onehot, reduction="sum") / n_pos
    centres = location_centres(h, w, stride, ltrb.device).expand(b, -1, -1)[pos]
    want = encode_ltrb(target[pos], centres, stride)
    got = ltrb[pos]
    l1 = F.l1_loss(got, want, reduction="sum") / n_pos
    pred_boxes = _ordered(decode_ltrb(got, centres, stride))
    giou = generalized_box_iou_loss(pred_boxes, target[pos], reduction="sum") / n_pos
    loss = cls + box_weight * giou + l1
    return {"loss": loss, "cls": cls.detach(), "giou": giou.detach(), "l1": l1.detach()}


def _ordered(boxes: torch.Tensor) -> torch.Tensor:
    """xyxy boxes with ``x1 <= x2`` and ``y1 <= y2`` (an inverted prediction is flipped)."""
    x1, x2 = torch.minimum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 0], boxes[:, 2])
    y1, y2 = torch.minimum(boxes[:, 1], boxes[:, 3]), torch.maximum(boxes[:, 1], boxes[:, 3])
    return torch.stack([x1, y1, x2, y2], -1)


@torch.no_grad()
def postprocess(
    ltrb: torch.Tensor,
    logits: torch.Tensor,
    stride: int,
    image_size: tuple[int, int],
    score_threshold: float = 0.05,
    nms_iou: float = 0.5,
    top_k: int = 100,
) -> list[dict[str, torch.Tensor]]:
    """Detections per image: ``{"boxes" (n, 4), "scores" (n,), "labels" (n,)}``.

    Every (location, class) pair scoring above ``score_threshold`` is a candidate; the best
    ``top_k`` candidates of each image go through class-wise NMS (``batched_nms``) and at most
    ``top_k`` stay. The whole batch is decoded at once, NMS grouped by (image, class), so a GPU
    waits for the host twice per batch rather than a few times per image.
    """
    b, k, h, w = logits.shape
    scores = logits.sigmoid().permute(0, 2, 3, 1).reshape(b, h * w * k)
    ltrb = ltrb.permute(0, 2, 3, 1).reshape(b, h * w, 4)
    centres = location_centres(h, w, stride, ltrb.device)
    height, width = image_size
    top, index = scores.topk(min(top_k, h * w * k), dim=1)  # each image's best, descending
    above = top > score_threshold
    image = torch.arange(b, device=ltrb.device)[:, None].expand_as(index)[above]
    top, index = top[above], index[above]
    loc, cls = index // k, index % k
    boxes = _ordered(decode_ltrb(ltrb[image, loc], centres[loc], stride))
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    kept = batched_nms(boxes, top, image * k + cls, nms_iou)  # by decreasing score
    kept = kept[image[kept].argsort(stable=True)]  # grouped by image, still by score within
    counts = torch.bincount(image[kept], minlength=b).tolist()
    parts = [t[kept].split(counts) for t in (boxes, top, cls)]
    return [{"boxes": bx, "scores": sc, "labels": lb} for bx, sc, lb in zip(*parts, strict=True)]


def mean_average_precision(
    predictions: list[dict[str, torch.Tensor]],
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
) -> dict[str, float]:
    """COCO mAP@[.5:.95] and mAP@.5 with torchmetrics' ``MeanAveragePrecision``."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    truth = [{"boxes": b.float(), "labels": lab} for b, lab in zip(boxes, labels, strict=True)]
    metric.update(predictions, truth)
    result = metric.compute()
    return {"map": float(result["map"]), "map_50": float(result["map_50"])}
