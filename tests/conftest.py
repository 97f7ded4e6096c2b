"""Imports simtoreal before any test module can allocate a tensor, so the whole suite runs with
the CPU allocator settings a user's command gets (:mod:`simtoreal.runtime`)."""

import simtoreal  # noqa: F401
