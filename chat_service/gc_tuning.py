"""Garbage-collector settings for a long-running server process."""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

# Container allocations (net of frees) between young-generation collections;
# CPython's default is 700. Almost everything a message allocates on its way
# to 500 clients is freed by reference counting within milliseconds, but at
# 700 it lives long enough to be promoted, and the promotions trigger a full
# collection about once a second, which walks every task and coroutine of
# every connection: 110-170 ms pauses with 500 clients, the whole p99 of the
# bench's 500-client room at 5 msg/s (issue 7).  At 50,000 those objects die young.
GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze what start-up allocated and collect young objects less often.

    Call once, after imports and set-up, before serving. `gc.freeze()` moves
    every object alive now (modules, the app, the config) to a permanent
    generation that collections no longer walk.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
