"""tune_gc(): start-up objects frozen, young collections rarer; BurstPause:
no automatic collection while connections arrive in a burst, in virtual time."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from chat_service.gc_tuning import GEN0_THRESHOLD, BurstPause, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_startup_objects_and_raises_gen0_threshold() -> None:
    before = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GEN0_THRESHOLD, before[1], before[2])


@pytest.fixture
def gc_enabled() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.enable()


async def _started(nursery: trio.Nursery, pause: BurstPause) -> BurstPause:
    """`pause`, watching its arrivals in `nursery`."""
    await nursery.start(pause.run)
    return pause


async def _arrive(pause: BurstPause, count: int, over: float) -> None:
    """`count` connections arriving evenly over `over` seconds."""
    for _ in range(count):
        pause.arrived()
        await trio.sleep(over / count)


@pytest.mark.usefixtures("gc_enabled")
async def test_a_burst_of_arrivals_pauses_collection_until_it_ends(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    pause = await _started(nursery, BurstPause(burst=100, interval=0.25, max_pause=10))
    await _arrive(pause, 50, 1.0)  # 12.5 per interval: no burst
    assert gc.isenabled()
    assert not pause.paused
    await _arrive(pause, 2000, 2.0)  # 250 per interval
    assert not gc.isenabled()
    assert pause.paused
    await trio.sleep(0.5)  # the burst's last handshakes: still paused
    assert not gc.isenabled()
    await trio.sleep(0.75)  # four quiet intervals in a row end it
    assert gc.isenabled()
    assert not pause.paused


@pytest.mark.usefixtures("gc_enabled")
async def test_a_long_burst_gets_collections_between_pauses(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    pause = await _started(nursery, BurstPause(burst=10, interval=0.25, max_pause=2))
    enabled_at: list[float] = []

    async def watch() -> None:
        # Between the pause's interval ends (which the order of tasks woken
        # at one moment would make ambiguous).
        await trio.sleep(0.125)
        while True:
            if gc.isenabled():
                enabled_at.append(trio.current_time() - start)
            await trio.sleep(0.25)

    start = trio.current_time()
    async with trio.open_nursery() as watching:
        watching.start_soon(watch)
        await _arrive(pause, 800, 8.0)  # 25 per interval, for 8 s
        watching.cancel_scope.cancel()
    # Paused from the 10th arrival on; after each 2 s paused, collections
    # run until the 10th arrival of the next interval: one sample each.
    assert enabled_at == pytest.approx([2.375, 4.875, 7.375])


async def test_cancelling_the_watch_resumes_collection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.move_on_after(1.0):
        async with trio.open_nursery() as nursery:
            pause = await _started(nursery, BurstPause(burst=10, interval=0.25))
            await _arrive(pause, 100, 0.5)
            assert not gc.isenabled()
            await trio.sleep_forever()
    assert gc.isenabled()
    assert not pause.paused


@pytest.mark.usefixtures("gc_enabled")
async def test_the_burst_th_arrival_pauses_at_once(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # Only a quiet interval ends it here: max_pause is far off.
    pause = await _started(nursery, BurstPause(burst=100, interval=10, quiet=1, max_pause=100))
    for _ in range(99):
        pause.arrived()
    assert gc.isenabled()
    pause.arrived()
    assert not gc.isenabled()
    await trio.sleep(25)  # past the end of an interval without a burst (10 to 20)
    assert gc.isenabled()
