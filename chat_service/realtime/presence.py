"""Presence: who is in each room, per user with a connection count, and the
coalesced `presence_diff` of each room once per interval.

The view of a room is this instance's members (`join`/`remove`, called by the
hub as connections become members and leave) plus the other instances'
(from a `PresenceStore`, Redis; none without it). With a store, every
interval this instance writes its share of each room and reads the others'
back; a room's first local member waits for that once (`wait_synced`). A user is present while
their count, summed over the cluster, is above 0: a second tab changes the
count, not who is present.

Every `interval` the room's changes since the last diff become one frame,
encoded once and offered to every local member: one frame per room per
interval per member, however many joined. A user who came and went within
the interval (or went and came back) is in neither list, unless a member
who joined meanwhile was shown the state in between (see `_Changes`).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from .message import PresenceListing, encode

__all__ = [
    "DEFAULT_LIST_MAX",
    "Offer",
    "Page",
    "Presence",
    "PresenceStore",
    "PresenceUnavailable",
    "Share",
]

log = logging.getLogger(__name__)

# Presence diffs one room may cost this instance per second: a room with
# more local members gets its diff less often than every interval (one frame
# per member each time), so that a room of 5,000 reconnecting at once does
# not spend the core on presence while the joins wait.
ROOM_DIFFS_PER_SECOND = 1000
# Members listed in a `subscribed` frame's presence: enough for a sidebar,
# while a room of thousands costs each subscriber one small frame.
DEFAULT_LIST_MAX = 100

Offer = Callable[[str, str], object]
"""`offer(room, frame)`: hands one encoded `presence_diff` to the local
members of `room`. A plain function: it never waits on a client."""

Share = dict[str, int]
"""One instance's connections per user_id in a room."""


class PresenceUnavailable(Exception):
    """The other instances' presence cannot be read or written (Redis down)."""


class PresenceStore(Protocol):
    """Where instances keep their shares of presence (see redis_presence.py)."""

    async def sync(self, shares: Mapping[str, Share | None]) -> dict[str, Share]:
        """Write this instance's share of each room (None: unchanged; empty:
        gone) and return the other instances' shares summed, per room."""
        ...

    async def read(self, room: str) -> Share:
        """Every instance's connections per user in `room`."""
        ...


@dataclass(slots=True)
class _Changes:
    """What changed in a room since its last diff.

    `before[user]` is whether the user was present at the last diff; a
    user whose presence is the same now is left out of the diff, unless a
    snapshot (a new member's `subscribed` frame) was taken between the
    user's first and last change: that member saw the state in between.
    """

    before: dict[str, bool] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    snapshots: list[int] = field(default_factory=list)

    def note(self, user: str, was_present: bool, step: int) -> None:
        if user not in self.before:
            self.before[user] = was_present
            self.first[user] = step
        self.last[user] = step

    def seen_between(self, user: str) -> bool:
        """Whether a snapshot was taken between the user's first and last change."""
        at = bisect.bisect_right(self.snapshots, self.first[user])
        return at < len(self.snapshots) and self.snapshots[at] < self.last[user]


