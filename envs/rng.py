"""Counter-based random numbers, vectorised over a batch of environments.

Every random draw in the world and its renderer is a hash of ``(key, counter, stream, index)``
(splitmix64's finaliser). Each environment owns a 64-bit key derived from its seed, so env ``i``
of a batch seeded with ``s`` draws exactly what a single env seeded with ``s + i`` draws, and a
whole batch is served by a handful of numpy operations with no per-env generator objects.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def mix64(x: np.ndarray) -> np.ndarray:
    """Splitmix64 finaliser: a bijective, well-mixed hash of uint64 values (wraps on overflow)."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def seed_to_key(seed: int | np.ndarray) -> np.ndarray:
    """Turn integer seeds into per-env keys. Shape: same as ``seed``."""
    return mix64(np.asarray(seed, dtype=np.int64).astype(np.uint64) + _GOLDEN)


def random_bits(key: np.ndarray, counter: np.ndarray, stream: int, n: int) -> np.ndarray:
    """``n`` independent uint64 draws per env. Shape: ``(len(key), n)``."""
    base = mix64(key ^ mix64(np.asarray(counter, dtype=np.uint64) * _GOLDEN + np.uint64(stream)))
    return mix64(base[:, None] + np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)


def uniform(key: np.ndarray, counter: np.ndarray, stream: int, n: int) -> np.ndarray:
    """Floats in ``[0, 1)``. Shape: ``(len(key), n)``."""
    return (random_bits(key, counter, stream, n) >> _S11).astype(np.float64) * (2.0**-53)


def integers(key: np.ndarray, counter: np.ndarray, stream: int, n: int, high) -> np.ndarray:
    """Integers in ``[0, high)``; ``high`` may be an array broadcastable to ``(len(key), n)``."""
    return (random_bits(key, counter, stream, n) % np.asarray(high, dtype=np.uint64)).astype(
        np.int64
    )
