"""Torch devices named on the command line: checked before a run writes anything."""

from __future__ import annotations

import torch

from simtoreal.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` ('cpu', 'cuda', 'cuda:N' or 'auto'), refusing one that this
    machine does not have with a message that names the choices that work."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r}: use cpu, cuda, cuda:N or auto.") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name!r}, but no CUDA device is present on this machine: pass "
                "--device cpu, or --device auto to use a GPU only when there is one."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={name!r}, but this machine has {torch.cuda.device_count()} CUDA "
                "device(s): pick an index below that, or --device cuda."
            )
    elif device.type != "cpu":
        raise ConfigError(f"device={name!r}: use cpu, cuda, cuda:N or auto.")
    return device
