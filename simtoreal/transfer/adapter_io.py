"""Adapters on disk: weights as safetensors plus the architecture as JSON. Loading never unpickles."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from simtoreal.agents.adapter import AdapterConfig, CnnStateAdapter, image_space
from simtoreal.agents.estimator import GridStateEstimator, build_estimator
from simtoreal.errors import CheckpointError, ConfigError, RunDirError
from simtoreal.runs import atomic_write_bytes, atomic_write_json

WEIGHTS, CONFIG = "adapter.safetensors", "adapter.json"


def build_adapter(config: AdapterConfig) -> CnnStateAdapter | GridStateEstimator:
    """The trainable CNN of a config: a state estimator or a latent adapter (``config.target``)."""
    if config.target in ("state", "vector"):
        return build_estimator(config)
    return CnnStateAdapter(
        image_space(config),
        config.latent_dim,
        config.channels,
        config.kernels,
        config.strides,
        config.pool,
    )


def save_adapter(directory: str | Path, adapter: CnnStateAdapter) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` into ``directory`` (atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, save_safetensors(state))
    atomic_write_json(directory / CONFIG, adapter.config.to_dict())
    return directory


def load_adapter(directory: str | Path) -> CnnStateAdapter:
    """Rebuild an adapter from its JSON config and load its safetensors weights."""
    directory = Path(directory)
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise RunDirError(
                f"{directory / name} is missing: pass the adapter directory a transfer run wrote "
                "(<run-dir>/adapter)."
            )
    try:
        config = AdapterConfig.from_dict(json.loads((directory / CONFIG).read_text()))
    except (json.JSONDecodeError, TypeError, ConfigError) as err:
        raise CheckpointError(f"{directory / CONFIG} is not a valid adapter config: {err}") from err
    adapter = build_adapter(config)
    try:
        state = load_safetensors((directory / WEIGHTS).read_bytes())
        adapter.load_state_dict(state)
    except (SafetensorError, RuntimeError) as err:
        raise CheckpointError(
            f"cannot load {directory / WEIGHTS} into an adapter of config {config}: {err}. The "
            "file is corrupt or belongs to another architecture."
        ) from err
    return adapter.eval()
