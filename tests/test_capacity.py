"""MAX_CONNECTIONS and MAX_CONNECTIONS_PER_USER: refusals before the upgrade."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import jsonschema
import trio
from trio_websocket import ConnectionRejected

from chat_service.api.spec import build_openapi
from chat_service.realtime import Broadcaster, Connection, HandlerConfig

from .conftest import StartServer
from .helpers import WAIT, connect, raw_upgrade


async def test_connection_max_plus_one_gets_503_before_the_upgrade(
    start_server: StartServer,
) -> None:
    left = trio.Event()

    async def on_disconnect(conn: Connection) -> None:
        left.set()  # the handler returns, and gives back its slot, right after this

    def hooks(broadcaster: Broadcaster) -> HandlerConfig:
        return HandlerConfig(broadcaster, on_disconnect=on_disconnect)

    server = await start_server(max_connections=2, make_handler_config=hooks)
    async with connect(server.url()), connect(server.url()) as second:
        status, headers, body = await raw_upgrade(server.port, "/api/chat-api/ws")
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"] == "at_capacity"
        await second.ws.aclose()
        with trio.fail_after(WAIT):
            await left.wait()
        async with connect(server.url()) as third:  # the slot is free again
            assert third.welcome["type"] == "welcome"


async def test_concurrent_upgrades_never_pass_the_limit(start_server: StartServer) -> None:
    server = await start_server(max_connections=3)
    admitted: list[int] = []
    refused: list[int] = []
    all_answered = trio.Event()

    async def try_to_connect(n: int) -> None:
        try:
            async with connect(server.url("c")):
                admitted.append(n)
                if len(admitted) + len(refused) == 10:
                    all_answered.set()
                await all_answered.wait()  # hold the slot until everyone has an answer
        except* ConnectionRejected as group:
            rejected = group.exceptions[0]
            assert isinstance(rejected, ConnectionRejected)
            assert rejected.status_code == 503
            refused.append(n)
            if len(admitted) + len(refused) == 10:
                all_answered.set()

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(try_to_connect, n)
    assert (len(admitted), len(refused)) == (3, 7)


async def test_connections_per_user_are_limited(start_server: StartServer) -> None:
    server = await start_server(max_connections_per_user=2)
    async with AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(connect(server.url(user_id="alice")))
        status, _, body = await raw_upgrade(server.port, "/api/chat-api/ws?user_id=alice")
        assert status == 429
        refusal = json.loads(body)
        assert refusal["error"] == "too_many_connections"
        documented = build_openapi()["paths"]["/api/chat-api/ws"]["get"]["responses"]["429"]
        schema = documented["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator(schema).validate(refusal)
        async with connect(server.url(user_id="bob")) as bob:
            assert bob.welcome["user_id"] == "bob"
