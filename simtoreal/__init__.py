"""simtoreal: sim-to-real reinforcement learning on Gymnasium.

Importing the package registers the Gymnasium ids of the grid worlds (``simtoreal/...``).
"""

__version__ = "0.1.0"

from simtoreal.envs.registration import register_envs as _register_envs

_register_envs()
