"""Paired data: the privileged states and the camera frames that show them, collected in batch.

Labels are not stored: the teacher's latent and action distribution are a deterministic function
of the state, computed when a batch is trained on.

Frames are not stored either when the world can draw them again. A grid world's frame is a pure
function of its :class:`~simtoreal.envs.world.WorldState` (the renderer's draws are keyed on the
state's counter-based key), so :class:`PairedData` keeps the world states, a few bytes a pair, and
renders each minibatch when it is trained on: 100k frames of 64x64 RGB would be 1.2 GB, the
states of the obstacle world are 90 bytes each. Rendering a minibatch costs a fraction of the
adapter's forward and backward pass on it (benchmarks/results/transfer_memory.md).

Re-rendering also buys fresh appearance: ``frames(idx, draw=k)`` re-keys the renderer's
per-episode and per-frame draws (palette variant, camera pose, distractors, noise) with ``k``, so
every epoch can see the same states under new randomisation. ``draw=0`` is the frame that was
observed at collection time, bit for bit.

Frame stacks (``frame_stack > 1``) and envs that cannot re-render keep their frames in memory.
A stack of k frames shares k-1 of them with the pair before it, so the stacks that
:func:`~simtoreal.transfer.gym_data.collect_vector` gathers are kept as single frames plus, per
pair, the indices of its k frames (``stack_index``): a third of the memory for a stack of 3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from simtoreal.envs import rng
from simtoreal.envs.batched import GridWorldBatch
from simtoreal.envs.gym_envs import split_kwargs
from simtoreal.envs.render import Renderer
from simtoreal.envs.world import WorldState
from simtoreal.errors import DataError


def take_rows(state: WorldState, idx: np.ndarray) -> WorldState:
    """Rows ``idx`` of a batch of world states."""
    return WorldState(**{f.name: getattr(state, f.name)[idx] for f in fields(WorldState)})


def concat_rows(states: list[WorldState]) -> WorldState:
    return WorldState(
        **{f.name: np.concatenate([getattr(s, f.name) for s in states]) for f in fields(WorldState)}
    )


def redrawn(state: WorldState, draw: int) -> WorldState:
    """The same worlds with their appearance draws re-keyed by ``draw`` (0: unchanged).

    Only the key changes, and the key feeds nothing but the renderer once a state exists, so the
    frame shows the same agent, goal and obstacles under a new palette, camera, distractors and
    noise.
    """
    if draw == 0:
        return state
    key = rng.mix64(state.key ^ rng.mix64(np.full(1, draw, np.uint64)))
    return WorldState(
        **{**{f.name: getattr(state, f.name) for f in fields(WorldState)}, "key": key}
    )


@dataclass
class PairedData:
    """Aligned states and frames: stored ``images``, or ``worlds`` and a ``renderer`` that draws
    them on demand (:func:`collect` picks; both read the same through :meth:`frames`)."""

    states: np.ndarray
    """The teacher's observations. Shape: (M, state_dim), float32."""
    images: np.ndarray | None = None
    """Stored frames. Shape: (M, H, W, C), uint8; None when rendered on demand. With
    ``stack_index``: the single frames the stacks are made of, (F, H, W, c)."""
    worlds: WorldState | None = None
    """World states with M rows, rendered on demand by ``renderer``."""
    renderer: Renderer | None = None
    stack_index: np.ndarray | None = None
    """Pair i's frames are ``images[stack_index[i]]``, oldest first, stacked along the channels
    (C = k * c). Shape: (M, k), integer."""

    def __post_init__(self) -> None:
        if (self.images is None) == (self.worlds is None):
            raise DataError("paired data holds either stored images or world states to render.")
        if self.worlds is not None and self.renderer is None:
            raise DataError("world states need the renderer that draws them.")
        if self.stack_index is not None and self.images is None:
            raise DataError("a stack index points into stored images.")
        if self.stack_index is not None:
            n = len(self.stack_index)
        else:
            n = len(self.images) if self.images is not None else self.worlds.num_envs
        if len(self.states) != n:
            raise DataError(f"{len(self.states)} states but {n} frames: pairs must align.")

    def __len__(self) -> int:
        return len(self.states)

    @property
    def renders(self) -> bool:
        """Whether frames are drawn on demand (so ``draw`` gives fresh appearance)."""
        return self.worlds is not None

    def frames(self, idx: np.ndarray | slice, draw: int = 0) -> np.ndarray:
        """Frames of pairs ``idx``; ``draw > 0`` redraws their appearance (rendered data only).
        Shape: (len(idx), H, W, C), uint8."""
        if self.stack_index is not None:
            return stack_frames(self.images, self.stack_index[idx])
        if self.images is not None:
            return self.images[idx]
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        return self.renderer.render(redrawn(take_rows(self.worlds, idx), draw))

    def concat(self, other: PairedData) -> PairedData:
        states = np.concatenate([self.states, other.states])
        if self.renders and other.renders and self.renderer is other.renderer:
            return PairedData(states, worlds=concat_rows([self.worlds, other.worlds]),
                              renderer=self.renderer)  # fmt: skip
        if self.stack_index is not None and other.stack_index is not None:
            index = np.concatenate([self.stack_index, other.stack_index + len(self.images)])
            return PairedData(
                states, np.concatenate([self.images, other.images]), stack_index=index
            )
        return PairedData(
            states, np.concatenate([self.frames(slice(None)), other.frames(slice(None))])
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the pairs."""
        held = [self.states, self.images, self.stack_index] if self.images is not None else [
            self.states, *(getattr(self.worlds, f.name) for f in fields(WorldState))]  # fmt: skip
        return int(sum(a.nbytes for a in held if a is not None))

    def check_nonempty(self) -> None:
        if len(self) == 0:
            raise DataError(
                "the paired dataset is empty: give a frame budget of at least one batch."
            )


def stack_frames(frames: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Row i: ``frames[index[i]]`` along the channels, in the order ``index[i]`` gives.
    Shapes: frames (F, H, W, c), index (M, k), result (M, H, W, k * c).

    Each pixel's c bytes are moved as one item (a void view): interleaving k frames of 3-byte
    pixels byte by byte was 3x slower (26 ms against 8 ms for 256 of CartPole's 40x128 stacks
    of 3; gathering stored stacks took 0.5 ms)."""
    m, k = index.shape
    pixel = np.dtype((np.void, frames.shape[-1] * frames.itemsize))
    pixels = np.ascontiguousarray(frames).view(pixel)[..., 0]  # (F, H, W)
    stacked = np.stack([pixels[index[:, j]] for j in range(k)], axis=-1)  # (M, H, W, k)
    return stacked.view(frames.dtype).reshape(m, *frames.shape[1:-1], k * frames.shape[-1])


def paired_batch(
    env_kwargs: dict, num_envs: int, domain: str, severity: float = 0.5
) -> GridWorldBatch:
    """A batch of paired-view worlds (state + image of the same state) in ``domain``."""
    kwargs = {**env_kwargs, "view": "paired", "domain": domain, "severity": severity}
    params, view = split_kwargs(kwargs)
    return GridWorldBatch(num_envs, params, view)


def collect(
    batch: GridWorldBatch,
    n_frames: int,
    act: Callable[[dict], np.ndarray],
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> PairedData:
    """Step ``batch`` with actions from ``act(obs)`` and keep every (state, frame) pair seen.

    ``act`` gets the paired observation dict ``{"state", "image"}`` of the whole batch. With one
    frame per observation the world states are kept and frames are rendered on demand; a frame
    stack keeps its frames.
    """
    n = batch.num_envs
    steps = -(-n_frames // n)
    obs = batch.reset(seeds=seed + np.arange(n))
    stored = batch.view.frame_stack > 1
    states = np.empty((steps * n, obs["state"].shape[1]), np.float32)
    images = np.empty((steps * n, *obs["image"].shape[1:]), np.uint8) if stored else None
    worlds: list[WorldState] = []
    for t in range(steps):
        states[t * n : (t + 1) * n] = obs["state"]
        if stored:
            images[t * n : (t + 1) * n] = obs["image"]
        else:
            worlds.append(batch.state)
        obs, *_ = batch.step(act(obs))
        if progress is not None:
            progress(n)
    if stored:
        return PairedData(states[:n_frames], images[:n_frames])
    rows = take_rows(concat_rows(worlds), np.arange(n_frames))
    return PairedData(states[:n_frames], worlds=rows, renderer=batch.renderer)


def random_actor(
    gen: np.random.Generator | int, n_actions: int = 4
) -> Callable[[dict], np.ndarray]:
    """Uniformly random actions for the whole batch, from ``gen`` (or a seed for one)."""
    gen = np.random.default_rng(gen)
    return lambda obs: gen.integers(0, n_actions, len(obs["state"]))


def mixed_actor(
    teacher_act: Callable[[np.ndarray], np.ndarray],
    student_act: Callable[[np.ndarray], np.ndarray],
    beta: float,
    gen: np.random.Generator | int,
) -> Callable[[dict], np.ndarray]:
    """DAgger's behaviour policy: per env and step, the teacher's action with probability beta,
    else the student's (the teacher sees the state, the student the frame)."""
    gen = np.random.default_rng(gen)

    def act(obs: dict) -> np.ndarray:
        student = student_act(obs["image"])
        if beta <= 0:
            return student
        use_teacher = gen.random(len(student)) < beta
        return np.where(use_teacher, teacher_act(obs["state"]), student)

    return act
