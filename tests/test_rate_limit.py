"""The per-connection rate limit: the token bucket and strikes on trio's
mock clock, and a flooding client against a real server."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from chat_service.realtime import Connection, HandlerConfig
from chat_service.realtime.rate_limit import RateLimiter, TokenBucket, Verdict

from .conftest import StartServer
from .helpers import WAIT, Client, RunningServer, connect

A, R, C = Verdict.ACCEPT, Verdict.REFUSE, Verdict.CLOSE


async def test_bucket_allows_a_burst_then_the_rate(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    await trio.sleep(0.5)  # one token at 2 per second
    assert [bucket.take() for _ in range(2)] == [True, False]
    await trio.sleep(0.25)  # half a token is not a token
    assert bucket.take() is False
    await trio.sleep(0.25)
    assert bucket.take() is True


async def test_bucket_saves_up_no_more_than_the_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bucket = TokenBucket(rate=100.0, burst=5)
    await trio.sleep(3600)
    assert sum(bucket.take() for _ in range(50)) == 5


async def test_strikes_within_the_window_close(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(per_second=0.001, burst=2, strikes=3, strike_window=10.0)
    assert [limiter.check() for _ in range(5)] == [A, A, R, R, C]


async def test_strikes_spread_beyond_the_window_do_not_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(per_second=0.001, burst=1, strikes=3, strike_window=10.0)
    assert limiter.check() is A
    verdicts = []
    for _ in range(10):  # one refusal every 6 s: never 3 within 10 s
        verdicts.append(limiter.check())
        await trio.sleep(6.0)
    assert verdicts == [R] * 10
    assert [limiter.check(), limiter.check()] == [R, C]  # three within 10 s


async def test_a_client_that_slows_down_is_served_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(per_second=1.0, burst=2, strikes=3, strike_window=10.0)
    assert [limiter.check() for _ in range(4)] == [A, A, R, R]
    for _ in range(20):  # at the rate: every frame accepted
        await trio.sleep(1.0)
        assert limiter.check() is A


# A token every 4 s: the round trips of a test never earn one.
SLOW = {"rate_limit_per_second": 0.25, "rate_limit_burst": 3, "rate_limit_strikes": 4}


async def start_recording_closes(start_server: StartServer) -> tuple[RunningServer, list[int]]:
    """A server with SLOW limits, and the close code of every connection that ended."""
    codes: list[int] = []

    async def record(conn: Connection) -> None:
        codes.append(conn.close_reason[0] if conn.close_reason else 0)

    server = await start_server(
        make_handler_config=lambda b: HandlerConfig(b, on_disconnect=record), **SLOW
    )
    return server, codes


async def next_error(client: Client) -> dict[str, Any]:
    while (frame := await client.receive())["type"] != "error":
        pass
    return frame


async def test_flooder_gets_rate_limited_then_1008_and_neighbours_go_on(
    start_server: StartServer,
) -> None:
    server, codes = await start_recording_closes(start_server)
    async with (
        connect(server.url("f")) as flooder,
        connect(server.url("f")) as neighbour,
        connect(server.url("f")) as reader,
    ):
        for n in range(3):  # the burst goes through
            await flooder.send({"body": f"burst {n}"})
            assert (await flooder.receive_type("chat"))["body"] == f"burst {n}"
        for n in range(3):  # the next three are refused, and nobody sees them
            await flooder.send({"body": f"refused {n}"})
            assert (await next_error(flooder))["code"] == "rate_limited"
            if n < 2:  # (the neighbour stays within its own burst of 3)
                await neighbour.send({"body": f"neighbour {n}"})
        await flooder.send({"body": "fourth strike"})
        assert await flooder.closed_code() == 1008
        await neighbour.send({"body": "after"})
        while (await neighbour.receive_type("chat"))["body"] != "after":
            pass  # now the reader has "after" queued too
        chats = [f["body"] for f in await reader.drain_until_sync() if f["type"] == "chat"]
        assert chats == [
            "burst 0",
            "burst 1",
            "burst 2",
            "neighbour 0",
            "neighbour 1",
            "after",
        ]
        assert codes == [1008]


async def test_a_real_flood_is_cut_off(start_server: StartServer) -> None:
    server, codes = await start_recording_closes(start_server)
    async with connect(server.url("f")) as flooder, connect(server.url("f")) as neighbour:
        with trio.fail_after(WAIT):
            try:
                while True:
                    await flooder.send({"body": "spam"})
            except ConnectionClosed:
                pass  # the server closed it; the client may see 1006 (closed mid-write)
        await neighbour.send({"body": "fine"})
        chats = [f["body"] for f in await neighbour.drain_until_sync() if f["type"] == "chat"]
        assert chats == ["spam"] * 3 + ["fine"]
        assert codes == [1008]


@pytest.mark.parametrize(
    "frame",
    [{"type": "ping"}, {"type": "pong"}, b"binary", "not json", {"body": "chat"}],
)
async def test_every_kind_of_frame_counts(
    start_server: StartServer, frame: dict[str, str] | str | bytes
) -> None:
    server = await start_server(**SLOW)
    async with connect(server.url("k")) as client:
        for _ in range(3):
            await client.send(frame)
        await client.send(frame)
        frames = []
        while (received := await client.receive())["type"] != "error" or (
            received["code"] != "rate_limited"
        ):
            frames.append(received)
        assert len(frames) == (0 if frame == {"type": "pong"} else 3)
