"""The privileged state of third-party Gymnasium envs, and the state env a teacher trains on.

A teacher sees a vector. Most envs already give one (CartPole, Pendulum, ...); a flattenable
observation is flattened (``gymnasium.spaces.flatten``); an env whose observation is neither
(MiniGrid: a partial view plus a text mission) needs a named *state function*, registered here.
Each is ``fn(obs, env) -> vector`` (the signature of :class:`~simtoreal.envs.paired.PairedViewWrapper`'s
``state_fn``) with a function of the env giving its float32 ``Box``::

    spec = STATE_FNS["minigrid_pose"]
    env = PairedViewWrapper(base_env, state_fn=spec.fn, state_space=spec.space(base_env))

:func:`make_state_env` builds the env a teacher trains and is evaluated on; :class:`EnvMaker` is the
same as a picklable callable, for SB3's vector envs.
"""

from __future__ import annotations

import difflib
import importlib
import multiprocessing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import FlattenObservation, FrameStackObservation, TimeLimit

from simtoreal.envs.paired import FlatObservation, StateFn
from simtoreal.envs.paired import minigrid_pose as minigrid_agent_pose
from simtoreal.errors import ConfigError

#: Id prefix -> the package whose import registers those ids.
ENV_PACKAGES = {"MiniGrid-": "minigrid", "BabyAI-": "minigrid"}

EPISODE_CAP = 1000
"""Steps after which an episode of an id registered without a limit is truncated."""
_CAPPED: set[str] = set()


@dataclass(frozen=True)
class StateFunction:
    """A named state function: ``fn(obs, env)`` and ``space(env)``, the Box it returns into."""

    fn: StateFn
    space: Callable[[gym.Env], spaces.Box]
    description: str


# --------------------------------------------------------------------------- MiniGrid

#: MiniGrid's object, colour and door-state vocabularies (minigrid.core.constants).
N_OBJECTS, N_COLORS, N_STATES, N_DIRS = 11, 6, 3, 4
AGENT, KEY, DOOR, GOAL = 10, 5, 4, 8
CELL_FEATURES = N_OBJECTS + N_STATES + 1 + N_DIRS


def minigrid_full(obs: Any, env: gym.Env) -> np.ndarray:
    """The whole MiniGrid grid, one-hot, as FullyObsWrapper sees it, plus what the agent carries.

    Per cell (x-major, then y): the object type one-hot (11, the agent's cell marked ``agent``),
    the door state one-hot (open, closed, locked; other objects read "open"), the colour index / 5,
    and the agent's direction one-hot (4, zero outside its cell). Then the carried object's type
    one-hot (11) and its colour / 5. Shape: (width * height * 19 + 12,), float32, in [0, 1].
    """
    grid = env.unwrapped
    code = grid.grid.encode()  # (width, height, 3): object, colour, state
    x, y = grid.agent_pos
    objects, dirs = code[..., 0].copy(), np.zeros((*code.shape[:2], N_DIRS), np.float32)
    objects[x, y] = AGENT
    dirs[x, y, grid.agent_dir] = 1.0
    color = code[..., 1:2].astype(np.float32) / (N_COLORS - 1)
    cells = np.concatenate(
        [_one_hot(objects, N_OBJECTS), _one_hot(code[..., 2], N_STATES), color, dirs], axis=-1
    )
    carried = np.zeros(N_OBJECTS + 1, np.float32)
    if grid.carrying is not None:
        object_code, color_code, _ = grid.carrying.encode()
        carried[object_code], carried[-1] = 1.0, color_code / (N_COLORS - 1)
    return np.concatenate([cells.reshape(-1), carried])


def minigrid_full_space(env: gym.Env) -> spaces.Box:
    grid = env.unwrapped
    return _unit_box(grid.width * grid.height * CELL_FEATURES + N_OBJECTS + 1)