class _Room:
    """One room's view: connection counts per user, here and elsewhere."""

    __slots__ = ("changes", "connections", "listed", "local", "remote", "users")

    def __init__(self) -> None:
        self.local: dict[str, int] = {}
        self.remote: dict[str, int] = {}
        self.users: list[str] = []  # every present user, sorted (listing and paging)
        self.connections = 0
        self.changes = _Changes()
        # The first `list_max` members as `subscribed` frames show them, until
        # one of them changes: in a connect storm every newcomer's frame
        # shows the same list, and building it was a tenth of a join's cost.
        self.listed: str | None = None  # as JSON

    def count(self, user: str) -> int:
        return self.local.get(user, 0) + self.remote.get(user, 0)

    def is_empty(self) -> bool:
        return not self.local and not self.remote and not self.changes.before


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a room's members, sorted by `user_id`; `cursor` names
    the next page (None: this was the last)."""

    users: int
    connections: int
    members: list[dict[str, Any]]
    cursor: str | None


class Presence:
    """Every room's presence on this instance's view of the cluster."""

    def __init__(
        self,
        *,
        interval: float,
        list_max: int = DEFAULT_LIST_MAX,
        store: PresenceStore | None = None,
    ) -> None:
        self._interval = interval
        self._list_max = list_max
        self._store = store
        self._rooms: dict[str, _Room] = {}
        self._changed: set[str] = set()
        self._next_diff: dict[str, float] = {}  # big rooms: when their next diff is due
        self._steps = itertools.count()
        # With a store: rooms whose local share changed since it was written;
        # rooms whose other shares are known; rooms a first member waits for.
        self._dirty: set[str] = set()
        self._synced: set[str] = set()
        self._wanted: dict[str, trio.Event] = {}
        self._wanted_added = trio.lowlevel.ParkingLot()
        self._outage_logged = False

    async def wait_synced(self, room: str) -> None:
        """Return once the other instances' share of `room` is known (at
        once without a store, or if it already is): a room's first member
        waits for one round trip, every later one does not. While the
        store is unavailable it returns after the failed attempt.
        Cancellation only stops the wait."""
        if self._store is None or room in self._synced:
            await trio.lowlevel.checkpoint()
            return
        synced = self._wanted.get(room)
        if synced is None:
            synced = self._wanted[room] = trio.Event()
            self._wanted_added.unpark_all()
        await synced.wait()

    def join(self, room: str, user: str) -> PresenceListing:
        """A local connection of `user` became a member of `room`: count it,
        and return the presence its `subscribed` frame shows (`snapshot`,
        the newcomer included). O(list_max) once a listed member changed,
        else the list is the one already built."""
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        # The newcomer saw every change so far; its own comes after.
        self._snapshot_taken(state)
        state.local[user] = state.local.get(user, 0) + 1
        self._dirty.add(room)
        self._counted(room, state, user, +1)
        return self._listed(state)

    def remove(self, room: str, user: str) -> None:
        """A local connection of `user` left `room` (it had `join`ed)."""
        state = self._rooms.get(room)
        if state is None or user not in state.local:
            return
        left = state.local[user] - 1
        if left:
            state.local[user] = left
        else:
            del state.local[user]
        self._dirty.add(room)
        self._counted(room, state, user, -1)

    def set_remote(self, room: str, counts: Share) -> None:
        """The other instances' connections per user in `room`, replacing
        what was known of them."""
        state = self._rooms.get(room)
        if state is None:
            if not counts:
                return
            state = self._rooms[room] = _Room()
        old = state.remote
        state.remote = {user: n for user, n in counts.items() if n > 0}
        for user in old.keys() | state.remote.keys():
            delta = state.remote.get(user, 0) - old.get(user, 0)
            if delta:
                self._counted(room, state, user, delta)
        self._forget_if_empty(room, state)

    def _counted(self, room: str, state: _Room, user: str, delta: int) -> None:
        """`user`'s count in `room` changed by `delta`: note a join or leave."""
        state.connections += delta
        if bisect.bisect_left(state.users, user) < self._list_max:
            state.listed = None  # the user is (or goes) among the listed ones
        now = state.count(user)
        before = now - delta
        if (before > 0) == (now > 0):
            return  # another tab, or one of several closed: not a join or leave
        if now > 0:
            bisect.insort(state.users, user)
        else:
            del state.users[bisect.bisect_left(state.users, user)]
        state.changes.note(user, before > 0, next(self._steps))
        self._changed.add(room)

    def snapshot(self, room: str) -> PresenceListing:
        """The `presence` of a `subscribed` frame sent now: `users` and up
        to `list_max` members (by `user_id`). O(list_max) once a listed
        member changed, else the list is the one already built."""
        state = self._rooms.get(room)
        if state is None:
            return PresenceListing(0, "[]")
        self._snapshot_taken(state)
        return self._listed(state)

    def _snapshot_taken(self, state: _Room) -> None:
        if state.changes.before:
            state.changes.snapshots.append(next(self._steps))

    def _listed(self, state: _Room) -> PresenceListing:
        if state.listed is None:
            listed = itertools.islice(state.users, self._list_max)
            state.listed = encode(list(_members(state, listed)))
        return PresenceListing(len(state.users), state.listed)

    def totals(self, room: str) -> tuple[int, int]:
        """(users, connections) of `room` in this instance's view of the
        cluster, as of the last interval; never waits."""
        state = self._rooms.get(room)
        return (0, 0) if state is None else (len(state.users), state.connections)

    async def page(self, room: str, *, limit: int, cursor: str | None = None) -> Page:
        """Up to `limit` members of `room` after the user `cursor` (None:
        from the first), with the room's totals: from this instance's view
        where it has one, else read from the store. Raises
        `PresenceUnavailable` if that read fails. Cancellation abandons it."""
        state = self._rooms.get(room)
        if self._store is not None and room not in self._synced:
            state = _Room()
            state.remote = await self._store.read(room)
            state.users = sorted(state.remote)
            state.connections = sum(state.remote.values())
        else:
            await trio.lowlevel.checkpoint()
        return self._page(state or _Room(), limit, cursor)

    def _page(self, state: _Room, limit: int, cursor: str | None) -> Page:
        start = 0 if cursor is None else bisect.bisect_right(state.users, cursor)
        users = state.users[start : start + limit]
        more = start + limit < len(state.users)
        return Page(
            users=len(state.users),
            connections=state.connections,
            members=list(_members(state, users)),
            cursor=users[-1] if more and users else None,
        )

    def take_diff(self, room: str) -> str | None:
        """The room's `presence_diff` frame of every change since the last
        one (None if nothing changed on balance), and start a new interval."""
        state = self._rooms.get(room)
        if state is None:
            return None
        changes, state.changes = state.changes, _Changes()
        joins: list[dict[str, Any]] = []
        leaves: list[dict[str, Any]] = []
        for user, was_present in changes.before.items():
            present = state.count(user) > 0
            if present == was_present and not changes.seen_between(user):
                continue
            if present:
                joins.append({"user_id": user, "connections": state.count(user)})
            else:
                leaves.append({"user_id": user})
        self._forget_if_empty(room, state)
        if not joins and not leaves:
            return None
        frame: dict[str, Any] = {"type": "presence_diff", "room": room}
        # A storm's diff to every member would be O(members) bytes each: past
        # list_max changes the diff lists list_max and says so; the client
        # pages the endpoint if it keeps a full list.
        if len(joins) + len(leaves) > self._list_max:
            joins = joins[: self._list_max]
            leaves = leaves[: self._list_max - len(joins)]
            frame["truncated"] = True
        frame |= {"joins": joins, "leaves": leaves, "users": len(state.users)}
        return encode(frame)

    def _forget_if_empty(self, room: str, state: _Room) -> None:
        # With a store, a room without local members is forgotten once its
        # share was dropped there (`_sync`).
        if self._store is None and state.is_empty():
            self._rooms.pop(room, None)

    def take_diffs(self) -> Iterator[tuple[str, str]]:
        """(room, frame) for every room whose presence changed since its
        last diff and whose next diff is due (see ROOM_DIFFS_PER_SECOND)."""
        now = trio.current_time()
        changed, self._changed = self._changed, set()
        for room in changed:
            if now < self._next_diff.get(room, now):
                self._changed.add(room)  # not yet: it keeps coalescing
                continue
            self._next_diff.pop(room, None)
            state = self._rooms.get(room)
            if (frame := self.take_diff(room)) is not None and state is not None:
                members = sum(state.local.values())
                if members > ROOM_DIFFS_PER_SECOND * self._interval:
                    wait = members / ROOM_DIFFS_PER_SECOND
                    self._next_diff[room] = now + wait - self._interval / 2
                yield room, frame

    async def run(
        self,
        offer: Offer | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled: every interval, write this instance's shares to
        the store and read the others' (with a store), then hand each
        changed room's diff to `offer` (None: no diffs, PRESENCE_EVENTS
        off); between intervals, sync the rooms a first member waits for at
        once. Cancellation loses nothing: changes wait for the next run."""
        task_status.started()
        deadline = trio.current_time() + self._interval
        while True:
            with trio.move_on_at(deadline):
                while not self._wanted:
                    await self._wanted_added.park()
            due = trio.current_time() >= deadline
            if self._store is not None:
                await self._sync([*self._rooms, *self._wanted] if due else list(self._wanted))
            if due:
                deadline = trio.current_time() + self._interval
                if offer is not None:
                    for room, frame in self.take_diffs():
                        offer(room, frame)

    async def _sync(self, rooms: list[str]) -> None:
        """One round with the store for `rooms` (see `run`)."""
        assert self._store is not None
        wanted = {room: self._wanted[room] for room in rooms if room in self._wanted}
        shares: dict[str, Share | None] = {}
        for room in dict.fromkeys(rooms):
            state = self._rooms.get(room)
            local = {} if state is None else state.local
            shares[room] = dict(local) if room in self._dirty or not local else None
        self._dirty.difference_update(shares)
        try:
            others = await self._store.sync(shares)
        except PresenceUnavailable as exc:
            self._dirty.update(shares)
            if not self._outage_logged:
                log.warning("presence of other instances unavailable: %s", exc)
                self._outage_logged = True
        else:
            self._outage_logged = False
            for room, counts in others.items():
                state = self._rooms.get(room)
                if state is not None and not state.local and room not in wanted:
                    # No member here any more: nobody to show it to.
                    del self._rooms[room]
                    self._synced.discard(room)
                    continue
                self.set_remote(room, counts)
                self._synced.add(room)
        for room, synced in wanted.items():
            if self._wanted.get(room) is synced:
                del self._wanted[room]
            synced.set()


def _members(state: _Room, users: Iterator[str] | list[str]) -> Iterator[dict[str, Any]]:
    for user in users:
        yield {"user_id": user, "connections": state.count(user)}
