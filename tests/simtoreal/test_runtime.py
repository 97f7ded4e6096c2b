"""simtoreal.runtime: the huge-page default and the user's say over it."""

from __future__ import annotations

import os
import subprocess
import sys

from simtoreal.runtime import HUGE_PAGES_VARIABLE


def _value_after_import(env: dict[str, str]) -> str:
    code = f"import os, simtoreal; print(os.environ.get({HUGE_PAGES_VARIABLE!r}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_simtoreal_turns_on_huge_pages_unless_the_user_set_them():
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_VARIABLE}
    assert _value_after_import(env) == "1"
    assert _value_after_import({**env, HUGE_PAGES_VARIABLE: "0"}) == "0"


def test_importing_simtoreal_does_not_import_torch():
    # The allocator reads the setting at torch's first allocation, so simtoreal's own import
    # must not allocate (nor import torch, which would invite it).
    code = "import sys, simtoreal; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
