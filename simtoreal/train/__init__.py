"""Training commands (``python -m simtoreal.train COMMAND``), one module per command.

The teacher API lives in :mod:`simtoreal.train.grid` and is re-exported here, so
``from simtoreal.train import TrainConfig, train`` keeps working.
"""

from simtoreal.train.cli import main
from simtoreal.train.grid import (
    VAL_SEED,
    TrainConfig,
    read_config_file,
    resume,
    train,
)

__all__ = ["VAL_SEED", "TrainConfig", "main", "read_config_file", "resume", "train"]
