"""The image view: renders a batch of world states to RGB frames in a named visual domain.

Rendering is a lookup, never a per-pixel loop. At construction the renderer pre-renders a *bank*
of cell tiles (floor, obstacle, agent, goal, distractors) for each visual variant of its domain,
with the palette, texture, brightness, blur and lighting of that variant baked in per cell
position, plus a bank of camera poses (index maps) and a bank of sensor noise. A frame is then
one gather of tile pixels through the episode's camera map, plus one saturating add of noise.

Domains:
    ``sim``: the clean render: flat palette, red disc agent, green square goal, no noise.
    ``randomized``: domain randomisation for training: random palettes and floor textures,
        scene saturation and contrast, brightness, lighting gradients, blur, object sizes, camera
        shifts of up to 2 px, sensor noise, distractor sprites.
    ``validation``: a second held-out world, used to choose models and defaults and never for
        reports: slate tiles, a cool palette, a lighting gradient, noise, camera rotation and
        scale. ``severity`` works as for ``real``.
    ``real``: the test shift, never used for training or choices by default: wood and brick
        textures, a warm palette, a lighting gradient, stronger noise, camera rotation and scale,
        and distractors. ``severity`` in [0, 1] scales every part of the gap; 0 is close to ``sim``.

At severity 0.5 both held-out worlds lie outside what ``randomized`` trains on in three factors
(docs/transfer.md has the table): camera rotation (+-3 degrees; ``randomized`` has none), camera
scale (+-4%; none) and the floor texture (wood or tiles; ``randomized`` draws flat, grid,
stripes, speckle and checker), besides their palettes.

Per-episode draws (variant, camera pose, distractors) and per-frame draws (noise) come from the
world's counter-based keys, so rendering is a pure function of the state.
"""

from __future__ import annotations

import cv2
import numpy as np

from simtoreal.envs import rng
from simtoreal.envs.world import WorldParams, WorldState
from simtoreal.errors import ConfigError

DOMAINS = ("sim", "randomized", "real", "validation")
HELD_OUT_DOMAINS = ("real", "validation")
"""Domains with a severity knob, held out from training: ``validation`` chooses, ``real`` tests."""

FLOOR, OBSTACLE, AGENT, GOAL = 0, 1, 2, 3
N_DISTRACTOR_KINDS = 4
BORDER = 4 + N_DISTRACTOR_KINDS  # type of the pixels outside the board
N_TYPES = BORDER + 1

_STREAM_EPISODE, _STREAM_FRAME = 101, 102

SIM_COLORS = {
    "floor": (205, 205, 200),
    "grid": (170, 170, 165),
    "obstacle": (60, 60, 70),
    "agent": (220, 40, 40),
    "goal": (40, 180, 60),
    "border": (30, 30, 30),
}


def check_domain(domain: str, severity: float) -> None:
    if domain not in DOMAINS:
        raise ConfigError(f"unknown domain {domain!r}: use one of {', '.join(DOMAINS)}.")
    if not 0.0 <= float(severity) <= 1.0:
        raise ConfigError(
            f"severity={severity}: the size of the visual gap is a number in [0, 1] "
            "(0 close to sim, 1 the strongest shift)."
        )


