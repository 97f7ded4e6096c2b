"""``python -m simtoreal.train COMMAND [flags]`` (see :mod:`simtoreal.train.cli`)."""

from simtoreal.train.cli import main

main()
