"""One plain Redis connection on trio, for the broadcaster's hot paths:
the publisher's batches (`Wire.execute`) and the subscriber's messages
(`WireSubscriber`).

coredis, which every other command goes through, spends about 160 µs of
CPU per command: a writer task, a reader task, memory streams between
them and a cancel scope per read; a pub/sub message passes two more
streams and another task. Here a batch is one write whose replies are read
by the task that sent it, and every pub/sub message one read brings is
handed over at once: about 25 µs a round trip. It speaks RESP2, which is
all these two uses need. The URL is parsed by coredis, so every URL it
accepts (redis://, rediss:// and its TLS options, unix://, user, password,
database) reaches the same server.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import coredis
import trio
from coredis.connection import TCPLocation, UnixDomainSocketLocation
from coredis.exceptions import ResponseError

__all__ = ["Command", "Wire", "WireSubscriber", "open_wire", "pack"]

Command = Sequence[str | int]
"""A command and its arguments, e.g. ("PUBLISH", channel, payload)."""

_CRLF = b"\r\n"
# How much one read asks for: a busy subscriber's burst of messages.
_READ_SIZE = 256 * 1024
# An idle subscriber asks Redis for a PONG this often: a server that stopped
# answering is noticed even when no room has anything to say.
KEEPALIVE_SECONDS = 15.0


def pack(command: Command) -> bytes:
    """`command` in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg.encode() if isinstance(arg, str) else b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


class _Parser:
    """RESP2 replies out of the bytes read so far. Bulk strings come out as
    str (UTF-8), error replies as `ResponseError` values (not raised)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def replies(self) -> list[Any]:
        """Every complete reply in the buffer, in order, removed from it."""
        buffer, replies, pos = self._buffer, [], 0
        try:
            while pos < len(buffer):
                reply, pos = _parse(buffer, pos)
                replies.append(reply)
        except _Incomplete:
            pass
        del buffer[:pos]
        return replies


def _parse(buffer: bytearray, pos: int) -> tuple[Any, int]:
    end = buffer.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind, line, after = buffer[pos], buffer[pos + 1 : end], end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise _Incomplete
        return buffer[after : after + size].decode(errors="replace"), after + size + 2
    if kind == 0x2A:  # * array
        size = int(line)
        if size < 0:
            return None, after
        items = []
        for _ in range(size):
            item, after = _parse(buffer, after)
            items.append(item)
        return items, after
    if kind == 0x3A:  # : integer
        return int(line), after
    if kind == 0x2B:  # + simple string
        return line.decode(errors="replace"), after
    if kind == 0x2D:  # - error
        return ResponseError(line.decode(errors="replace")), after
    raise ConnectionError(f"not a RESP2 reply: {bytes(buffer[pos:end])[:40]!r}")


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError (what counts as Redis down) after `seconds`."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise TimeoutError(f"redis did not answer within {seconds:g}s") from None


class Wire:
    """A connection to Redis: commands written as one batch, replies read
    in order. Every failure of the connection is a `ConnectionError`, one
    that takes more than `timeout` seconds a `TimeoutError`, an error reply
    a `ResponseError`: all three are what REDIS_DOWN counts.

    Sends may come from several tasks (they take turns); one task at a
    time reads (`execute` or `receive`). A cancelled call leaves the
    connection mid-reply: close it.
    """

    def __init__(self, stream: trio.abc.Stream, timeout: float) -> None:
        self._stream = stream
        self._timeout = timeout
        self._parser = _Parser()
        self._replies: list[Any] = []
        self._sending = trio.Lock()

    async def aclose(self) -> None:
        """Close the connection (at once, without a goodbye to Redis)."""
        await trio.aclose_forcefully(self._stream)

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send `commands` in one write and return their replies, in order.
        Raises the first error reply, once every reply has been read."""
        with _deadline(self._timeout):
            await self.send(commands)
            replies: list[Any] = []
            while len(replies) < len(commands):
                replies += await self.receive(len(commands) - len(replies))
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    async def send(self, commands: Sequence[Command]) -> None:
        """Write `commands` without waiting for their replies."""
        data = b"".join(map(pack, commands))
        try:
            async with self._sending:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionError(f"redis connection lost: {exc}") from None

    async def receive(self, most: int | None = None) -> list[Any]:
        """The next replies (at least one, at most `most`), reading from
        the connection only when none is buffered yet."""
        while not self._replies:
            try:
                data = await self._stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionError(f"redis connection lost: {exc}") from None
            if not data:
                raise ConnectionError("redis closed the connection")
            self._parser.feed(data)
            self._replies = self._parser.replies()
        if most is None or most >= len(self._replies):
            replies, self._replies = self._replies, []
        else:
            replies, self._replies = self._replies[:most], self._replies[most:]
        return replies


