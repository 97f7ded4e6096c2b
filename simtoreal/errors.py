"""Typed exceptions. Every message says what to do about the problem, not only what it is."""

from __future__ import annotations


class SimToRealError(Exception):
    """Base class for every error simtoreal raises on purpose."""


class ConfigError(SimToRealError, ValueError):
    """A config value, CLI flag or env kwarg is out of range or unknown."""


class ActionError(SimToRealError, ValueError):
    """Actions passed to ``step`` have the wrong shape, dtype or range."""


class RunDirError(SimToRealError):
    """A run directory is missing, already exists, or does not hold what was expected."""


class CheckpointError(SimToRealError):
    """A checkpoint or adapter file cannot be read (corrupt, truncated, or of another kind)."""


class IncompatibleError(SimToRealError, ValueError):
    """Two pieces do not fit: a teacher from another env, a latent size or image shape mismatch."""


class DataError(SimToRealError, ValueError):
    """A dataset is empty or malformed."""
