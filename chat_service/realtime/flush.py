"""Synchronised flushing of busy batched connections (adaptive coalescing)."""

from __future__ import annotations

import trio

__all__ = ["FlushTicker"]


class FlushTicker:
    """Releases every busy batched connection at the same moment.

    A batched (`batch=1`) connection that still has frames queued after a
    send is busy. Rather than sending again at once, it waits for the next
    tick, at most `window` seconds away, which releases all such waiters
    together. Between ticks no sender is runnable, so the inbound path
    (Hypercorn's reader, Quart's channel, our handler) runs freely and every
    queue fills; each flush then carries many frames in one WebSocket frame.
    An idle connection never waits: its first frame goes out at once. The
    ticker sleeps while nobody waits, so an idle server has no timer.
    """

    def __init__(self, window: float) -> None:
        self._window = window
        self._tick = trio.Event()
        self._someone_waiting = trio.Event()

    async def wait_for_tick(self) -> None:
        """Wait for the next tick (at once if the window is 0).

        Cancellation just stops the wait; nothing is lost.
        """
        if self._window <= 0:
            await trio.lowlevel.checkpoint()
            return
        tick = self._tick
        self._someone_waiting.set()
        await tick.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick every `window` seconds while anyone waits, until cancelled."""
        task_status.started()
        while True:
            await self._someone_waiting.wait()
            await trio.sleep(self._window)
            self._someone_waiting = trio.Event()
            tick, self._tick = self._tick, trio.Event()
            tick.set()
