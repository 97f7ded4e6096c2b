"""Configuration of a transfer run: one dataclass, a docstring per field, saved as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from simtoreal.errors import ConfigError

LOSSES = ("latent", "action", "both")


@dataclass
class TransferConfig:
    """Carry a trained teacher from grid coordinates to camera frames with a CNN state adapter."""

    teacher: Path | None = None
    """Teacher run directory (from `python -m simtoreal.train grid`). None trains the default
    teacher first, into <run-dir>/teacher."""
    run_dir: Path | None = None
    """Where to write this run (default runs/transfer-<timestamp>)."""
    overwrite: bool = False
    """Replace an existing transfer run directory at --run-dir."""
    seed: int = 0
    """Seed of data collection and adapter initialisation."""

    # ---- data
    frames: int = 100_000
    """Budget of rendered training frames, offline and DAgger together."""
    dagger_share: float = 0.4
    """Share of the frame budget collected on-policy (DAgger); 0 is offline data only."""
    dagger_rounds: int = 1
    """DAgger rounds; each retrains on the aggregated data."""
    dagger_beta: float = 0.5
    """Probability the teacher's action is executed in the first DAgger round (halves per round)."""
    train_domain: str = "randomized"
    """Visual domain the adapter trains on. The 'real' domain is held out unless named here."""
    num_envs: int = 256
    """Parallel envs for data collection."""
    frame_stack: int = 1
    """Frames stacked in the adapter's input (the grid world is fully visible in one frame)."""

    # ---- adapter training
    loss: str = "both"
    """'latent' (MSE to the teacher's latent), 'action' (KL to the teacher's action distribution
    through the frozen head) or 'both' (weighted sum)."""
    latent_weight: float = 1.0
    """Weight of the latent loss in 'both'."""
    action_weight: float = 1.0
    """Weight of the action loss in 'both'."""
    epochs: int = 2
    """Passes over the offline data."""
    dagger_epochs: int = 1
    """Passes over the aggregated data after each DAgger round."""
    batch_size: int = 256
    """Minibatch size of adapter training."""
    lr: float = 2e-3
    """Peak Adam learning rate of the adapter (linear warm-up, then linear decay to 0)."""
    max_train_seconds: float | None = None
    """Stop adapter training after this wall time (None: run all epochs)."""
    channels: tuple[int, ...] = (16, 16, 16)
    """Adapter conv channels; the last layer's channels are keypoints with spatial_softmax."""
    kernels: tuple[int, ...] = (4, 3, 1)
    """Adapter conv kernel sizes."""
    strides: tuple[int, ...] = (4, 1, 1)
    """Adapter conv strides."""
    pool: str = "spatial_softmax"
    """Adapter pooling: 'spatial_softmax' (keypoints, the default: see docs/transfer.md) or
    'flatten' (the reference's RealWorldStateAdapter)."""

    # ---- evaluation
    eval_episodes: int = 500
    """Episodes per evaluation (held-out seeds)."""
    severities: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Severities of the real domain to sweep."""
    severity: float = 0.5
    """Default severity of the real domain, the headline number."""

    # ---- optional stages
    finetune_steps: int = 0
    """RL fine-tuning steps of the student in the image env after distillation (0: off)."""
    finetune_domain: str = "randomized"
    """Domain of fine-tuning."""
    head_lr_scale: float = 0.0
    """Learning-rate scale of the head while fine-tuning (0: frozen)."""
    baseline: bool = False
    """Also train PPO from pixels in the real domain with the same adapter architecture, given the
    same frames and the same wall time as the transfer, and report it beside."""
    baseline_max_frames: int = 2_000_000
    """Frame budget of the wall-time-matched baseline."""

    device: str = "cpu"
    """Torch device ('cpu', 'cuda', 'auto')."""
    torch_threads: int = 2
    """torch.set_num_threads for the run."""

    extra: dict[str, float] = field(default_factory=dict)
    """Free-form notes stored with the config."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r}: use one of {', '.join(LOSSES)}.")
        if self.frames < self.batch_size:
            raise ConfigError(
                f"frames={self.frames} is fewer than one batch ({self.batch_size}): give a larger "
                "frame budget or a smaller --batch-size."
            )
        if not 0.0 <= self.dagger_share < 1.0:
            raise ConfigError(f"dagger_share={self.dagger_share}: use a value in [0, 1).")
        if self.dagger_share > 0 and self.dagger_rounds < 1:
            raise ConfigError("dagger_share > 0 needs dagger_rounds >= 1 (or set dagger_share 0).")
        if self.head_lr_scale < 0:
            raise ConfigError(
                f"head_lr_scale={self.head_lr_scale}: use 0 (frozen) or a positive scale."
            )
        from simtoreal.envs.render import check_domain

        for s in (*self.severities, self.severity):
            check_domain("real", s)
        check_domain(self.train_domain, 0.5)
        check_domain(self.finetune_domain, 0.5)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("teacher", "run_dir"):
            d[k] = None if d[k] is None else str(d[k])
        return d
