"""The source task of the sequential transfer: count objects in frames of our own world.

A trunk (tapped at the layer the detector will use) and a small count head learn to say how many
obstacles and how many distractors a frame holds (a classification over 0..MAX_COUNT per
counted class). The trained backbone and the count head are saved as one safetensors file whose
metadata names the backbone, the tap and the task, so the detector can load it as ``--weights``
and the forgetting of the source task can be measured after fine-tuning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simtoreal.runs import atomic_write_bytes
from simtoreal.stacks.vision_data import DetectionSet, autocast, device_of, to_device, to_input
from simtoreal.stacks.vision_trunks import SOURCE_FORMAT, Trunk, read_state_dict

COUNTED = ("obstacle", "distractor")
"""Classes whose objects the source task counts."""
MAX_COUNT = 10
"""Counts above this are read as MAX_COUNT."""


class CountHead(nn.Module):
    """Trunk features ``(B, C, H, W)`` -> count logits ``(B, len(COUNTED), MAX_COUNT + 1)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, len(COUNTED) * (MAX_COUNT + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(2, 3))).view(x.shape[0], len(COUNTED), MAX_COUNT + 1)


def count_targets(data: DetectionSet) -> torch.Tensor:
    """Objects of each counted class per frame, capped. Shape: (N, len(COUNTED)), int64."""
    columns = [data.class_names.index(name) for name in COUNTED]
    return torch.from_numpy(data.counts()[:, columns]).clamp_max(MAX_COUNT)


def train_source(
    trunk: Trunk,
    data: DetectionSet,
    epochs: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    on_step=None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> CountHead:
    """Train ``trunk`` and a new count head on ``data`` (all parameters, AdamW, cosine lr) on
    ``device`` (default: where the trunk is; the trunk is moved there), under bf16 autocast for
    ``precision="bf16"``. The batch order comes from a CPU generator, the same on every device."""
    device = device_of(trunk) if device is None else torch.device(device)
    trunk = to_device(trunk, device)
    channels = trunk(to_input(data.images[:1], device)).shape[1]
    head = to_device(CountHead(channels), device)
    params = [*trunk.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    targets = count_targets(data).to(device)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(data) / batch_size)
    trunk.train()
    for step, index in enumerate(_batches(len(data), batch_size, epochs, generator)):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
        rows = torch.from_numpy(index).to(device)
        with autocast(device, precision):
            logits = head(trunk(to_input(data.images[index], device)))
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets[rows].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(loss.item())
    trunk.eval()
    return head


def _batches(n: int, batch_size: int, epochs: int, generator: torch.Generator):
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


@torch.no_grad()
def count_accuracy(
    trunk: nn.Module, head: CountHead, data: DetectionSet, batch: int = 64, precision: str = "fp32"
) -> float:
    """Share of (frame, counted class) pairs counted exactly, with the trunk in eval mode, on the
    trunk's device (the head is moved there)."""
    device = device_of(trunk)
    head = head.to(device)
    was = trunk.training
    trunk.eval()
    targets = count_targets(data).to(device)
    hits = []
    for i in range(0, len(data), batch):
        with autocast(device, precision):
            logits = head(trunk(to_input(data.images[i : i + batch], device)))
        hits.append(logits.argmax(-1) == targets[i : i + batch])
    trunk.train(was)
    return float(torch.cat(hits).float().mean())


def save_source(path: Path, trunk: Trunk, head: CountHead, meta: dict) -> None:
    """The backbone's and the count head's tensors (as CPU tensors) with ``meta`` as one
    safetensors file."""
    from safetensors.torch import save

    backbone = trunk.backbone[0]
    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    tensors |= {
        f"count_head.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()
    }
    metadata = {"format": SOURCE_FORMAT, "backbone": trunk.name, "layer": trunk.layer}
    metadata |= {k: json.dumps(v) for k, v in meta.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_count_head(path: Path, channels: int) -> CountHead:
    """The count head saved beside a source-task trunk."""
    state, _ = read_state_dict(path)
    head = CountHead(channels)
    head.load_state_dict(
        {k.removeprefix("count_head."): v for k, v in state.items() if k.startswith("count_head.")}
    )
    return head


def source_seed_block(seed: int) -> int:
    """First world seed of the source task's frames (disjoint from the detection sets)."""
    return 50_000_000 + 1_000_000 * int(np.int64(seed) % 1000)
