"""Process-wide settings made when :mod:`simtoreal` is imported, before torch allocates.

:func:`prefer_huge_pages` asks PyTorch's CPU allocator to back large tensors with transparent
huge pages. Adapter training allocates a fresh batch of frames (47 MB for 256 CartPole samples
of 3 stacked 40x128 frames) at every augmentation and layer, and without huge pages each one is
mapped and zeroed 4 KiB page by page: on the 2-core development machine a CartPole training
step took 258 ms without and 162 ms with them, a Pendulum one 155 and 85 ms (medians of three
processes each, ``benchmarks/results/adapter_step.md``; docs/design.md, "CPU speed of adapter
training").
"""

from __future__ import annotations

import os

#: PyTorch's CPU allocator reads this once, at its first allocation (c10's ``alloc_cpu``):
#: "1" aligns allocations of 2 MiB and more to huge pages and marks them ``MADV_HUGEPAGE``.
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_pages() -> None:
    """Turn on huge pages for torch's CPU tensors unless the environment says otherwise.

    Takes effect only when torch has not allocated a CPU tensor yet in this process (importing
    torch does not; every ``python -m simtoreal...`` command, benchmark script and test module
    imports simtoreal before its work starts); a value already in the environment, ``0``
    included, is left alone. Where the kernel's transparent huge pages are
    off (``/sys/kernel/mm/transparent_hugepage/enabled`` is ``never``) it changes nothing.
    """
    os.environ.setdefault(HUGE_PAGES_VARIABLE, "1")
