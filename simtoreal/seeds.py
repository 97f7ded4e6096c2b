"""Every env-seed range in one place, so that training, validation and test never share a world.

An env seeded ``s`` draws its episodes from ``s`` through the counter-based keys of
:mod:`simtoreal.envs.rng`, so two envs share episodes exactly when they share a seed. The
integer line is cut into roles:

- ``TRAIN`` (``[0, 1e6)``): every stream a run trains on. Each *run seed* owns a block of
  ``RUN_BLOCK`` seeds, cut into one sub-block per purpose (teacher envs, adapter data, DAgger
  rounds, fine-tuning, baselines), so runs with different seeds share nothing.
- ``TEST`` (``[1e6, 2e6)``): the episodes and held-out pairs every report quotes.
- ``VALIDATION`` (``[2e6, 3e6)``): what chooses between models and defaults (a teacher's best
  checkpoint, a transfer's validation numbers).
"""

from __future__ import annotations

from simtoreal.errors import ConfigError

TRAIN = range(0, 1_000_000)
TEST = range(1_000_000, 2_000_000)
VALIDATION = range(2_000_000, 3_000_000)

EVAL_SEED = TEST.start
"""First seed of a reported evaluation (episode ``i`` is seeded ``EVAL_SEED + i``)."""
HELD_OUT_PAIRS_SEED = TEST.start + 500_000
"""First seed of the test pairs behind a transfer's latent R^2 and action agreement."""
VAL_SEED = VALIDATION.start
"""First seed of a validation evaluation."""
VAL_PAIRS_SEED = VALIDATION.start + 500_000
"""First seed of the validation pairs behind a transfer's validation latent R^2."""

RUN_BLOCK = 10_000
"""Training seeds owned by one run seed."""
MAX_RUN_SEED = len(TRAIN) // RUN_BLOCK - 1
STREAMS: dict[str, tuple[int, int]] = {
    "teacher": (0, 2_000),
    "adapter": (2_000, 2_000),
    "dagger": (4_000, 4_000),
    "finetune": (8_000, 1_000),
    "baseline": (9_000, 1_000),
}
"""Purpose -> (offset in the run's block, size)."""


def check_run_seed(seed: int) -> None:
    """Refuse a run seed that has no block of training seeds."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_RUN_SEED:
        raise ConfigError(
            f"seed={seed!r}: use an integer in 0..{MAX_RUN_SEED}; each run seed owns its own block "
            f"of {RUN_BLOCK:,} training env seeds, so that runs with different seeds share nothing."
        )


def stream(run_seed: int, purpose: str, n: int, index: int = 0) -> int:
    """First of ``n`` consecutive env seeds for ``purpose`` (the ``index``-th use of it, e.g. a
    DAgger round) of run ``run_seed``. Seeds of other run seeds, purposes or indices never overlap
    with these, and all lie in ``TRAIN``.
    """
    check_run_seed(run_seed)
    if purpose not in STREAMS:
        raise ConfigError(f"unknown seed stream {purpose!r}: use one of {', '.join(STREAMS)}.")
    offset, size = STREAMS[purpose]
    if n < 1 or (index + 1) * n > size:
        raise ConfigError(
            f"{index + 1} x {n} env seeds for {purpose!r} exceed its {size:,} seeds per run: use "
            "fewer parallel envs (or fewer DAgger rounds)."
        )
    return run_seed * RUN_BLOCK + offset + index * n


def _check_layout() -> None:
    spans = sorted(STREAMS.values())
    for (a, n), (b, _) in zip(spans, spans[1:], strict=False):
        assert a + n <= b, "seed streams overlap"
    assert spans[-1][0] + spans[-1][1] <= RUN_BLOCK, "seed streams overflow a run's block"
    assert TRAIN.stop <= TEST.start and TEST.stop <= VALIDATION.start, "seed roles overlap"


_check_layout()
