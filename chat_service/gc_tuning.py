"""Garbage-collector settings for a long-running server process, and its
pause during a burst of new connections (`BurstPause`)."""

from __future__ import annotations

import gc

import trio

__all__ = ["BurstPause", "tune_gc"]

# Container allocations (net of frees) between young-generation collections;
# CPython's default is 700. Almost everything a message allocates on its way
# to 500 clients is freed by reference counting within milliseconds, but at
# 700 it lives long enough to be promoted, and the promotions trigger a full
# collection about once a second, which walks every task and coroutine of
# every connection: 110-170 ms pauses with 500 clients, the whole p99 of the
# bench's 500-client room at 5 msg/s (issue 7).  At 50,000 those objects die young.
GEN0_THRESHOLD = 50_000

# A burst: at least this many connections arrived within one check interval
# (400 per second), as when a deploy makes a whole room reconnect at once.
BURST_ARRIVALS = 100
BURST_CHECK_SECONDS = 0.25
# Intervals without a burst before collection resumes: its first pass walks
# everything the burst allocated, best done once the burst's handshakes
# are over.
QUIET_INTERVALS = 4
# The longest pause: a burst that goes on gets one interval of collections
# after each, so that the cyclic garbage it leaves stays bounded.
MAX_PAUSE_SECONDS = 10.0


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


class BurstPause:
    """Automatic collection paused while connections arrive in a burst.

    What a new connection allocates lives as long as it does, and the
    collector walks all of it in each generation it ages through, finding
    nothing to free (a connection leaves no reference cycles): a fifth of
    the CPU of 5,000 clients reconnecting at once. `arrived` counts each new
    connection and pauses collection (`gc.disable`) once `burst` have
    arrived within one `interval`; `run` resumes it after `quiet`
    intervals in a row with fewer, and after `max_pause` seconds paused, for
    one interval at least.
    """

    def __init__(
        self,
        *,
        burst: int = BURST_ARRIVALS,
        interval: float = BURST_CHECK_SECONDS,
        quiet: int = QUIET_INTERVALS,
        max_pause: float = MAX_PAUSE_SECONDS,
    ) -> None:
        self._burst = burst
        self._interval = interval
        self._quiet = quiet
        self._max_pause = max_pause
        self._quiet_intervals = 0
        self._arrivals = 0  # in this interval
        self._paused_at: float | None = None
        self._resting = False  # resumed after max_pause: no pause this interval

    def arrived(self) -> None:
        """Count one new connection; the burst-th of an interval pauses
        collection (at once: a storm's first objects are walked too)."""
        self._arrivals += 1
        if self._arrivals >= self._burst and self._paused_at is None and not self._resting:
            gc.disable()
            self._paused_at = trio.current_time()

    @property
    def paused(self) -> bool:
        """Whether this has paused automatic collection."""
        return self._paused_at is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """End each interval until cancelled, resuming collection as the
        class describes. Cancellation resumes it if this paused it."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self._interval)
                arrivals, self._arrivals = self._arrivals, 0
                self._resting = False
                self._quiet_intervals = self._quiet_intervals + 1 if arrivals < self._burst else 0
                if self._quiet_intervals >= self._quiet:
                    self._resume()
                elif self._paused_at is not None:
                    if trio.current_time() - self._paused_at >= self._max_pause:
                        self._resume()
                        self._resting = True
        finally:
            self._resume()

    def _resume(self) -> None:
        if self._paused_at is not None:
            self._paused_at = None
            gc.enable()
