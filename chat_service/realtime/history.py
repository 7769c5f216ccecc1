"""A room's sequence and history: the `seq` counter, the `epoch` it counts
in, and the last HISTORY_SIZE chat frames, behind one interface.

`MemoryHistory` keeps them in this process (one instance, no Redis);
`redis_history.RedisHistory` reads them from Redis, where the publish
script (`scripts/publish.lua`) writes them. Both answer the same two
questions: where does a room stand and what did a client miss (`start`),
and what came before a point (`page`).
"""

from __future__ import annotations

import abc
import secrets
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import trio

from .message import Since, frame_seq, with_seq

__all__ = [
    "COUNTER_TTL_MIN",
    "Appended",
    "History",
    "HistoryUnavailable",
    "MemoryHistory",
    "Page",
    "Position",
    "Reason",
    "Start",
    "new_epoch",
    "recover",
]

# Seconds a room's counter (and so its epoch) outlives its last message at
# least, even with a short HISTORY_TTL or none: a quiet room keeps counting
# where it was instead of starting a new epoch every few minutes.
COUNTER_TTL_MIN = 86400


def new_epoch() -> str:
    """A fresh epoch: 64 random bits, so a new counter is never mistaken for an old one."""
    return secrets.token_hex(8)


class HistoryUnavailable(Exception):
    """The history cannot be read now (Redis is down)."""


class Reason(StrEnum):
    """Why a recovery failed (`reason` in `subscribed`)."""

    EPOCH_CHANGED = "epoch_changed"
    TOO_OLD = "too_old"
    HISTORY_OFF = "history_off"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a room stands: its epoch, and the latest `seq` given out in it."""

    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class Start:
    """What a client subscribing to a room gets: the room's position, and
    with `since`, whether it recovered and the frames it missed (oldest first)."""

    position: Position
    recovered: bool | None = None
    reason: Reason | None = None
    frames: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Page:
    """A slice of a room's history, oldest first, and whether older frames exist."""

    epoch: str
    frames: list[str]
    has_more: bool


def recover(
    position: Position,
    since: Since | None,
    held: list[str],
    *,
    enabled: bool,
    skipped: Sequence[tuple[int, int]] = (),
) -> Start:
    """The answer to a subscribe at `position` from `since`, given `held`:
    the frames history holds after `since.seq` (oldest first; ignored
    without `since`), and `skipped`: the ranges of numbers (first, last)
    a Redis Cluster failover jumped over (see publish.lua).

    Recovered when nothing is missing: the epoch is the same and every
    number after `since.seq` up to the latest is a held frame or skipped.
    """
    if since is None:
        return Start(position)
    if since.epoch != position.epoch or since.seq > position.seq:
        return Start(position, False, Reason.EPOCH_CHANGED)
    if since.seq == position.seq:
        return Start(position, True)
    if not enabled:
        return Start(position, False, Reason.HISTORY_OFF)
    if not _covers(since.seq + 1, position.seq, held, skipped):
        return Start(position, False, Reason.TOO_OLD)
    return Start(position, True, frames=held)


def _covers(first: int, last: int, held: list[str], skipped: Sequence[tuple[int, int]]) -> bool:
    """Whether the held frames' seqs and the skipped ranges leave no number
    of first..last out."""
    spans = sorted([*((seq, seq) for seq in map(frame_seq, held) if seq is not None), *skipped])
    expected = first
    for low, high in spans:
        if low > expected:
            return False
        expected = max(expected, high + 1)
    return expected > last


class History(abc.ABC):
    """A room's sequence and history, read side."""

    @abc.abstractmethod
    async def start(self, room: str, since: Since | None) -> Start:
        """Where `room` stands now and, with `since`, what came after it.

        Raises `HistoryUnavailable` when it cannot be read. Cancellation
        abandons the read (nothing changes).
        """

    @abc.abstractmethod
    async def page(self, room: str, before: int | None, limit: int) -> Page:
        """Up to `limit` frames of `room` with a `seq` below `before` (or the
        newest, with None), oldest first.

        Raises `HistoryUnavailable` when it cannot be read. Cancellation
        abandons the read.
        """