class Renderer:
    """Renders world states of one :class:`WorldParams` in one visual domain.

    Args:
        params: The world the states come from.
        domain: ``"sim"``, ``"randomized"``, ``"validation"`` or ``"real"``.
        severity: Size of the ``real`` or ``validation`` gap in [0, 1] (ignored by the others).
        image_size: Side of the square frame in pixels.
        bank_seed: Seed of the pre-rendered banks. The ``real`` domain is a fixed world, so change
            it only to study how results vary across held-out domains.
    """

    def __init__(
        self,
        params: WorldParams,
        domain: str = "sim",
        severity: float = 0.5,
        image_size: int = 64,
        bank_seed: int = 0,
    ) -> None:
        check_domain(domain, severity)
        if image_size < params.size:
            raise ConfigError(
                f"image_size={image_size} is smaller than the grid ({params.size} cells): use "
                f"image_size >= {params.size}."
            )
        self.params, self.domain, self.severity = params, domain, float(severity)
        self.image_size, self.bank_seed = image_size, bank_seed
        self.cell = image_size // params.size
        self.offset = (image_size - self.cell * params.size) // 2
        gen = np.random.default_rng([bank_seed, DOMAINS.index(domain)])
        spec = _DOMAIN_SPECS[domain](gen, self.severity)
        self.n_variants = spec["variants"]
        self.n_distractors = spec["distractors"]
        self._border = tuple(float(x) for x in spec["palette"](gen)["border"])
        self._tiles = self._build_tile_bank(gen, spec)
        self._cameras = [
            _camera_matrix(pose, image_size)
            for pose in [(0.0, 1.0, 0.0, 0.0), *spec["cameras"](gen)]
        ]
        self._border_gray = float(np.mean(self._border))
        self._noise = _noise_bank(
            gen, spec["noise"], image_size, spread=spec.get("noise_spread", False)
        )
        self._cell_ids = np.arange(params.n_cells)
        self._pixel_rows = np.arange(self.cell, dtype=np.int32).reshape(1, 1, self.cell, 1)

    def __reduce__(self):
        # The banks are a pure function of the arguments: rebuild them instead of pickling
        # megabytes of tiles and noise (vector envs in subprocesses pickle their envs).
        args = (self.params, self.domain, self.severity, self.image_size, self.bank_seed)
        return (Renderer, args)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def render(self, state: WorldState) -> np.ndarray:
        """Frames of every env. Shape: (N, image_size, image_size, 3), uint8."""
        n, size, c = state.num_envs, self.params.size, self.cell
        episode = rng.integers(
            state.key, state.episode, _STREAM_EPISODE, 2, [self.n_variants, len(self._cameras)]
        )
        # Row index into the tile bank of pixel row p of the tile at (row r, col q):
        # ((variant * N_TYPES + type) * n_cells + cell) * c + p, laid out as (N, r, p, q).
        tile = (episode[:, :1] * N_TYPES + self.tile_types(state)[:, :-1]) * self.params.n_cells
        tile = ((tile + self._cell_ids) * c).astype(np.int32).reshape(n, size, 1, size)
        rows = np.take(self._tiles, tile + self._pixel_rows, axis=0)
        board = rows.reshape(n, size * c, size * c, 3)
        frames = self._frame_buffer(board)
        if len(self._cameras) > 1:
            frames = self._move_cameras(frames, episode[:, 1])
        if self._noise is None:
            return frames
        frame_counter = (state.episode << np.uint64(16)) + state.steps.astype(np.uint64)
        pick = rng.integers(state.key, frame_counter, _STREAM_FRAME, 1, len(self._noise[0]))[:, 0]
        flat = frames.reshape(n * self.image_size, -1)
        cv2.add(flat, self._noise[0][pick].reshape(flat.shape), dst=flat)
        cv2.subtract(flat, self._noise[1][pick].reshape(flat.shape), dst=flat)
        return frames

    def _frame_buffer(self, board: np.ndarray) -> np.ndarray:
        """Place the boards in frames, padding with the border colour where the grid is smaller."""
        if self.offset == 0 and board.shape[1] == self.image_size:
            return board
        frames = np.empty((board.shape[0], *self.shape), dtype=np.uint8)
        frames[:] = self._border
        o, b = self.offset, board.shape[1]
        frames[:, o : o + b, o : o + b] = board
        return frames

    def _move_cameras(self, frames: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Frames seen through each episode's camera pose (pose 0 is the identity).

        One ``cv2.warpAffine`` per moved frame. Warping frames that share a pose together, stacked
        along the channel axis, was tried: the transposes cost more than the warps they save.
        """
        out = frames.copy()
        border = (self._border_gray,) * 4
        size = (self.image_size, self.image_size)
        for i in np.flatnonzero(pose):
            cv2.warpAffine(
                frames[i],
                self._cameras[pose[i]],
                size,
                dst=out[i],
                flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=border,
            )
        return out

    def tile_types(self, state: WorldState) -> np.ndarray:
        """Tile type at each cell, plus a last column for the border. Shape: (N, n_cells + 1)."""
        n, n_cells = state.num_envs, self.params.n_cells
        types = np.full((n, n_cells + 1), FLOOR, dtype=np.int64)
        types[:, n_cells] = BORDER
        if self.params.n_obstacles:
            types[:, :n_cells][state.obstacles] = OBSTACLE
        rows = np.arange(n)
        if self.n_distractors:
            # Distractors sit on cells drawn once per episode; walls, goal and agent cover them.
            draws = rng.integers(
                state.key,
                state.episode,
                _STREAM_EPISODE + 1,
                2 * self.n_distractors,
                [n_cells] * self.n_distractors + [N_DISTRACTOR_KINDS] * self.n_distractors,
            )
            cells, kinds = draws[:, : self.n_distractors], draws[:, self.n_distractors :]
            free = types[rows[:, None], cells] == FLOOR
            types[rows[:, None], cells] = np.where(free, 4 + kinds, types[rows[:, None], cells])
        types[rows, state.goal] = GOAL
        types[rows, state.agent] = AGENT
        return types

    def _build_tile_bank(self, gen: np.random.Generator, spec: dict) -> np.ndarray:
        """Pixel rows of every (variant, type, cell) tile. Shape: (n_variants * N_TYPES * n_cells * c, c * 3)."""
        c, n_cells = self.cell, self.params.n_cells
        bank = np.empty((self.n_variants, N_TYPES, n_cells, c, c, 3), dtype=np.uint8)
        rows, cols = np.divmod(np.arange(self.params.n_cells), self.params.size)
        centre = (np.stack([rows, cols], 1) + 0.5) / self.params.size  # cell centres in [0, 1]
        for v in range(self.n_variants):
            palette = spec["palette"](gen)
            tiles = _draw_tiles(c, palette, gen)  # (N_TYPES, c, c, 3) float
            sigma = palette.get("blur", 0.0)
            if sigma > 0:
                tiles = np.stack([cv2.GaussianBlur(t, (0, 0), sigma) for t in tiles])
            gain = _lighting(centre, palette.get("light", (0.0, 0.0)), c)  # (n_cells, c, c)
            tiles = _colour_moves(tiles, palette)
            lit = tiles[:, None] * gain[None, :, :, :, None] * palette.get("brightness", 1.0)
            bank[v] = np.clip(lit, 0, 255).astype(np.uint8)
        return bank.reshape(-1, c * 3)  # one row of c pixels per item: gathers copy whole rows


# --------------------------------------------------------------------------- domain definitions


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    """RGB of an HSV colour; h in degrees, s and v in [0, 1]."""
    px = np.array([[[h % 360.0, s, v]]], dtype=np.float32)
    return tuple(float(x) * 255.0 for x in cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0])


def _sim_spec(gen, severity):
    palette = {**SIM_COLORS, "texture": "grid", "texture_amp": 0.0}
    return {
        "variants": 1,
        "distractors": 0,
        "noise": 0.0,
        "palette": lambda g: dict(palette),
        "cameras": lambda g: [],
    }


def _randomized_palette(g: np.random.Generator) -> dict:
    """One ``randomized`` variant: random floor, texture, obstacles and distractors; the agent
    red within 30 degrees of hue and the goal green to cyan, each saturated; brightness, a lighting
    gradient up to 0.6, blur, the agent's and goal's sizes, and in 40% of the variants each, the
    saturation (down to 0.3) and the contrast (down to 0.5) of the whole scene.

    Wider moves were measured and cost more than they gave at this budget (docs/transfer.md):
    agent and goal in any colour (told apart by shape alone) were not learned in 100k frames,
    and wider hue bands with a hue rotation of the scene lowered validation success.
    """
    floor_v = g.uniform(0.55, 0.9)
    return {
        "floor": _hsv(g.uniform(0, 360), g.uniform(0, 0.35), floor_v),
        "grid": _hsv(g.uniform(0, 360), g.uniform(0, 0.3), floor_v * g.uniform(0.7, 1.0)),
        "obstacle": _hsv(g.uniform(0, 360), g.uniform(0, 0.5), g.uniform(0.1, 0.35)),
        "agent": _hsv(g.uniform(-30, 30), g.uniform(0.6, 1.0), g.uniform(0.65, 1.0)),
        "goal": _hsv(g.uniform(95, 175), g.uniform(0.55, 1.0), g.uniform(0.5, 0.9)),
        "border": _hsv(g.uniform(0, 360), g.uniform(0, 0.4), g.uniform(0.05, 0.4)),
        "distractor": [
            _hsv(g.uniform(0, 360), g.uniform(0.3, 1), g.uniform(0.3, 1)) for _ in range(4)
        ],
        "texture": str(g.choice(["flat", "grid", "stripes", "speckle", "checker"])),
        "texture_amp": g.uniform(0.0, 0.15),
        "brightness": g.uniform(0.7, 1.2),
        "light": (g.uniform(0, 2 * np.pi), g.uniform(0.0, 0.6)),
        "blur": g.uniform(0.3, 1.0) if g.random() < 0.3 else 0.0,
        "shape": (g.uniform(0.32, 0.4), g.uniform(0.16, 0.24)),  # agent radius, goal margin
        "saturation": g.uniform(0.3, 1.0) if g.random() < 0.4 else 1.0,
        "contrast": g.uniform(0.5, 1.0) if g.random() < 0.4 else 1.0,
    }


def _randomized_spec(gen, severity):
    # Camera shifts of up to 2 px only. Rotation (8 degrees) and zoom (8%) were tried: the
    # estimator learned far slower and geometric shifts did not improve (docs/transfer.md), so
    # geometry stays a family that training does not cover.
    shifts = [(0.0, 1.0, dx, dy) for dx in range(-2, 3) for dy in range(-2, 3) if dx or dy]
    return {
        "variants": 256,
        "distractors": 3,
        "noise": 12.0,
        "noise_spread": True,  # each bank entry has its own sigma in [0, 12]: clean frames too
        "palette": _randomized_palette,
        "cameras": lambda g: shifts,
    }


def _held_out_spec(s: float, ends: dict, texture: str):
    """A held-out world: the ``sim`` palette moved a share ``s`` of the way to ``ends``, a
    ``texture`` floor, a lighting gradient, blur, noise, distractors and camera pose jitter that
    all grow with ``s``."""

    def lerp(a, b):
        return tuple((1 - s) * np.asarray(a) + s * np.asarray(b))

    def palette(g):
        jitter = g.uniform(-0.05, 0.05)
        return {
            **{k: lerp(SIM_COLORS[k], ends[k]) for k in SIM_COLORS},
            "distractor": [lerp(SIM_COLORS["floor"], col) for col in ends["distractor"]],
            "texture": texture,
            "texture_amp": 0.25 * s,
            "brightness": 1.0 + jitter * s,
            "light": (g.uniform(0, 2 * np.pi), 0.8 * s),
            "blur": 0.6 * s,
        }

    def cameras(g):
        return [
            (
                g.uniform(-6, 6) * s,
                1.0 + g.uniform(-0.08, 0.08) * s,
                g.uniform(-2, 2) * s,
                g.uniform(-2, 2) * s,
            )
            for _ in range(32)
        ]

    return {
        "variants": 16,
        "distractors": int(round(3 * s)),
        "noise": 14.0 * s,
        "palette": palette,
        "cameras": cameras,
    }


REAL_ENDS = {
    "floor": (176, 132, 88),
    "grid": (140, 100, 62),
    "obstacle": (96, 52, 40),
    "agent": (235, 110, 30),
    "goal": (30, 150, 150),
    "border": (60, 48, 40),
    "distractor": ((90, 90, 210), (230, 220, 60), (200, 60, 200), (240, 240, 240)),
}
VALIDATION_ENDS = {
    "floor": (120, 138, 160),
    "grid": (90, 104, 122),
    "obstacle": (40, 52, 80),
    "agent": (240, 60, 110),
    "goal": (90, 200, 40),
    "border": (28, 34, 48),
    "distractor": ((240, 150, 40), (60, 200, 220), (150, 90, 200), (250, 250, 250)),
}


def _real_spec(gen, s):
    return _held_out_spec(s, REAL_ENDS, "wood")


def _validation_spec(gen, s):
    return _held_out_spec(s, VALIDATION_ENDS, "tiles")


_DOMAIN_SPECS = {
    "sim": _sim_spec,
    "randomized": _randomized_spec,
    "real": _real_spec,
    "validation": _validation_spec,
}


def _draw_tiles(c: int, pal: dict, gen: np.random.Generator) -> np.ndarray:
    """One variant's tiles. Shape: (N_TYPES, c, c, 3), float32 in [0, 255]."""
    up = 8  # draw shapes 8x larger, then area-downsample: smooth edges at any cell size
    big = c * up
    floor = np.empty((big, big, 3), np.float32)
    floor[:] = pal["floor"]
    texture = _texture(pal.get("texture", "flat"), big, up, gen)
    floor *= 1.0 + pal.get("texture_amp", 0.0) * texture[..., None]
    if pal.get("texture") == "grid":
        floor[:up, :] = pal["grid"]
        floor[:, :up] = pal["grid"]

    def with_shape(colour, draw):
        tile = floor.copy()
        draw(tile, tuple(float(x) for x in colour))
        return tile

    agent_radius, goal_margin = pal.get("shape", (0.36, 0.2))
    centre, radius = (big // 2, big // 2), int(big * agent_radius)
    margin = int(big * goal_margin)
    shapes = [
        np.full((big, big, 3), pal["obstacle"], np.float32)
        * (1.0 + 0.5 * pal.get("texture_amp", 0.0) * _texture("brick", big, up, gen)[..., None]),
        with_shape(pal["agent"], lambda t, col: cv2.circle(t, centre, radius, col, -1)),
        with_shape(
            pal["goal"],
            lambda t, col: cv2.rectangle(
                t, (margin, margin), (big - margin, big - margin), col, -1
            ),
        ),
    ]
    distractors = pal.get("distractor", [pal["floor"]] * N_DISTRACTOR_KINDS)
    tri = np.array([[big // 2, margin], [big - margin, big - margin], [margin, big - margin]])
    draws = [
        lambda t, col: cv2.fillConvexPoly(t, tri, col),
        lambda t, col: cv2.line(t, (margin, margin), (big - margin, big - margin), col, up),
        lambda t, col: cv2.circle(t, centre, radius // 2, col, -1),
        lambda t, col: cv2.circle(t, centre, radius, col, up),
    ]
    shapes += [with_shape(col, d) for col, d in zip(distractors, draws, strict=True)]
    tiles = [floor, *shapes, np.full((big, big, 3), pal["border"], np.float32)]
    return np.stack([cv2.resize(t, (c, c), interpolation=cv2.INTER_AREA) for t in tiles])


def _colour_moves(tiles: np.ndarray, pal: dict) -> np.ndarray:
    """A variant's tiles ``(T, c, c, 3)`` float with its hue rotation (degrees), saturation
    factor and contrast factor (around the tiles' mean grey) applied."""
    hue, sat, contrast = pal.get("hue", 0.0), pal.get("saturation", 1.0), pal.get("contrast", 1.0)
    if hue or sat != 1.0:
        rgb = (np.clip(tiles, 0, 255) / 255.0).astype(np.float32).reshape(-1, tiles.shape[2], 3)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
        hsv[..., 1] *= sat
        tiles = (cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0).reshape(tiles.shape)
    if contrast != 1.0:
        tiles = tiles.mean() + contrast * (tiles - tiles.mean())
    return tiles


def _texture(kind: str, big: int, up: int, gen: np.random.Generator) -> np.ndarray:
    """A zero-mean pattern in about [-1, 1]. Shape: (big, big)."""
    ys, xs = np.mgrid[0:big, 0:big] / big
    if kind == "stripes":
        return np.sign(np.sin(2 * np.pi * (xs * gen.integers(2, 5) + ys * gen.integers(0, 3))))
    if kind == "checker":
        return np.where((ys * 4).astype(int) % 2 ^ (xs * 4).astype(int) % 2, 1.0, -1.0)
    if kind == "speckle":
        return cv2.resize(
            gen.uniform(-1, 1, (big // up, big // up)), (big, big), interpolation=cv2.INTER_NEAREST
        )
    if kind == "wood":
        grain = np.sin(2 * np.pi * (ys * 6 + 0.3 * np.sin(2 * np.pi * xs * 2 + gen.uniform(0, 6))))
        return 0.7 * grain + 0.3 * gen.uniform(-1, 1, (big, big))
    if kind == "tiles":  # large square tiles with dark grout, each a slightly different shade
        cells = (ys * 2).astype(int) * 2 + (xs * 2).astype(int)
        grout = ((ys * 2) % 1 < 0.08) | ((xs * 2) % 1 < 0.08)
        return np.where(grout, -1.0, gen.uniform(-0.3, 0.3, 4)[cells])
    if kind == "brick":
        row = (ys * 4).astype(int)
        mortar = ((ys * 4) % 1 < 0.12) | (((xs * 2 + 0.5 * (row % 2)) % 1) < 0.08)
        return np.where(mortar, -1.0, 0.3)
    return np.zeros((big, big))


def _lighting(centre: np.ndarray, light: tuple[float, float], c: int) -> np.ndarray:
    """Per-pixel gain of a linear lighting gradient, per cell. Shape: (n_cells, c, c)."""
    direction, strength = light
    if strength == 0:
        return np.ones((len(centre), c, c), np.float32)
    d = np.array([np.sin(direction), np.cos(direction)])
    # Gradient across the board: gain = 1 + strength * (projection - 0.5), constant within a cell.
    proj = (centre - 0.5) @ d
    return np.broadcast_to((1.0 + strength * proj)[:, None, None], (len(centre), c, c)).astype(
        np.float32
    )


def _noise_bank(
    gen: np.random.Generator, sigma: float, size: int, n: int = 256, spread: bool = False
):
    """Pre-generated Gaussian sensor noise as its positive and negative parts, for saturating
    uint8 add and subtract. With ``spread``, entry i has its own sigma drawn in [0, sigma].
    Shapes: 2 x (n, size, size, 3), uint8; None if sigma is 0."""
    if sigma <= 0:
        return None
    sigmas = gen.uniform(0, sigma, (n, 1, 1, 1)) if spread else sigma
    noise = np.rint(gen.normal(0, 1, (n, size, size, 3)) * sigmas).clip(-80, 80)
    return np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8)


def _camera_matrix(pose: tuple[float, float, float, float], image_size: int) -> np.ndarray:
    """Affine map of a camera pose (angle in degrees, scale, shift x and y in pixels). Shape: (2, 3)."""
    angle, scale, dx, dy = pose
    centre = (image_size - 1) / 2.0
    m = cv2.getRotationMatrix2D((centre, centre), angle, scale)
    m[:, 2] += (dx, dy)
    return m
