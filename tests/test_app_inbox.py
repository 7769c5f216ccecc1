"""AppInbox, the app's inbound events: order, the bound, close, cancellation.

Served WebSockets take every event through it (tests/test_chat.py and the
rest); these pin down what it promises on its own, in virtual time.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from chat_service.app_inbox import AppInbox


async def test_events_come_out_in_the_order_put() -> None:
    inbox = AppInbox(3)
    for event in ("a", "b", "c"):
        await inbox.put(event)
    assert [await inbox.receive() for _ in range(3)] == ["a", "b", "c"]


async def test_a_put_waits_while_limit_events_wait(nursery: trio.Nursery) -> None:
    inbox = AppInbox(1)
    await inbox.put("first")
    second_put = trio.Event()

    async def put_second() -> None:
        await inbox.put("second")
        second_put.set()

    nursery.start_soon(put_second)
    await trio.testing.wait_all_tasks_blocked()
    assert not second_put.is_set()
    assert await inbox.receive() == "first"
    await second_put.wait()
    assert await inbox.receive() == "second"


async def test_a_waiting_receive_gets_the_next_event(nursery: trio.Nursery) -> None:
    inbox = AppInbox(2)
    received: list[str] = []
    done = trio.Event()

    async def receive() -> None:
        received.append(await inbox.receive())
        done.set()

    nursery.start_soon(receive)
    await trio.testing.wait_all_tasks_blocked()
    await inbox.put("hello")
    await done.wait()
    assert received == ["hello"]


async def test_close_ends_the_reader_after_what_was_queued(nursery: trio.Nursery) -> None:
    inbox = AppInbox(2)
    await inbox.put("last")
    inbox.close()
    assert await inbox.receive() == "last"
    with pytest.raises(trio.EndOfChannel):
        await inbox.receive()
    with pytest.raises(trio.ClosedResourceError):
        await inbox.put("too late")


async def test_close_wakes_a_waiting_reader_and_waiting_puts(nursery: trio.Nursery) -> None:
    empty, full = AppInbox(1), AppInbox(1)
    await full.put("waiting")
    outcomes: list[str] = []

    async def receive_empty() -> None:
        with pytest.raises(trio.EndOfChannel):
            await empty.receive()
        outcomes.append("reader ended")

    async def put_into_full() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await full.put("refused")
        outcomes.append("put refused")

    async with trio.open_nursery() as waiters:
        waiters.start_soon(receive_empty)
        waiters.start_soon(put_into_full)
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == []
        empty.close()
        full.close()
    assert sorted(outcomes) == ["put refused", "reader ended"]
    assert await full.receive() == "waiting"  # what was queued before the close


async def test_cancelled_calls_take_and_queue_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = AppInbox(1)
    with trio.move_on_after(1) as waited:
        await inbox.receive()
    assert waited.cancelled_caught
    await inbox.put("kept")
    with trio.move_on_after(1) as waited:
        await inbox.put("dropped")
    assert waited.cancelled_caught
    assert await inbox.receive() == "kept"
    await inbox.put("next")  # the cancelled put left nothing behind
    assert await inbox.receive() == "next"


async def test_each_call_is_a_checkpoint() -> None:
    inbox = AppInbox(2)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await inbox.put("never")
    await inbox.put("queued")
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await inbox.receive()
    assert await inbox.receive() == "queued"
