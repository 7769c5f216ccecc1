"""The broadcaster's own Redis connection: replies in order however the
bytes arrive, error replies and refusals as what counts as Redis down,
pub/sub confirmations and messages, a silent Redis noticed while idle."""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing
from coredis.exceptions import ResponseError
from pytest_redis.executor import RedisExecutor

from chat_service.realtime.redis_history import REDIS_DOWN
from chat_service.realtime.redis_wire import (
    KEEPALIVE_SECONDS,
    WireSubscriber,
    _Parser,
    open_wire,
    pack,
)

from ..conftest import StartRedis
from ..helpers import WAIT
from ..redis_helpers import redis_client, tcp_url

ANSWER_WITHIN = 2.0


def test_replies_split_anywhere_come_out_whole_and_in_order() -> None:
    data = (
        b"*3\r\n$7\r\nmessage\r\n$4\r\nch\xc3\xa9\r\n$0\r\n\r\n"
        b":42\r\n+OK\r\n$-1\r\n*2\r\n*1\r\n:1\r\n$2\r\nab\r\n-ERR no\r\n"
    )
    for cut in range(len(data) + 1):
        parser = _Parser()
        parser.feed(data[:cut])
        replies = parser.replies()
        parser.feed(data[cut:])
        replies += parser.replies()
        assert replies[:5] == [["message", "ché", ""], 42, "OK", None, [[1], "ab"]]
        assert isinstance(replies[5], ResponseError)
        assert str(replies[5]) == "ERR no"
        assert len(replies) == 6


def test_pack_is_an_array_of_bulk_strings() -> None:
    assert pack(["SET", "ké", 12]) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n12\r\n"


async def test_a_batch_answers_in_order_and_an_error_reply_raises_after_all_are_read(
    redis_server: RedisExecutor,
) -> None:
    url = tcp_url(redis_server)
    async with open_wire(url, client_name="wire-test", answer_within=ANSWER_WITHIN) as wire:
        assert await wire.execute([["SET", "k", "v"], ["GET", "k"], ["INCR", "n"]]) == [
            "OK",
            "v",
            1,
        ]
        with pytest.raises(ResponseError):
            await wire.execute([["INCR", "n"], ["INCR", "k"], ["INCR", "n"]])
        # Every reply of the failed batch was read: the next batch lines up.
        assert await wire.execute([["GET", "n"], ["CLIENT", "GETNAME"]]) == ["3", "wire-test"]


async def test_password_and_database_from_the_url(start_redis: StartRedis) -> None:
    redis = start_redis(password="s3cret-pass")
    url = tcp_url(redis, password="s3cret-pass", db=5)
    async with open_wire(url, client_name="wire-test", answer_within=ANSWER_WITHIN) as wire:
        await wire.execute([["SET", "where", "five"]])
    async with redis_client(redis, db=5) as client:
        assert await client.get("where") == "five"
    with pytest.raises(REDIS_DOWN):
        await _connect(tcp_url(redis, password="wrong"))


async def test_unreachable_redis_is_redis_down(redis_server: RedisExecutor) -> None:
    redis_server.stop()
    with pytest.raises(REDIS_DOWN):
        await _connect(tcp_url(redis_server))


async def _connect(url: str) -> None:
    async with open_wire(url, client_name="wire-test", answer_within=ANSWER_WITHIN):
        pass


async def test_subscriber_confirms_and_receives_in_order(
    redis_server: RedisExecutor, nursery: trio.Nursery
) -> None:
    url = tcp_url(redis_server)
    async with (
        open_wire(url, client_name="sub", answer_within=ANSWER_WITHIN) as wire,
        open_wire(url, client_name="pub", answer_within=ANSWER_WITHIN) as publisher,
    ):
        subscriber = WireSubscriber(wire, ANSWER_WITHIN)
        send, received = trio.open_memory_channel[tuple[str, str]](100)

        async def pump() -> None:
            while True:
                for message in await subscriber.receive():
                    send.send_nowait(message)

        nursery.start_soon(pump)
        with trio.fail_after(WAIT):
            await subscriber.subscribe("a", "b")
            await publisher.execute([["PUBLISH", "a", str(i)] for i in range(50)])
            await publisher.execute([["PUBLISH", "b", "last of b"]])
            assert [await received.receive() for _ in range(51)] == [
                *(("a", str(i)) for i in range(50)),
                ("b", "last of b"),
            ]
            await subscriber.unsubscribe("a")
            assert await publisher.execute([["PUBLISH", "a", "gone"]]) == [0]
        nursery.cancel_scope.cancel()


async def test_idle_subscriber_notices_a_redis_that_stopped_answering(
    redis_server: RedisExecutor, mock_clock: trio.testing.MockClock
) -> None:
    async with open_wire(
        tcp_url(redis_server), client_name="sub", answer_within=ANSWER_WITHIN
    ) as wire:
        subscriber = WireSubscriber(wire, ANSWER_WITHIN)
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        # Connected on real time; from here, time jumps while all wait on Redis.
        mock_clock.autojump_threshold = 0.05
        try:
            started = trio.current_time()
            with pytest.raises(TimeoutError):
                await subscriber.receive()
            assert trio.current_time() - started == pytest.approx(
                KEEPALIVE_SECONDS + ANSWER_WITHIN, abs=0.5
            )
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
