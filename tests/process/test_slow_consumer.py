"""A client that stops reading: it alone is closed with 4001, the room goes
on at full speed, the server's memory stays bounded (measured on a server
process), and the stuck socket keeps its place in MAX_CONNECTIONS until it
is gone.

Why the memory bound holds: fan-out only puts a reference to the one
encoded frame of a message into each member's queue (encode once), and a
member's queue holds at most SEND_QUEUE_SIZE frames. A member that does not
read pins at most its queue's frames plus the one frame Hypercorn is writing
to its socket; everything past that sits in kernel socket buffers, which do
not count in the process's RSS. Once the queue overflows, the client is
closed and its queue emptied, so from then on it pins nothing but that one
frame (and its connection's bookkeeping) until its socket is gone. The
stuck client can therefore raise RSS by about
(SEND_QUEUE_SIZE + 1) frames, here 65 x 32 KB ~ 2 MiB, while the room sends
it more than twice the bound asserted (an unbounded queue would hold all of it).
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import trio

from chat_service.realtime import Connection, HandlerConfig

from ..conftest import StartServer
from ..helpers import WAIT, Client, connect, raw_upgrade
from ..raw_websocket import raw_websocket
from ..server_process import server_process

SENDERS = 50
SEND_QUEUE_SIZE = 64  # more than a round (SENDERS frames): a reader that keeps up never overflows
BODY_CHARS = 32_000
FRAME_BYTES = BODY_CHARS + 200  # the chat frame around one body (ASCII)
WARM_UP_ROUNDS = 3  # the allocator's pools for this traffic exist before the baseline
ROUNDS = 12  # with the stuck client in the room: 12 x 50 x 32 KB = 18 MiB addressed to it
MiB = 1 << 20
# Allowed RSS growth over the warmed-up baseline: the stuck client's queue
# and in-flight frame, plus 6 MiB of allocator slack. Measured: 3.4 to 5.4 MiB
# of growth in all since fan-out writes straight to sockets, and it does not
# grow with the traffic (24 rounds instead of 12: +0.6 MiB). An unbounded
# queue grows by ~18 MiB here (a queue of 5000 measured 27 MiB), more than
# twice the bound, and by 18 MiB more for every 12 rounds.
RSS_BOUND = (SEND_QUEUE_SIZE + 1) * FRAME_BYTES + 6 * MiB


def body(sender: int, seq: int) -> str:
    head = f"{sender:02d}:{seq:04d}:"
    return head + "x" * (BODY_CHARS - len(head))


class Tally:
    """What each reading client has received, in order."""

    def __init__(self, clients: int) -> None:
        self.received: list[list[str]] = [[] for _ in range(clients)]
        self._changed = trio.Event()

    async def read(self, index: int, client: Client) -> None:
        while True:
            frame = json.loads(await client.ws.get_message())
            if frame["type"] == "chat":
                head = frame["body"][:8]
                assert frame["body"] == body(int(head[:2]), int(head[3:7]))
                self.received[index].append(head)
                self._changed.set()

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(WAIT):
            while min(len(r) for r in self.received) < count:
                self._changed = trio.Event()
                await self._changed.wait()


async def test_client_that_never_reads_gets_4001_and_memory_stays_bounded() -> None:
    async with server_process(
        SEND_QUEUE_SIZE=str(SEND_QUEUE_SIZE),
        MAX_BODY_CHARS=str(BODY_CHARS),
        RATE_LIMIT_PER_SECOND="0",
        PRESENCE_EVENTS="false",
        # History full by the end of the warm-up: it holds the same number of
        # frames at the baseline as at the peak, so only the queue can grow.
        HISTORY_SIZE=str(WARM_UP_ROUNDS * SENDERS),
        SHUTDOWN_GRACE_SECONDS="2",
        # The stuck client reads only after the room's traffic, which on a
        # loaded machine takes longer than the default 20 s the kernel lets
        # a peer leave its window closed (test_stuck_peers.py checks that bound).
        TCP_USER_TIMEOUT="0",
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/api/chat-api/ws/busy"
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(connect(url, receive_buffer_size=1 << 20))
                for _ in range(SENDERS)
            ]
            tally = Tally(SENDERS)
            sent = 0

            async def send_round() -> None:
                nonlocal sent
                for sender, client in enumerate(clients):
                    await client.send({"body": body(sender, sent // SENDERS)})
                    sent += 1
                await tally.wait_for(sent)

            async with trio.open_nursery() as readers:
                for index, client in enumerate(clients):
                    readers.start_soon(tally.read, index, client)
                for _ in range(WARM_UP_ROUNDS):
                    await send_round()
                baseline = peak = server.rss_bytes()
                async with raw_websocket(
                    server.port, "/api/chat-api/ws/busy", receive_buffer=4096
                ) as stuck:
                    await stuck.receive_frame()  # its welcome: it is in the room
                    for _ in range(ROUNDS):  # and now it does not read
                        await send_round()
                        peak = max(peak, server.rss_bytes())
                    # Still there, at the end of the room's traffic: it reads
                    # what the kernel buffered, then the close frame.
                    close_code = await stuck.close_code()
                    print(
                        f"RSS baseline {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB;"
                        f" the stuck client got {stuck.bytes_received / 1024:.0f} KiB"
                        f" of {ROUNDS * SENDERS * BODY_CHARS / MiB:.1f} MiB"
                    )
                readers.cancel_scope.cancel()

        assert close_code == 4001
        assert peak - baseline <= RSS_BOUND, f"RSS grew by {(peak - baseline) / MiB:.1f} MiB"
        expected_per_sender = WARM_UP_ROUNDS + ROUNDS
        first = tally.received[0]
        assert len(first) == SENDERS * expected_per_sender
        assert all(r == first for r in tally.received), "every member gets one order"
    assert server.error_lines() == []


async def test_stuck_client_holds_its_place_until_it_reads_its_4001(
    start_server: StartServer,
) -> None:
    gone = trio.Event()

    async def on_disconnect(conn: Connection) -> None:
        if conn.close_reason and conn.close_reason[0] == 4001:
            gone.set()  # its handler returns, and gives back its place, right after this

    server = await start_server(
        max_connections=2,
        send_queue_size=4,
        presence_events=False,
        make_handler_config=lambda b: HandlerConfig(b, on_disconnect=on_disconnect),
    )
    async with connect(server.url("s")) as sender:
        async with raw_websocket(server.port, "/api/chat-api/ws/s", receive_buffer=4096) as stuck:
            await stuck.receive_frame()  # its welcome; from now on it does not read
            (stuck_conn,) = [
                c for c in server.runtime.hub.connections() if c.id != sender.client_id
            ]
            for _ in range(1000):
                await sender.send({"body": "x" * 4000})
                await sender.receive_type("chat")  # delivered to the stuck client's queue too
                if stuck_conn.close_reason:
                    break
            assert stuck_conn.close_reason == (4001, "slow consumer: send queue overflowed")
            assert stuck_conn.queued == 0  # its frames are freed while its socket is stuck
            status, _, _ = await raw_upgrade(server.port, "/api/chat-api/ws/s")
            assert status == 503  # the stuck socket still counts
            assert await stuck.close_code() == 4001  # once it reads
        with trio.fail_after(WAIT):
            await gone.wait()
        async with connect(server.url("s")) as newcomer:
            assert newcomer.welcome["type"] == "welcome"
