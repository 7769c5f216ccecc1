"""Sequence numbers and safe retries on one instance without Redis (real
server, real clients)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from .conftest import StartServer
from .helpers import RunningServer, connect


async def test_every_member_sees_seq_1_to_n_in_one_order(server: RunningServer) -> None:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(server.url("n"))) for _ in range(3)]
        for n in range(30):
            await clients[n % 3].send({"body": str(n)})
        for client in clients:
            frames = [frame for frame in await client.drain_until_sync() if frame["type"] == "chat"]
            frames += [await client.receive_type("chat") for _ in range(30 - len(frames))]
            assert [frame["seq"] for frame in frames] == list(range(1, 31))
        late = await stack.enter_async_context(connect(server.url("n")))
        assert (late.subscribed["seq"], late.subscribed["epoch"]) == (
            30,
            clients[0].subscribed["epoch"],
        )


async def test_a_retry_is_published_once_and_the_sender_gets_the_original(
    server: RunningServer,
) -> None:
    async with connect(server.url("d", user_id="ann")) as reader:
        async with connect(server.url("d", user_id="bo")) as sender:
            await sender.send({"body": "hello", "client_msg_id": "m1"})
            original = await sender.receive_type("chat")
        # The sender reconnects (the answer may have been lost) and retries.
        async with connect(server.url("d", user_id="bo")) as sender:
            await sender.send({"body": "hello", "client_msg_id": "m1"})
            again = await sender.receive_type("chat")
            assert again == original | {"duplicate": True}
            await sender.send({"body": "hello", "client_msg_id": "m2"})  # a new id: new message
            assert (await sender.receive_type("chat"))["seq"] == original["seq"] + 1
        # Another user may use the same id.
        async with connect(server.url("d", user_id="cy")) as other:
            await other.send({"body": "mine", "client_msg_id": "m1"})
            assert "duplicate" not in await other.receive_type("chat")
        bodies = [
            (frame["body"], frame.get("duplicate"))
            for frame in await reader.drain_until_sync()
            if frame["type"] == "chat"
        ]
        assert bodies == [("hello", None), ("hello", None), ("mine", None)]


async def test_presence_diffs_never_reorder_chat(start_server: StartServer) -> None:
    """A presence diff queued beside chat frames (frames a client can do
    without go in by another door) must not let a later chat frame overtake
    an earlier one."""
    server = await start_server(presence_interval=0.01)
    async with connect(server.url("p")) as reader, connect(server.url("p")) as sender:
        async with trio.open_nursery() as nursery:

            async def come_and_go() -> None:
                while True:
                    async with connect(server.url("p")):
                        pass

            nursery.start_soon(come_and_go)
            for n in range(500):
                await sender.send({"body": str(n)})
            await sender.drain_until_sync()
            seqs: list[int] = []
            while len(seqs) < 500:
                seqs.append((await reader.receive_type("chat"))["seq"])
            nursery.cancel_scope.cancel()
        assert seqs == list(range(1, 501))