@dataclass(slots=True)
class _RoomLog:
    epoch: str
    seq: int = 0
    # (seq, trio time it expires, frame), oldest first.
    entries: deque[tuple[int, float, str]] = field(default_factory=deque)
    # (user_id, client_msg_id) -> seq, in seq order: trimmed with `entries`.
    sent: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)
    used: float = 0.0


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of adding a chat frame: its `seq` and frame (with `seq`),
    or the original's when it was a retry (`duplicate`)."""

    epoch: str
    seq: int
    frame: str
    duplicate: bool = False


class MemoryHistory(History):
    """Sequence and history in this process, for one instance without Redis.

    The epoch of a room is new whenever its log is (this process started,
    or the room was idle past COUNTER_TTL_MIN and HISTORY_TTL). Time is
    trio's clock, so tests may drive it with a MockClock.
    """

    def __init__(self, *, size: int, ttl: int) -> None:
        self._size = size
        self._ttl = ttl
        self._counter_ttl = max(ttl, COUNTER_TTL_MIN)
        self._rooms: OrderedDict[str, _RoomLog] = OrderedDict()

    def append(self, room: str, frame: str, sender: tuple[str, str] | None = None) -> Appended:
        """Give `frame` (a chat frame without `seq`) the room's next `seq`
        and keep it; or, if `sender` (user_id, client_msg_id) already sent
        a message still in history, return that one as a duplicate."""
        log = self._log(room)
        self._expire(log)
        if sender is not None and (seq := log.sent.get(sender)) is not None:
            for held_seq, _, held in log.entries:
                if held_seq == seq:
                    return Appended(log.epoch, seq, held, duplicate=True)
        log.seq += 1
        framed = with_seq(frame, log.seq)
        if self._ttl:
            log.entries.append((log.seq, trio.current_time() + self._ttl, framed))
            if sender is not None:
                log.sent[sender] = log.seq
            self._trim(log)
        return Appended(log.epoch, log.seq, framed)

    async def start(self, room: str, since: Since | None) -> Start:
        await trio.lowlevel.checkpoint()
        log = self._log(room)
        self._expire(log)
        floor = since.seq if since is not None else log.seq
        held = [frame for seq, _, frame in log.entries if seq > floor]
        return recover(Position(log.epoch, log.seq), since, held, enabled=self._ttl > 0)

    async def page(self, room: str, before: int | None, limit: int) -> Page:
        await trio.lowlevel.checkpoint()
        log = self._log(room)
        self._expire(log)
        older = [frame for seq, _, frame in log.entries if before is None or seq < before]
        return Page(log.epoch, older[-limit:], len(older) > limit)

    def _log(self, room: str) -> _RoomLog:
        """The room's log (a new one, in a new epoch, if it had none), and
        forget the logs of rooms idle past the counter's TTL."""
        now = trio.current_time()
        while self._rooms:
            oldest = next(iter(self._rooms.values()))
            if oldest.used + self._counter_ttl > now:
                break
            self._rooms.popitem(last=False)
        log = self._rooms.get(room)
        if log is None:
            log = self._rooms[room] = _RoomLog(new_epoch())
        else:
            self._rooms.move_to_end(room)
        log.used = now
        return log

    def _expire(self, log: _RoomLog) -> None:
        now = trio.current_time()
        while log.entries and log.entries[0][1] <= now:
            log.entries.popleft()
        self._trim(log)

    def _trim(self, log: _RoomLog) -> None:
        while len(log.entries) > self._size:
            log.entries.popleft()
        oldest = log.entries[0][0] if log.entries else log.seq + 1
        _drop_before(log.sent, oldest)


def _drop_before(sent: OrderedDict[tuple[str, str], int], oldest: int) -> None:
    """Forget the senders' ids of messages no longer in history (`sent` is in seq order)."""
    while sent:
        key, seq = next(iter(sent.items()))
        if seq >= oldest:
            return
        del sent[key]
