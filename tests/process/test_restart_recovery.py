"""An instance restarted under load (SIGTERM drain, then started again):
its clients get 1001, reconnect to the new process with `since`/`epoch` in
the query and miss nothing, while senders on another instance never stop."""

from __future__ import annotations

import json
from typing import Any

import trio
from pytest_redis.executor import RedisExecutor
from trio_websocket import ConnectionClosed

from ..helpers import WAIT, Client, connect
from ..redis_helpers import tcp_url
from ..server_process import ServerProcess, server_process

ROOM = "hall"
LISTENERS = 4
SENDERS = 2
PER_SENDER = 150
TOTAL = SENDERS * PER_SENDER
# Two start-ups and a drain on a loaded machine, with everything else.
DEADLINE = WAIT * 6


async def connected(server: ServerProcess) -> None:
    """Return once `server` is connected to Redis (before, a room's
    `subscribed` has no epoch to recover from)."""
    await server.wait_for_line(r"redis connected")


async def test_a_restarted_instances_clients_recover_everything(
    redis_server: RedisExecutor,
) -> None:
    settings = {"REDIS_URL": tcp_url(redis_server), "RATE_LIMIT_PER_SECOND": "0"}
    seen: list[list[dict[str, Any]]] = [[] for _ in range(LISTENERS)]
    epochs: list[str] = [""] * LISTENERS
    close_codes: list[int] = [0] * LISTENERS
    missed: list[int] = [0] * LISTENERS  # at the 1001: what recovery has to give back
    reference: list[dict[str, Any]] = []
    under_way, signalled = trio.Event(), trio.Event()

    async def before(index: int, server: ServerProcess, *, task_status: Any) -> None:
        async with connect(server.url(ROOM)) as client:
            epochs[index] = client.subscribed["epoch"]
            task_status.started()
            try:
                while True:
                    frame = json.loads(await client.ws.get_message())
                    if frame["type"] == "chat":
                        seen[index].append(frame)
            except ConnectionClosed as closed:
                close_codes[index] = closed.reason.code
                missed[index] = TOTAL - len(seen[index])

    async def after(index: int, server: ServerProcess) -> None:
        last = seen[index][-1]["seq"] if seen[index] else 0
        async with connect(server.url(ROOM, since=str(last), epoch=epochs[index])) as client:
            assert client.subscribed["recovered"] is True, client.subscribed
            while len(seen[index]) < TOTAL:
                seen[index].append(await client.receive_type("chat"))

    async def send(client: Client, name: str) -> None:
        for n in range(PER_SENDER):
            await client.send({"body": f"{name}{n}"})
            if n == PER_SENDER // 3:
                await signalled.wait()  # the rest during the drain and the restart

    async def observe(client: Client) -> None:
        while len(reference) < TOTAL:
            reference.append(await client.receive_type("chat"))
            if len(reference) == TOTAL // 5:
                under_way.set()

    with trio.fail_after(DEADLINE):
        async with server_process(**settings) as other:
            await connected(other)
            async with (
                connect(other.url(ROOM)) as observer,
                connect(other.url(ROOM)) as first_sender,
                connect(other.url(ROOM)) as second_sender,
                trio.open_nursery() as load,
            ):
                async with server_process(**settings) as old, trio.open_nursery() as listeners:
                    await connected(old)
                    for index in range(LISTENERS):
                        await listeners.start(before, index, old)
                    load.start_soon(observe, observer)
                    load.start_soon(send, first_sender, "a")
                    load.start_soon(send, second_sender, "b")
                    await under_way.wait()
                    old.process.terminate()  # SIGTERM: the drain, then 1001
                    signalled.set()
                    assert await old.wait_exit() == 0
                async with server_process(**settings) as again, trio.open_nursery() as listeners:
                    await connected(again)
                    for index in range(LISTENERS):
                        listeners.start_soon(after, index, again)

    assert close_codes == [1001] * LISTENERS
    assert all(count > 0 for count in missed), missed
    assert [frame["seq"] for frame in reference] == list(range(1, TOTAL + 1))
    for frames in seen:
        assert frames == reference, "every message once, in seq order, across the restart"
