"""``python -m simtoreal.bench SUITE``: see :mod:`simtoreal.bench.cli`."""

from simtoreal.bench.cli import main

if __name__ == "__main__":  # spawned trial processes import this module too: run nothing then
    main()
