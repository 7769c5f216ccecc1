"""What a protocol-v2 client remembers across connections, and how it answers
each server frame: the rooms and how far it has read each one, and the lines
it still has to get delivered. No I/O here: `Session.handle` takes a frame
and returns the frames to send back; the connection loop (`connect.py`) does
the sending."""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Cursor", "Outgoing", "Reporter", "Session"]

Frame = dict[str, Any]


class Reporter(Protocol):
    """Where a session tells the person (or script) what happened."""

    def chat(self, frame: Frame) -> None:
        """A chat message to show (each one once, in the room's order)."""

    def notice(self, text: str) -> None:
        """Something about the connection or the rooms, for people."""


@dataclass
class Cursor:
    """How far this client has read one room: the room's epoch and the
    largest `seq` shown (None before the first `subscribed`)."""

    epoch: str | None = None
    seq: int = 0

    def since(self) -> Frame | None:
        """The `since` to recover this room from, if the client has been in it."""
        return None if self.epoch is None else {"epoch": self.epoch, "seq": self.seq}


@dataclass
class Outgoing:
    """A line to say in `room`; `client_msg_id` makes sending it again safe."""

    room: str
    body: str
    client_msg_id: str = field(default_factory=lambda: secrets.token_hex(8))

    def frame(self) -> Frame:
        return {
            "type": "chat",
            "room": self.room,
            "body": self.body,
            "client_msg_id": self.client_msg_id,
        }


# Errors that refuse the chat frame in flight for good; `rate_limited` only
# means "later", and the line is sent again after a pause.
_REFUSING_CODES = frozenset(
    {"invalid_message", "body_too_long", "not_subscribed", "forbidden_room"}
)


