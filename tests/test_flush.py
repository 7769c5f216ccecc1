"""FlushTicker in virtual time: waiters are released together, idle costs nothing."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from chat_service.realtime.flush import FlushTicker


async def test_waiters_are_released_together_within_one_window(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    ticker = FlushTicker(0.05)
    await nursery.start(ticker.run)
    released: list[float] = []

    async def waiter(delay: float) -> None:
        await trio.sleep(delay)
        await ticker.wait_for_tick()
        released.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as waiters:
        for delay in (0.0, 0.01, 0.04):
            waiters.start_soon(waiter, delay)
    assert released == [pytest.approx(start + 0.05)] * 3


async def test_no_ticks_while_nobody_waits(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    ticker = FlushTicker(0.05)
    await nursery.start(ticker.run)
    # Were it ticking all along (every 0.05 s), the next tick would come 0.04 s
    # after this sleep, not a whole window after the wait starts.
    await trio.sleep(10.01)
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    await ticker.wait_for_tick()
    assert trio.current_time() == pytest.approx(start + 0.05)


async def test_zero_window_never_waits(autojump_clock: trio.testing.MockClock) -> None:
    ticker = FlushTicker(0)
    start = trio.current_time()
    await ticker.wait_for_tick()
    assert trio.current_time() == start
