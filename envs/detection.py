"""Detection frames: the renderer's frames plus the exact box and class of every object in them.

Boxes come from the world state and the renderer's own per-episode draws (distractor cells,
camera pose), not from the pixels: each object's drawn extent inside its cell (the agent's disc,
the goal's square, a full obstacle cell, a distractor's sprite) is mapped through the episode's
camera (rotation, scale, shift) and clipped to the frame. Discs stay discs under the camera, so
their boxes stay tight; other shapes get the box of their rotated corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simtoreal.envs import rng
from simtoreal.envs import world as world_fns
from simtoreal.envs.render import _STREAM_EPISODE, AGENT, GOAL, OBSTACLE, Renderer
from simtoreal.envs.world import WorldParams, WorldState

CLASSES = ("agent", "goal", "obstacle", "distractor")
"""Detection classes; a box's label is its index here."""

# Drawn extent of each tile type inside its cell, as (centre offset, half size) in cell units,
# and whether it is a disc. Taken from the shapes of render._draw_tiles.
_EXTENT = {
    OBSTACLE: (0.50, False),
    AGENT: (0.36, True),
    GOAL: (0.30, False),
    4: (0.30, False),  # triangle
    5: (0.30, False),  # diagonal line
    6: (0.18, True),  # small disc
    7: (0.36, True),  # ring
}
_CLASS_OF_TYPE = {AGENT: 0, GOAL: 1, OBSTACLE: 2, 4: 3, 5: 3, 6: 3, 7: 3}
MIN_VISIBLE = 0.3
"""Objects with less than this share of their box inside the frame are dropped."""


@dataclass(frozen=True)
class DetectionFrames:
    """Frames with their objects.

    ``images``: (N, H, W, 3) uint8. ``boxes[i]``: (n_i, 4) float32 ``x1, y1, x2, y2`` in pixels
    (pixel edges, so a full frame is ``0, 0, W, H``). ``labels[i]``: (n_i,) int64 in
    ``range(len(CLASSES))``.
    """

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]


def render_detection(
    params: WorldParams,
    seeds: np.ndarray,
    domain: str = "randomized",
    severity: float = 0.5,
    image_size: int = 128,
    bank_seed: int = 0,
    renderer: Renderer | None = None,
) -> DetectionFrames:
    """One frame per seed (the first episode of each seed's world) with its object boxes.

    ``renderer`` (optional) is a renderer of a world of the same size, reused to save building
    its banks; the other rendering arguments are then ignored.
    """
    renderer = renderer or Renderer(params, domain, severity, image_size, bank_seed)
    state = world_fns.init(params, np.asarray(seeds))
    images = renderer.render(state)
    boxes, labels = object_boxes(renderer, state)
    return DetectionFrames(images, boxes, labels)


def object_boxes(
    renderer: Renderer, state: WorldState
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes ``(n_i, 4)`` and labels ``(n_i,)`` of the objects in each frame ``renderer`` draws."""
    types = renderer.tile_types(state)[:, :-1]  # (N, n_cells)
    cameras = np.stack(renderer._cameras)[_camera_pose(renderer, state)]  # (N, 2, 3)
    size, cell, offset = renderer.params.size, renderer.cell, renderer.offset
    boxes, labels = [], []
    for frame_types, camera in zip(types, cameras, strict=True):
        cells = np.flatnonzero(frame_types)
        kinds = frame_types[cells]
        rows, cols = np.divmod(cells, size)
        centres = offset + cell * np.stack([cols + 0.5, rows + 0.5], 1)  # (n, 2) x, y
        half = cell * np.array([_EXTENT[k][0] for k in kinds])
        disc = np.array([_EXTENT[k][1] for k in kinds], dtype=bool)
        b = _through_camera(centres, half, disc, camera)
        b, keep = _clip(b, renderer.image_size)
        boxes.append(b[keep].astype(np.float32))
        labels.append(np.array([_CLASS_OF_TYPE[k] for k in kinds[keep]], dtype=np.int64))
    return boxes, labels


def _camera_pose(renderer: Renderer, state: WorldState) -> np.ndarray:
    """Camera pose index of each frame, drawn exactly as ``Renderer.render`` draws it. Shape (N,)."""
    episode = rng.integers(
        state.key,
        state.episode,
        _STREAM_EPISODE,
        2,
        [renderer.n_variants, len(renderer._cameras)],
    )
    return episode[:, 1]


def _through_camera(
    centres: np.ndarray, half: np.ndarray, disc: np.ndarray, camera: np.ndarray
) -> np.ndarray:
    """Boxes of shapes centred at ``centres`` (n, 2) with half sizes ``half`` (n,) after the
    affine ``camera`` (2, 3), which maps pixel centres (edges - 0.5) forward. Shape (n, 4)."""
    linear, shift = camera[:, :2], camera[:, 2]
    centre_out = (centres - 0.5) @ linear.T + shift + 0.5
    scale = np.sqrt(abs(np.linalg.det(linear)))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    spread = np.abs(corners @ linear.T).max(axis=0)  # half extent of a rotated unit square
    extent = np.where(disc[:, None], scale, spread[None, :]) * half[:, None]
    return np.concatenate([centre_out - extent, centre_out + extent], axis=1)


def _clip(boxes: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the frame, and which keep at least ``MIN_VISIBLE`` of their area."""
    clipped = boxes.clip(0, image_size)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return clipped, inside >= MIN_VISIBLE * area
