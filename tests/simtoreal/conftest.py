"""Fixtures shared by the transfer tests."""

from __future__ import annotations

import pytest

from simtoreal.train import TrainConfig, train


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """A teacher trained for a few seconds on the default world (success well above random)."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    train(
        TrainConfig(
            run_dir=run_dir,
            total_steps=40_000,
            eval_every=20_000,
            val_episodes=200,
            eval_episodes=200,
            checkpoint_every=40_000,
            gif_episodes=0,
            progress_bar=False,
        )
    )
    return run_dir