class Session:
    """A client's rooms and outgoing lines across reconnects.

    Lines go out one at a time: the next once the previous has come back as
    a chat frame (or was refused). That keeps them in order across a
    reconnect, and lets an `error` frame be matched to the line it refuses
    (error frames carry no `client_msg_id`).
    """

    def __init__(
        self,
        path_room: str,
        rooms: list[str],
        reporter: Reporter,
        *,
        token: str | None = None,
        token_file: Path | None = None,
    ) -> None:
        self.path_room = path_room
        # The token to connect with; replaced by a refresh from `token_file`.
        self.token = token
        self.token_file = token_file
        self.cursors = {room: Cursor() for room in dict.fromkeys([path_room, *rooms])}
        self.queue: deque[Outgoing] = deque()
        self.in_flight: Outgoing | None = None
        self.refused = 0
        self.heartbeat_interval: float | None = None
        self.reporter = reporter
        self.welcomed = False
        self.has_joined = False
        self._joined: set[str] = set()
        self._resubscribing: set[str] = set()

    @property
    def idle(self) -> bool:
        """The path's room has been joined, and every line given so far has
        come back or been refused."""
        return self.has_joined and self.in_flight is None and not self.queue

    def query(self) -> dict[str, str]:
        """The recovery query parameters for the path's room (empty on the first connect)."""
        since = self.cursors[self.path_room].since()
        return {} if since is None else {"since": str(since["seq"]), "epoch": since["epoch"]}

    def connection_opened(self) -> None:
        """A new socket is open: no room is joined on it yet, and a line in
        flight on the old one goes out again (safe: same `client_msg_id`)."""
        self._joined.clear()
        self._resubscribing.clear()
        if self.in_flight is not None:
            self.queue.appendleft(self.in_flight)
            self.in_flight = None

    def say(self, body: str) -> list[Frame]:
        """Queue `body` for the path's room; the frames to send now, if any."""
        self.queue.append(Outgoing(self.path_room, body))
        return self._next_line()

    def retry_in_flight(self) -> list[Frame]:
        """Send the line in flight again (after a `rate_limited` pause)."""
        if self.in_flight is None or self.path_room not in self._joined:
            return []
        return [self.in_flight.frame()]

    def handle(self, frame: Frame) -> list[Frame]:
        """Act on one server frame; the frames to send in answer.

        Raises `RateLimited` when the server refused the line in flight for
        now: the caller waits, then calls `retry_in_flight()`.
        """
        kind = frame.get("type")
        if kind == "ping":
            return [{"type": "pong"}]
        if kind == "welcome":
            self.heartbeat_interval = float(frame["heartbeat_interval"])
            self.welcomed = True
            self.reporter.notice(f"connected as {frame['user_id']}")
            return []
        if kind == "subscribed":
            return self._subscribed(frame)
        if kind == "unsubscribed":
            return self._unsubscribed(frame)
        if kind == "chat":
            return self._chat(frame)
        if kind == "error":
            return self._error(frame)
        if kind == "token_expiring":
            return self._refresh()
        if kind == "refreshed":
            until = time.strftime("%H:%M:%S", time.localtime(int(frame["exp"])))
            self.reporter.notice(f"token refreshed, valid until {until}")
        # presence_diff, pong, refreshed and frame types added later need no answer.
        return []

    def _refresh(self) -> list[Frame]:
        """The `refresh` answering `token_expiring`, with the token now in
        `token_file` (a file some other process keeps renewed)."""
        fresh = None
        if self.token_file is not None:
            try:
                fresh = self.token_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                self.reporter.notice(f"cannot read --token-file: {exc}")
        if fresh is None or fresh == self.token:
            self.reporter.notice("the token expires soon, and there is no newer one")
            return []
        self.token = fresh
        return [{"type": "refresh", "token": fresh}]

    def _subscribed(self, frame: Frame) -> list[Frame]:
        room = frame["room"]
        cursor = self.cursors.setdefault(room, Cursor())
        since = cursor.since()
        if since is not None and "recovered" not in frame and room not in self._resubscribing:
            # A server that ignores `since` in the query: leave and join
            # again with `since` in a subscribe frame, which it does honour.
            self._resubscribing.add(room)
            return [{"type": "unsubscribe", "room": room}]
        self._resubscribing.discard(room)
        if since is not None and frame.get("recovered") is True:
            self.reporter.notice(f"#{room}: recovered everything after seq {cursor.seq}")
        elif since is not None:
            self.reporter.notice(
                f"#{room}: history since seq {cursor.seq} could not be recovered "
                f"({frame.get('reason', 'unknown')}); messages may be missing here"
            )
        if frame.get("epoch") != cursor.epoch or frame.get("recovered") is not True:
            # A room without history (epoch and seq null) cannot be recovered.
            cursor.epoch = frame.get("epoch")
            cursor.seq = int(frame.get("seq") or 0)
        newly = room not in self._joined
        self._joined.add(room)
        if newly:
            self.reporter.notice(f"#{room}: joined")
        if room != self.path_room or not newly:
            return []  # a renewed `subscribed` (history lost) needs nothing sent
        self.has_joined = True
        out = [self._subscribe(other) for other in self.cursors if other != room]
        out += self._next_line()
        return out

    def _subscribe(self, room: str) -> Frame:
        frame: Frame = {"type": "subscribe", "room": room}
        since = self.cursors[room].since()
        if since is not None:
            frame["since"] = since
        return frame

    def _unsubscribed(self, frame: Frame) -> list[Frame]:
        room = frame["room"]
        self._joined.discard(room)
        if room in self._resubscribing:
            return [self._subscribe(room)]
        self.reporter.notice(f"#{room}: left ({frame.get('reason', 'unknown')})")
        return []

    def _chat(self, frame: Frame) -> list[Frame]:
        room = frame.get("room", self.path_room)
        cursor = self.cursors.setdefault(room, Cursor())
        seq = frame.get("seq")
        if isinstance(seq, int):
            if seq <= cursor.seq:
                return self._acknowledge(frame)  # seen already (a replay's seam, a retry)
            cursor.seq = seq
        self.reporter.chat(frame)
        return self._acknowledge(frame)

    def _acknowledge(self, frame: Frame) -> list[Frame]:
        line = self.in_flight
        if line is None or frame.get("client_msg_id") != line.client_msg_id:
            return []
        self.in_flight = None
        return self._next_line()

    def _error(self, frame: Frame) -> list[Frame]:
        code = frame.get("code")
        self.reporter.notice(f"error {code}: {frame.get('detail', '')}")
        line = self.in_flight
        if line is None or frame.get("room", line.room) != line.room:
            return []
        if code == "rate_limited":
            raise RateLimited
        if code in _REFUSING_CODES:
            self.refused += 1
            self.in_flight = None
            return self._next_line()
        return []

    def _next_line(self) -> list[Frame]:
        if self.in_flight is not None or self.path_room not in self._joined:
            return []
        if not self.queue:
            return []
        self.in_flight = self.queue.popleft()
        return [self.in_flight.frame()]


class RateLimited(Exception):
    """The server refused the line in flight for now (`rate_limited`)."""
