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


@pytest.fixture
def interrupt_fit(monkeypatch):
    """``interrupt_fit(call, batch)``: the ``call``-th ``Distiller.fit`` of the test (1-based)
    raises KeyboardInterrupt once its ``batch``-th position was reported (after the checkpoint
    hook ran); ``monkeypatch.undo()`` lifts it."""
    from simtoreal.transfer.distill import Distiller

    def install(call: int, batch: int) -> None:
        real_fit, calls = Distiller.fit, {"n": 0}

        def interrupted_fit(self, *args, **kw):
            calls["n"] += 1
            if calls["n"] == call:
                hook = kw["on_position"]

                def stop(epoch, position):
                    hook(epoch, position)
                    if position == batch:
                        raise KeyboardInterrupt

                kw["on_position"] = stop
            return real_fit(self, *args, **kw)

        monkeypatch.setattr(Distiller, "fit", interrupted_fit)

    return install
