"""simtoreal: sim-to-real reinforcement learning on Gymnasium.

Importing the package registers the Gymnasium ids of the grid worlds (``simtoreal/...``) and,
unless the environment says otherwise, turns on huge pages for torch's CPU tensors (a third off
each adapter-training step on CPU; :mod:`simtoreal.runtime`).
"""

__version__ = "0.1.0"

from simtoreal.envs.registration import register_envs as _register_envs
from simtoreal.runtime import prefer_huge_pages as _prefer_huge_pages

_prefer_huge_pages()
_register_envs()
