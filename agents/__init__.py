"""Everything that touches Stable-Baselines3 (installed as ``simtoreal.agents``)."""
