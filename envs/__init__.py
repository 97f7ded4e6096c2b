"""The grid worlds and their two views (installed as ``simtoreal.envs``)."""
