"""GET /metrics: real traffic through a real server, then a scrape parsed
with prometheus-client's own parser; every counter moves by exactly what
happened."""

from __future__ import annotations

import trio
import trio.testing

from chat_service.config import Config

from .conftest import StartServer
from .helpers import WAIT, RunningServer, connect, raw_request, raw_upgrade, scrape, value
from .raw_websocket import raw_websocket


async def test_connections_and_messages_are_counted(server: RunningServer) -> None:
    before = await scrape(server.port)
    async with connect(server.url("r")) as alice, connect(server.url("r")) as bob:
        for n in range(3):
            await alice.send({"body": f"m{n}"})
        for client in (alice, bob):
            for n in range(3):
                assert (await client.receive_type("chat"))["body"] == f"m{n}"
        during = await scrape(server.port)
        assert value(during, "chat_connections_open") == 2
        assert value(during, "chat_rooms_local") == 1
    with trio.fail_after(WAIT):
        await server.runtime.hub.wait_empty()
    after = await scrape(server.port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("chat_connections_accepted_total") == 2
    assert delta("chat_messages_received_total") == 3
    assert delta("chat_messages_published_total") == 3
    assert delta("chat_messages_delivered_total") == 6  # 3 messages, 2 members each
    assert delta("chat_fanout_seconds_count") == 3  # one per fan-out, not per recipient
    assert delta("chat_connections_closed_total", code="peer") == 2
    assert delta("chat_room_subscriptions_per_connection_count") == 2
    assert delta("chat_room_subscriptions_per_connection_bucket", le="1.0") == 2
    assert value(after, "chat_connections_open") == 0
    assert value(after, "chat_rooms_local") == 0


async def test_retries_and_replays_are_counted(server: RunningServer) -> None:
    async with connect(server.url("h")) as alice:
        await alice.send({"body": "once", "client_msg_id": "c1"})
        first = await alice.receive_type("chat")
        await alice.send({"body": "once", "client_msg_id": "c1"})
        assert (await alice.receive_type("chat"))["duplicate"] is True
    since = {"epoch": alice.subscribed["epoch"], "seq": first["seq"] - 1}
    async with connect(server.url("elsewhere")) as again:
        await again.send({"type": "subscribe", "room": "h", "since": since})
        assert (await again.receive_type("subscribed"))["recovered"] is True
        assert (await again.receive_type("chat"))["body"] == "once"
    samples = await scrape(server.port)
    assert value(samples, "chat_messages_received_total") == 2
    assert value(samples, "chat_messages_published_total") == 1
    assert value(samples, "chat_messages_dropped_total", reason="duplicate") == 1
    assert value(samples, "chat_messages_replayed_total") == 1


async def test_every_frame_error_is_counted_by_code(server: RunningServer) -> None:
    sent = {
        "invalid_json": "{not json",
        "invalid_message": '{"type":"chat"}',
        "unknown_type": '{"type":"dance"}',
        "body_too_long": {"body": "x" * (Config().max_body_chars + 1)},
        "not_subscribed": {"body": "hi", "room": "elsewhere"},
        "binary_not_supported": b"\x00",
    }
    async with connect(server.url("e")) as client:
        for code, frame in sent.items():
            await client.send(frame)
            error = await client.receive_type("error")
            assert error["code"] == code
    samples = await scrape(server.port)
    for code in sent:
        assert value(samples, "chat_frame_errors_total", code=code) == 1, code


async def test_refusals_before_the_upgrade_are_counted_by_reason(
    start_server: StartServer,
) -> None:
    server = await start_server(max_connections=1)
    assert (await raw_upgrade(server.port, "/api/chat-api/ws/bad%20room"))[0] == 400
    assert (await raw_upgrade(server.port, "/api/chat-api/ws?user_id=a%2Fb"))[0] == 400
    assert (await raw_upgrade(server.port, "/api/chat-api/ws?user_id=b%2Fc"))[0] == 400
    async with connect(server.url("full")):
        assert (await raw_upgrade(server.port, "/api/chat-api/ws/full"))[0] == 503
        samples = await scrape(server.port)
    assert value(samples, "chat_connections_refused_total", reason="invalid_room") == 1
    assert value(samples, "chat_connections_refused_total", reason="invalid_user_id") == 2
    assert value(samples, "chat_connections_refused_total", reason="at_capacity") == 1
    assert value(samples, "chat_connections_accepted_total") == 1


async def test_a_rate_limited_client_is_counted_then_its_1008(start_server: StartServer) -> None:
    server = await start_server(
        rate_limit_per_second=0.25, rate_limit_burst=1, rate_limit_strikes=3
    )
    async with connect(server.url("f")) as flooder:
        await flooder.send({"body": "through"})
        await flooder.receive_type("chat")
        for _ in range(2):
            await flooder.send({"body": "refused"})
            assert (await flooder.receive_type("error"))["code"] == "rate_limited"
        await flooder.send({"body": "third strike"})
        assert await flooder.closed_code() == 1008
    with trio.fail_after(WAIT):
        await server.runtime.hub.wait_empty()
    samples = await scrape(server.port)
    assert value(samples, "chat_rate_limit_refusals_total") == 2
    assert value(samples, "chat_frame_errors_total", code="rate_limited") == 2
    assert value(samples, "chat_connections_closed_total", code="1008") == 1
    assert value(samples, "chat_messages_received_total") == 1


async def test_a_heartbeat_timeout_is_counted(start_server: StartServer) -> None:
    server = await start_server(heartbeat_interval=0.05, heartbeat_timeout=0.05)
    async with connect(server.url("quiet")) as quiet:
        assert await quiet.closed_code() == 4000  # it never answers the pings
    with trio.fail_after(WAIT):
        await server.runtime.hub.wait_empty()
    samples = await scrape(server.port)
    assert value(samples, "chat_heartbeat_timeouts_total") == 1
    assert value(samples, "chat_connections_closed_total", code="4000") == 1


BODY_CHARS = 30_000


async def test_a_slow_consumer_is_counted(start_server: StartServer) -> None:
    server = await start_server(
        send_queue_size=4,
        max_body_chars=BODY_CHARS,
        max_message_bytes=4 * BODY_CHARS,
        presence_events=False,
    )
    path = "/api/chat-api/ws/slow"
    async with raw_websocket(server.port, path, receive_buffer=4096) as stuck:
        await stuck.receive_frame()  # its welcome; from now on it does not read
        (conn,) = server.runtime.hub.connections()
        async with connect(f"ws://127.0.0.1:{server.port}{path}") as sender:
            with trio.fail_after(WAIT):
                while conn.close_reason is None:
                    await sender.send({"body": "x" * BODY_CHARS})
                    await sender.receive_type("chat")
        await stuck.stream.aclose()
    with trio.fail_after(WAIT):
        await server.runtime.hub.wait_empty()
    samples = await scrape(server.port)
    assert value(samples, "chat_slow_consumer_disconnects_total") == 1
    assert value(samples, "chat_connections_closed_total", code="4001") == 1
    assert value(samples, "chat_connections_closed_total", code="peer") == 1  # the sender


async def test_two_servers_in_one_process_count_apart(start_server: StartServer) -> None:
    one = await start_server()
    two = await start_server()
    async with connect(one.url("r")):
        assert value(await scrape(one.port), "chat_connections_accepted_total") == 1
        assert value(await scrape(two.port), "chat_connections_accepted_total") == 0


async def test_metrics_without_redis_have_no_redis_gauge(server: RunningServer) -> None:
    samples = await scrape(server.port)
    assert not any(name.startswith("chat_redis_connected") for name, _ in samples)


async def test_metrics_port_serves_the_metrics_alone(start_server: StartServer) -> None:
    server = await start_server(metrics_port=0)
    (bind,) = server.runtime.metrics_binds
    metrics_port = int(bind.rsplit(":", 1)[1])
    assert metrics_port != server.port
    async with connect(server.url("r")):
        assert value(await scrape(metrics_port), "chat_connections_open") == 1
    status, _, _ = await raw_request(
        metrics_port, b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    assert status == 404  # the chat service is not served there
    assert (await raw_upgrade(metrics_port, "/api/chat-api/ws"))[0] != 101


async def test_presence_diffs_are_counted(
    start_server: StartServer, mock_clock: trio.testing.MockClock
) -> None:
    server = await start_server()  # PRESENCE_INTERVAL 1 s
    async with connect(server.url("p", user_id="w")) as watcher:
        async with connect(server.url("p", user_id="d")) as dee:
            mock_clock.jump(1.0)
            for member in (watcher, dee):
                assert (await member.receive_presence())["users"] == 2
            samples = await scrape(server.port)
    assert value(samples, "chat_presence_diffs_sent_total") == 2  # one frame to each member