@contextlib.asynccontextmanager
async def open_wire(url: str, *, client_name: str, answer_within: float) -> AsyncIterator[Wire]:
    """A `Wire` to the Redis of `url`, authenticated, on its database and
    named `client_name`, closed when the block ends; its commands time out
    after `answer_within` seconds. Raises what REDIS_DOWN counts if Redis
    cannot be reached within that time or refuses."""
    pool = coredis.ConnectionPool.from_url(url)
    location, options = pool.location, pool.connection_kwargs
    with _deadline(answer_within):
        stream: trio.abc.Stream
        if isinstance(location, UnixDomainSocketLocation):
            stream = await trio.open_unix_socket(location.path)
        else:
            assert isinstance(location, TCPLocation)
            stream = await trio.open_tcp_stream(location.host, location.port)
            if (context := options.get("ssl_context")) is not None:
                stream = trio.SSLStream(stream, context, server_hostname=location.host)
    wire = Wire(stream, answer_within)
    try:
        hello: list[Command] = []
        if password := options.get("password"):
            user = options.get("username")
            hello.append(["AUTH", user, password] if user else ["AUTH", password])
        if database := options.get("db"):
            hello.append(["SELECT", int(database)])
        hello.append(["CLIENT", "SETNAME", client_name])
        await wire.execute(hello)
        yield wire
    finally:
        await wire.aclose()


class WireSubscriber:
    """SUBSCRIBE and UNSUBSCRIBE on a `Wire` of their own, and the messages
    of the subscribed channels.

    `receive` must run (in its own task) for `subscribe` and `unsubscribe`
    to return: it reads their confirmations. An idle connection is checked
    with a PING every KEEPALIVE_SECONDS.
    """

    def __init__(self, wire: Wire, timeout: float) -> None:
        self._wire = wire
        self._timeout = timeout
        self._waiters: dict[tuple[str, str], list[trio.Event]] = defaultdict(list)

    async def subscribe(self, *channels: str) -> None:
        """Subscribe to `channels`; returns once Redis has confirmed each."""
        await self._confirmed("SUBSCRIBE", channels)

    async def unsubscribe(self, *channels: str) -> None:
        """Unsubscribe from `channels`; returns once Redis has confirmed each."""
        await self._confirmed("UNSUBSCRIBE", channels)

    async def _confirmed(self, command: str, channels: Sequence[str]) -> None:
        kind = command.lower()
        events = [trio.Event() for _ in channels]
        for channel, event in zip(channels, events, strict=True):
            self._waiters[kind, channel].append(event)
        await self._wire.send([[command, *channels]])
        with _deadline(self._timeout):
            for event in events:
                await event.wait()

    async def receive(self) -> list[tuple[str, str]]:
        """The (channel, payload) messages that arrived together, in order
        (possibly none: confirmations only). Cancellation loses nothing
        not yet read."""
        with trio.move_on_after(KEEPALIVE_SECONDS):
            return self._messages(await self._wire.receive())
        await self._wire.send([["PING"]])
        with _deadline(self._timeout):
            return self._messages(await self._wire.receive())

    def _messages(self, replies: list[Any]) -> list[tuple[str, str]]:
        messages = []
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
            kind = reply[0]
            if kind == "message":
                messages.append((reply[1], reply[2]))
            elif kind in ("subscribe", "unsubscribe"):
                if waiters := self._waiters.get((kind, reply[1])):
                    waiters.pop(0).set()
                    if not waiters:
                        del self._waiters[kind, reply[1]]
        return messages
