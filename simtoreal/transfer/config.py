"""Configuration of a transfer run: one dataclass, a docstring per field, saved as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from simtoreal.agents.adapter import AdapterConfig, check_feature_map
from simtoreal.envs.paired import check_crop, image_hw
from simtoreal.errors import ConfigError
from simtoreal.seeds import check_run_seed, stream
from simtoreal.transfer.augment import check_augmentations

LOSSES = ("latent", "action", "both")
#: "auto" (the teacher kind's default) and every action loss of some kind (transfer/heads.py).
ACTION_LOSSES = ("auto", "kl", "mse", "softmax")
BASELINE_EXTRACTORS = ("adapter", "nature_cnn")
_POSITIVE_INTS = (
    "frames", "num_envs", "frame_stack", "epochs", "dagger_epochs", "batch_size",
    "eval_episodes", "baseline_max_frames", "torch_threads", "baseline_envs",
)  # fmt: skip


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r}: use an integer >= {low}.")


def _check_positive(name: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}={value!r}: use a finite number > 0.")


@dataclass
class TransferConfig:
    """Carry a trained teacher from grid coordinates to camera frames with a CNN state adapter."""

    teacher: Path | None = None
    """Teacher run directory (from `python -m simtoreal.train grid`, e.g. runs/teacher-<time>).
    None trains the default teacher first, into <run-dir>/teacher."""
    run_dir: Path | None = None
    """Where to write this run (default runs/transfer-<timestamp>)."""
    overwrite: bool = False
    """Replace an existing transfer run directory at --run-dir (a teacher inside it is kept)."""
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
    """Parallel envs for data collection. Third-party envs are shared evenly among up to one
    process per usable core (6 envs on 4 cores: 3 processes of 2; 5 on 2: this process alone),
    so a multiple of the core count uses every core."""
    frame_stack: int = 1
    """Frames stacked in the adapter's input (the grid world is fully visible in one frame)."""
    frame_size: tuple[int, int] = (64, 64)
    """Height and width of the adapter's frames (third-party envs; the grid world renders
    64x64). Wide frames keep thin horizontal detail, such as CartPole's pole angle."""
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    """The camera's window on a third-party env's rendered frame, as fractions top left bottom
    right of its height and width, kept before resizing to --frame-size (0 0 1 1: all of it)."""
    fresh_appearance: bool = True
    """Render every epoch's frames anew from the stored world states with fresh randomisation
    draws (palette variant, camera, distractors, noise), so each pass sees new appearances of the
    same states. False trains every epoch on the frames seen at collection."""

    # ---- adapter training
    loss: str = "both"
    """'latent' (MSE to the teacher's latent), 'action' (KL to the teacher's action distribution
    through the frozen head) or 'both' (weighted sum)."""
    latent_weight: float = 1.0
    """Weight of the latent loss in 'both'."""
    action_weight: float = 1.0
    """Weight of the action loss in 'both'."""
    action_loss: str = "auto"
    """How the action loss compares the student's head output with the teacher's: 'auto' is the
    teacher kind's default (KL for PPO/A2C, MSE of the greedy actions for SAC and TD3, the KL
    between softmaxes of the Q-values for DQN); 'kl' for SAC is the KL between the pre-tanh
    Gaussians, 'mse' for DQN the MSE of the Q-values. docs/transfer.md has the measurements."""
    epochs: int = 2
    """Passes over the offline data."""
    dagger_epochs: int = 1
    """Passes over the aggregated data after each DAgger round."""
    batch_size: int = 256
    """Minibatch size of adapter training."""
    augment: tuple[str, ...] = ("cutout",)
    """Frame augmentations of every training batch, any of: shift (DrQ), grayscale, hue,
    cutout (occluders; the default, chosen on the validation world: docs/transfer.md), lighting
    (a linear lighting gradient), saturation (partial desaturation), blur (a low-pass of random
    strength), impulse (black and white pixels). Each covers a family of the robustness suite,
    which the robustness score then leaves out."""
    lr: float = 2e-3
    """Peak Adam learning rate of the adapter (linear warm-up, then linear decay to 0)."""
    max_train_seconds: float | None = None
    """Stop adapter training after this wall time (None: run all epochs)."""
    checkpoint_seconds: float = 20.0
    """Wall time between training checkpoints (checkpoint.pt) that --resume continues from."""
    target: str = "state"
    """What the adapter CNN predicts: 'state' (the grid world's state, agent and goal positions
    and obstacle map, read by a frozen copy of the teacher's encoder into its latent; trained on
    the state too) or 'latent' (the teacher's latent directly, the reference's design).
    docs/transfer.md has the comparison."""
    channels: tuple[int, ...] = (32, 32, 32)
    """Adapter conv channels; with the latent target and spatial_softmax the last layer's
    channels are keypoints (the latent target's measured default was 16 16 16 with kernels
    4 3 1)."""
    kernels: tuple[int, ...] = (4, 3, 3)
    """Adapter conv kernel sizes."""
    strides: tuple[int, ...] = (4, 1, 1)
    """Adapter conv strides."""
    pool: str = "spatial_softmax"
    """How the adapter's last feature map becomes a vector, for the 'latent' target and the
    state estimator of third-party envs: 'spatial_softmax' (keypoints: see docs/transfer.md) or
    'flatten' (the reference's RealWorldStateAdapter; MiniGrid's preset, whose state is a grid
    of cells). The grid world's state estimator has its own heads and ignores it."""

    # ---- evaluation
    eval_episodes: int = 500
    """Episodes per evaluation (held-out seeds)."""
    severities: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Severities of the real domain to sweep."""
    severity: float = 0.5
    """Default severity of the real domain, the headline number."""
    robustness_episodes: int = 200
    """Episodes per shift of the robustness check: every shift of simtoreal.envs.shifts on top
    of real@severity (0: skip it)."""
    robustness_severity: int = 3
    """Shift severity of the robustness check, 1 (mild) to 5."""

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

    baseline_wall_multiple: float = 1.0
    """Wall budget of the baseline as a multiple of the transfer's wall time (teacher + adapter)."""
    baseline_extractor: str = "adapter"
    """Baseline features extractor: 'adapter' (the student's architecture) or 'nature_cnn'
    (SB3's NatureCNN)."""
    baseline_lr: float = 2.5e-3
    """Learning rate of the baseline's PPO (chosen on validation seeds by
    benchmarks/baseline_sweep.py: benchmarks/results/baseline_sweep.md)."""
    baseline_envs: int = 64
    """Parallel envs of the baseline's PPO (chosen by the same sweep)."""
    min_teacher_success: float = 0.8
    """Teacher success below which the summary and report warn that 'recovered' means little."""
    gif_episodes: int = 2
    """Episodes of the student acting in real at --severity, rendered into student.gif (0: none)."""

    device: str = "cpu"
    """Torch device: 'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when present, else cpu)."""
    torch_threads: int = 2
    """torch.set_num_threads for the run."""

    def __post_init__(self) -> None:
        for name in ("teacher", "run_dir"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        for name in _POSITIVE_INTS:
            _check_int(name, getattr(self, name), 1)
        check_run_seed(self.seed)
        for name in ("dagger_rounds", "finetune_steps", "gif_episodes", "robustness_episodes"):
            _check_int(name, getattr(self, name), 0)
        for name in ("lr", "checkpoint_seconds", "baseline_wall_multiple", "baseline_lr"):
            _check_positive(name, getattr(self, name))
        if self.max_train_seconds is not None:
            _check_positive("max_train_seconds", self.max_train_seconds)
        for name in ("latent_weight", "action_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}={getattr(self, name)}: use a weight >= 0.")
        if self.baseline_extractor not in BASELINE_EXTRACTORS:
            raise ConfigError(
                f"baseline_extractor={self.baseline_extractor!r}: use one of "
                f"{', '.join(BASELINE_EXTRACTORS)}."
            )
        check_augmentations(self.augment)
        self.frame_size = image_hw(self.frame_size, "frame_size")
        self.crop = check_crop(self.crop)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r}: use one of {', '.join(LOSSES)}.")
        if self.action_loss not in ACTION_LOSSES:
            raise ConfigError(
                f"action_loss={self.action_loss!r}: use one of {', '.join(ACTION_LOSSES)}."
            )
        if self.frames < self.batch_size:
            raise ConfigError(
                f"frames={self.frames} is fewer than one batch ({self.batch_size}): give a larger "
                "frame budget or a smaller --batch-size."
            )
        if not 0.0 <= self.dagger_share < 1.0:
            raise ConfigError(f"dagger_share={self.dagger_share}: use a value in [0, 1).")
        if self.dagger_share > 0 and self.dagger_rounds < 1:
            raise ConfigError("dagger_share > 0 needs dagger_rounds >= 1 (or set dagger_share 0).")
        stream(self.seed, "adapter", self.num_envs)  # refuses more envs than a run's seeds
        if self.dagger_share > 0:
            stream(self.seed, "dagger", self.num_envs, self.dagger_rounds - 1)
        if not 0.0 <= self.dagger_beta <= 1.0:
            raise ConfigError(f"dagger_beta={self.dagger_beta}: use a probability in [0, 1].")
        if not 0.0 <= self.min_teacher_success <= 1.0:
            raise ConfigError(
                f"min_teacher_success={self.min_teacher_success}: use a rate in [0, 1]."
            )
        if self.head_lr_scale < 0:
            raise ConfigError(
                f"head_lr_scale={self.head_lr_scale}: use 0 (frozen) or a positive scale."
            )
        from simtoreal.envs.render import check_domain

        if self.robustness_severity not in range(1, 6):
            raise ConfigError(
                f"robustness_severity={self.robustness_severity!r}: use an integer from 1 to 5."
            )
        if not self.severities:
            raise ConfigError("severities is empty: give at least one, e.g. --severities 0.5.")
        for s in (*self.severities, self.severity):
            check_domain("real", s)
        check_domain(self.train_domain, 0.5)
        check_domain(self.finetune_domain, 0.5)
        self.adapter_config(latent_dim=1)  # refuses a bad architecture before anything runs

    def adapter_config(
        self,
        latent_dim: int,
        image_size: int = 64,
        world: dict | None = None,
        target: str | None = None,
    ) -> AdapterConfig:
        """The adapter this config describes, for a teacher latent of ``latent_dim`` in the
        grid world of ``world`` kwargs (size, n_obstacles; default the 8x8 empty room).
        ``target`` overrides the config's (the baseline always uses a latent adapter)."""
        world = world or {}
        arch = AdapterConfig(
            target=target or self.target,
            grid_size=int(world.get("size", 8)),
            obstacle_map=bool(world.get("n_obstacles", 0)),
            latent_dim=latent_dim,
            channels=tuple(self.channels),
            kernels=tuple(self.kernels),
            strides=tuple(self.strides),
            image_shape=(image_size, image_size, 3 * self.frame_stack),
            pool=self.pool,
        )
        check_feature_map(arch)
        return arch

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> TransferConfig:
        """Rebuild from a saved config.json (its ``kind`` key is dropped)."""
        data = {k: v for k, v in data.items() if k != "kind"}
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"{source}: unknown transfer config keys {unknown}.")
        for k, v in data.items():
            if isinstance(v, list):
                data[k] = tuple(v)
        return cls(**data)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("teacher", "run_dir"):
            d[k] = None if d[k] is None else str(d[k])
        return d
