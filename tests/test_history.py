"""The in-memory sequence and history (one instance without Redis), on
trio's MockClock for its TTLs, and the recovery rules both histories share."""

from __future__ import annotations

import trio
import trio.testing

from chat_service.realtime.history import MemoryHistory, Position, Reason, recover
from chat_service.realtime.message import Message, Since, as_duplicate, frame_seq, with_seq


def chat(body: str, client_msg_id: str | None = None) -> str:
    return Message("r", "c1", "u", body=body, client_msg_id=client_msg_id, id="i", ts=1).encode()


def test_seq_is_spliced_into_the_encoded_frame_and_read_back() -> None:
    frame = with_seq(chat("hi"), 42)
    assert frame.startswith('{"type":"chat","seq":42,"id":"i",')
    assert frame_seq(frame) == 42
    assert frame_seq(chat("no seq")) is None
    assert as_duplicate(frame).startswith('{"type":"chat","seq":42,"duplicate":true,"id"')


async def test_each_message_gets_the_rooms_next_seq_and_is_kept() -> None:
    history = MemoryHistory(size=10, ttl=60)
    seqs = [history.append("r", chat(str(n))).seq for n in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert history.append("other", chat("x")).seq == 1  # one counter per room
    start = await history.start("r", None)
    assert start.position.seq == 5
    assert start.recovered is None
    page = await history.page("r", None, 3)
    assert [frame_seq(frame) for frame in page.frames] == [3, 4, 5]
    assert page.has_more
    older = await history.page("r", 3, 3)
    assert [frame_seq(frame) for frame in older.frames] == [1, 2]
    assert not older.has_more
    assert page.epoch == start.position.epoch != (await history.start("other", None)).position.epoch


async def test_recovery_replays_exactly_what_came_after_since() -> None:
    history = MemoryHistory(size=10, ttl=60)
    for n in range(6):
        history.append("r", chat(str(n)))
    epoch = (await history.start("r", None)).position.epoch
    start = await history.start("r", Since(epoch, 3))
    assert start.recovered is True
    assert [frame_seq(frame) for frame in start.frames] == [4, 5, 6]
    assert (await history.start("r", Since(epoch, 6))).recovered is True
    changed = await history.start("r", Since("another", 3))
    assert (changed.recovered, changed.reason, changed.frames) == (False, Reason.EPOCH_CHANGED, [])


async def test_only_the_last_history_size_messages_are_kept() -> None:
    history = MemoryHistory(size=3, ttl=60)
    for n in range(5):
        history.append("r", chat(str(n)))
    epoch = (await history.start("r", None)).position.epoch
    assert (await history.start("r", Since(epoch, 2))).recovered is True  # 3, 4, 5 held
    too_old = await history.start("r", Since(epoch, 1))
    assert (too_old.recovered, too_old.reason) == (False, Reason.TOO_OLD)


async def test_messages_leave_history_after_the_ttl(autojump_clock: trio.testing.MockClock) -> None:
    history = MemoryHistory(size=10, ttl=60)
    history.append("r", chat("old"))
    await trio.sleep(30)
    history.append("r", chat("newer"))
    await trio.sleep(31)
    page = await history.page("r", None, 10)
    assert [frame_seq(frame) for frame in page.frames] == [2]
    epoch = page.epoch
    assert (await history.start("r", Since(epoch, 0))).reason == Reason.TOO_OLD
    assert (await history.start("r", Since(epoch, 1))).recovered is True


async def test_history_off_still_counts(autojump_clock: trio.testing.MockClock) -> None:
    history = MemoryHistory(size=10, ttl=0)
    assert [history.append("r", chat(str(n)), ("u", "m")).seq for n in range(2)] == [1, 2]
    start = await history.start("r", None)
    assert (await history.page("r", None, 10)).frames == []
    off = await history.start("r", Since(start.position.epoch, 1))
    assert (off.recovered, off.reason) == (False, Reason.HISTORY_OFF)


async def test_a_retry_is_the_original_while_it_is_in_history() -> None:
    history = MemoryHistory(size=2, ttl=60)
    first = history.append("r", chat("hi", "m1"), ("u", "m1"))
    retry = history.append("r", chat("hi again", "m1"), ("u", "m1"))
    assert (retry.duplicate, retry.seq, retry.frame) == (True, first.seq, first.frame)
    assert not history.append("r", chat("hi", "m1"), ("v", "m1")).duplicate  # another user
    assert not history.append("other", chat("hi", "m1"), ("u", "m1")).duplicate  # another room
    history.append("r", chat("pushes m1 out"))
    assert not history.append("r", chat("hi", "m1"), ("u", "m1")).duplicate


async def test_an_idle_room_starts_a_new_epoch_after_its_counter_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    history = MemoryHistory(size=10, ttl=60)
    history.append("r", chat("x"))
    before = (await history.start("r", None)).position
    await trio.sleep(86400 + 1)  # COUNTER_TTL_MIN
    after = (await history.start("r", None)).position
    assert after.epoch != before.epoch
    assert after.seq == 0


def test_recover_needs_the_whole_run_up_to_the_latest() -> None:
    held = [with_seq(chat(str(n)), n) for n in (4, 5)]
    partial = recover(Position("e", 6), Since("e", 3), held, enabled=True)
    assert (partial.recovered, partial.reason) == (False, Reason.TOO_OLD)
    ahead = recover(Position("e", 6), Since("e", 7), [], enabled=True)
    assert ahead.reason == Reason.EPOCH_CHANGED


def test_recover_spans_the_numbers_a_failover_skipped() -> None:
    held = [with_seq(chat(str(n)), n) for n in (4, 5, 1006)]
    across = recover(Position("e", 1006), Since("e", 3), held, enabled=True, skipped=[(6, 1005)])
    assert (across.recovered, across.frames) == (True, held)
    # A skip that began before `since` covers what follows it, and no more.
    inside = recover(
        Position("e", 1006), Since("e", 9), held[2:], enabled=True, skipped=[(6, 1005)]
    )
    assert inside.recovered is True
    missing = recover(Position("e", 1007), Since("e", 3), held, enabled=True, skipped=[(6, 1005)])
    assert (missing.recovered, missing.reason) == (False, Reason.TOO_OLD)
