"""Seed ranges: roles and per-run streams are disjoint, and runs use them."""

from __future__ import annotations

import itertools

import pytest

from simtoreal import seeds
from simtoreal.agents.evaluate import EVAL_SEED
from simtoreal.errors import ConfigError
from simtoreal.train import TrainConfig
from simtoreal.transfer.config import TransferConfig


def _span(seed: int, purpose: str, n: int, index: int = 0) -> range:
    start = seeds.stream(seed, purpose, n, index)
    return range(start, start + n)


def test_roles_are_disjoint_and_reports_use_the_test_range():
    assert seeds.TRAIN.stop <= seeds.TEST.start and seeds.TEST.stop <= seeds.VALIDATION.start
    assert seeds.TEST.start == EVAL_SEED and seeds.HELD_OUT_PAIRS_SEED in seeds.TEST
    assert TrainConfig().val_seed in seeds.VALIDATION and TrainConfig().eval_seed in seeds.TEST


def test_streams_of_different_run_seeds_purposes_and_rounds_never_overlap():
    spans = [
        _span(seed, purpose, 256, index)
        for seed in (0, 1, 2, seeds.MAX_RUN_SEED)
        for purpose, index in [
            ("teacher", 0),
            ("adapter", 0),
            ("dagger", 0),
            ("dagger", 14),
            ("finetune", 0),
            ("baseline", 0),
        ]  # fmt: skip
    ]
    for a, b in itertools.combinations(spans, 2):
        assert not set(a) & set(b)
    assert all(s.start >= seeds.TRAIN.start and s.stop <= seeds.TRAIN.stop for s in spans)


def test_ten_dagger_rounds_stay_inside_training_seeds():
    cfg = TransferConfig(dagger_rounds=10, num_envs=256)
    last = _span(cfg.seed, "dagger", cfg.num_envs, cfg.dagger_rounds - 1)
    assert last.stop <= seeds.TRAIN.stop and last.stop <= seeds.RUN_BLOCK


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransferConfig(seed=seeds.MAX_RUN_SEED + 1),
        lambda: TransferConfig(seed=-1),
        lambda: TransferConfig(num_envs=4_096),
        lambda: TransferConfig(dagger_rounds=20, num_envs=256),
        lambda: TrainConfig(seed=10_000),
        lambda: TrainConfig(n_envs=4_096),
    ],
)
def test_seeds_and_env_counts_outside_a_runs_block_are_refused(make):
    with pytest.raises(ConfigError, match="seed|env seeds"):
        make()