def minigrid_pose(obs: Any, env: gym.Env) -> np.ndarray:
    """A compact MiniGrid state for single key / door / goal layouts (DoorKey, Empty, ...).

    ``(x, y) / (side - 1)`` and the direction one-hot of the agent (as
    :func:`simtoreal.envs.paired.minigrid_pose`), whether it carries something, then for the first
    key, door and goal of the grid: present, x, y (scaled like the agent's; zeros when absent or
    carried), and whether the door is open, and locked. Shape: (18,), float32, in [0, 1].
    """
    grid = env.unwrapped
    found = {KEY: None, DOOR: None, GOAL: None}
    for index, cell in enumerate(grid.grid.grid):
        code = None if cell is None else cell.encode()[0]
        if code in found and found[code] is None:
            found[code] = (index % grid.width, index // grid.width, cell)
    parts = [minigrid_agent_pose(obs, env), [float(grid.carrying is not None)]]
    scale = np.array([grid.width - 1, grid.height - 1], np.float32)
    for entry in found.values():
        parts.append([0.0, 0.0, 0.0] if entry is None else [1.0, *(np.array(entry[:2]) / scale)])
    door = found[DOOR][2] if found[DOOR] is not None else None
    parts.append(
        [float(door is not None and door.is_open), float(door is not None and door.is_locked)]
    )
    return np.concatenate([np.asarray(p, np.float32) for p in parts])


def minigrid_pose_space(env: gym.Env) -> spaces.Box:
    return _unit_box(18)


def _one_hot(codes: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[codes]


def _unit_box(size: int) -> spaces.Box:
    return spaces.Box(0.0, 1.0, (size,), np.float32)


#: name -> state function; ``--state-fn NAME`` of ``python -m simtoreal.train gym``.
STATE_FNS: dict[str, StateFunction] = {
    "minigrid_full": StateFunction(
        minigrid_full,
        minigrid_full_space,
        "MiniGrid's whole grid one-hot (FullyObsWrapper's encoding) plus the carried object",
    ),
    "minigrid_pose": StateFunction(
        minigrid_pose,
        minigrid_pose_space,
        "MiniGrid agent position and direction, carried object, key / door / goal positions, "
        "door open / locked (18 values; single key-door layouts)",
    ),
}


# --------------------------------------------------------------------------- the state env


class StateObservation(gym.ObservationWrapper):
    """Replaces the observation with ``fn(obs, env)``, a float32 vector in ``space``."""

    def __init__(self, env: gym.Env, fn: StateFn, space: spaces.Box) -> None:
        super().__init__(env)
        self._fn = fn
        self.observation_space = space

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(self._fn(observation, self.env), dtype=np.float32)


def env_package(env_id: str) -> str | None:
    """The package that registers ``env_id``: the ``PACKAGE`` of ``PACKAGE:ID``, else the one
    :data:`ENV_PACKAGES` names for its prefix; None for ids Gymnasium registers itself."""
    module, _, name = env_id.rpartition(":")
    return module or next((p for k, p in ENV_PACKAGES.items() if name.startswith(k)), None)


def spec_of(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, importing the package that registers it if needed
    (``MiniGrid-*``, or ``package:EnvId``); an unknown id names the closest registered ones."""
    name = env_id.rpartition(":")[2]
    package = env_package(env_id)
    if package is not None and name not in gym.registry:
        try:
            importlib.import_module(package)
        except ImportError as err:
            raise ConfigError(
                f"{name} is registered by the {package!r} package, which is not installed: "
                f"pip install {package}."
            ) from err
    if name not in gym.registry:
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(
            f"unknown Gymnasium env id {name!r}: {hint}Pass a registered id (python -c "
            "'import gymnasium; gymnasium.pprint_registry()' lists them), or PACKAGE:ID for an id "
            "that a package registers on import."
        )
    return gym.registry[name]


def make_base_env(env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None):
    """``gym.make(env_id, render_mode=..., **env_kwargs)`` after :func:`spec_of`, with a bad
    kwarg reported as a ConfigError.

    An id registered without an episode limit (CliffWalking, Blackjack) gets one of
    :data:`EPISODE_CAP` steps, with a warning: an untrained policy's episode could otherwise run
    forever and evaluation with it. ``env_kwargs={"max_episode_steps": N}`` sets another. An env
    that keeps its own limit in an integer ``max_steps`` (MiniGrid's convention) is left alone.
    """
    spec = spec_of(env_id)
    kwargs = dict(env_kwargs or {})
    try:
        env = gym.make(spec.id, render_mode=render_mode, **kwargs)
    except TypeError as err:
        raise ConfigError(
            f"{spec.id} does not take env kwargs {env_kwargs} ({err}): check --env-kwargs."
        ) from err
    except gym.error.DependencyNotInstalled as err:  # its message names the install command
        raise ConfigError(f"{spec.id} needs a package that is not installed: {err}") from err
    own_limit = isinstance(getattr(env.unwrapped, "max_steps", None), int)
    if spec.max_episode_steps is None and "max_episode_steps" not in kwargs and not own_limit:
        if spec.id not in _CAPPED and multiprocessing.parent_process() is None:
            _CAPPED.add(spec.id)  # once per id, and not again from each subprocess env
            warnings.warn(
                f"{spec.id} registers no episode limit: its episodes are cut at {EPISODE_CAP} "
                "steps. Pass --env-kwargs '{\"max_episode_steps\": N}' for another limit.",
                stacklevel=2,
            )
        env = TimeLimit(env, EPISODE_CAP)
    return env


def state_fn_for(env: gym.Env, state_fn: str | None) -> tuple[StateFn, spaces.Box] | None:
    """The state function named ``state_fn`` and its Box for ``env``; None for no name and an
    observation that is already a flat float32 vector; the flattened observation otherwise.

    Raises:
        ConfigError: An unknown name, or an observation that cannot be flattened and no name.
    """
    if state_fn is not None:
        if state_fn not in STATE_FNS:
            raise ConfigError(
                f"unknown state function {state_fn!r}: use one of {', '.join(STATE_FNS)}, or "
                "leave --state-fn unset to use the env's own (flattened) observation."
            )
        spec = STATE_FNS[state_fn]
        return spec.fn, spec.space(env)
    space = env.observation_space
    if isinstance(space, spaces.Box) and len(space.shape) == 1 and space.dtype == np.float32:
        return None
    if not _flattenable(space):
        raise ConfigError(
            f"the observation space of {env.spec.id if env.spec else env} ({space}) cannot be "
            "flattened into a state vector: pass --state-fn NAME, one of "
            f"{', '.join(STATE_FNS)} (simtoreal/envs/state_fns.py, where new ones are added)."
        )
    flat = spaces.flatten_space(space)
    return FlatObservation(space), spaces.Box(flat.low, flat.high, flat.shape, np.float32)


def _flattenable(space: spaces.Space) -> bool:
    try:
        return bool(space.is_np_flattenable)
    except NotImplementedError:
        return False


class ObservationNoise(gym.ObservationWrapper):
    """Adds Gaussian noise of standard deviation ``std`` (one value, or one per entry) to every
    state, drawn from the env's own seeded generator: a teacher trained on it does not rely on
    a precision that a camera's state estimate lacks (domain randomisation of the state)."""

    def __init__(self, env: gym.Env, std: Sequence[float]) -> None:
        super().__init__(env)
        size = env.observation_space.shape[0]
        if len(std) not in (1, size) or any(not (v >= 0) for v in std):
            raise ConfigError(
                f"obs_noise={tuple(std)}: give one standard deviation >= 0, or one per state "
                f"entry ({size} for {env.spec.id if env.spec else env})."
            )
        self.std = np.broadcast_to(np.asarray(std, np.float32), (size,))

    def observation(self, observation: np.ndarray) -> np.ndarray:
        noise = self.np_random.normal(size=observation.shape).astype(np.float32)
        return (observation + self.std * noise).astype(np.float32)


def make_state_env(
    env_id: str,
    env_kwargs: dict | None = None,
    state_fn: str | None = None,
    frame_stack: int = 1,
    render_mode: str | None = None,
    obs_noise: Sequence[float] = (),
) -> gym.Env:
    """The env a teacher sees: ``env_id``'s observation turned into a float32 state vector
    (:func:`state_fn_for`), with Gaussian noise of std ``obs_noise`` when given
    (:class:`ObservationNoise`), the last ``frame_stack`` vectors concatenated, oldest first.
    Shape of an observation: (frame_stack * state_dim,)."""
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or frame_stack < 1:
        raise ConfigError(f"frame_stack={frame_stack!r}: use 1 (the state alone) or more.")
    env = make_base_env(env_id, env_kwargs, render_mode)
    found = state_fn_for(env, state_fn)
    if found is not None:
        env = StateObservation(env, *found)
    if obs_noise:
        env = ObservationNoise(env, obs_noise)
    if frame_stack > 1:
        env = FlattenObservation(FrameStackObservation(env, frame_stack))
    return env


@dataclass(frozen=True)
class EnvMaker:
    """:func:`make_state_env` with its arguments bound: a picklable env factory (SubprocVecEnv)."""

    env_id: str
    env_kwargs: dict = field(default_factory=dict)
    state_fn: str | None = None
    frame_stack: int = 1
    render_mode: str | None = None
    obs_noise: tuple[float, ...] = ()

    def __call__(self) -> gym.Env:
        return make_state_env(
            self.env_id,
            self.env_kwargs,
            self.state_fn,
            self.frame_stack,
            self.render_mode,
            self.obs_noise,
        )
