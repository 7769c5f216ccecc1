"""The service's log as an operator reads it: `python -m chat_service` with
LOG_FORMAT=json at DEBUG, on a real Redis, with real clients; every line is
one JSON object with the event's fields, and no message body or token
appears in any line."""

from __future__ import annotations

import json
import secrets

import trio
from pytest_redis.executor import RedisExecutor

from ..helpers import connect, raw_upgrade
from ..redis_helpers import tcp_url
from ..server_process import server_process
from ..tokens import SECRET, mint


async def test_json_lines_carry_the_fields_and_never_a_body_or_token(
    redis_server: RedisExecutor,
) -> None:
    marker = "MARKER" + secrets.token_hex(8)
    token = mint(sub="alice")
    settings = {
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "AUTH_ENABLED": "true",
        "AUTH_JWT_SECRET": SECRET,
        "REDIS_URL": tcp_url(redis_server),
    }
    async with server_process(**settings) as service:
        # A marker as the token, in the query and in the header: refused.
        assert (await raw_upgrade(service.port, f"/api/chat-api/ws/r?token={marker}"))[0] == 401
        header = f"Authorization: Bearer {marker}\r\n"
        assert (await raw_upgrade(service.port, "/api/chat-api/ws/r", header))[0] == 401
        async with connect(service.url("r", token=token)) as alice:
            await alice.send({"body": marker, "client_msg_id": "m1"})
            assert (await alice.receive_type("chat"))["body"] == marker
            await alice.send({"type": "refresh", "token": marker})
            assert (await alice.receive_type("error"))["code"] == "invalid_token"
            await alice.send({"room": "r", "body": marker * 2, "bogus": marker})
            await alice.receive_type("chat")
            client_id = alice.client_id
        with trio.fail_after(10):
            await service.wait_for_line('"message": "client disconnected"')
    assert service.log_lines
    records = [json.loads(line) for line in service.log_lines]  # every line is one object
    for record in records:
        assert {"ts", "level", "logger", "message"} <= set(record), record
    for line in service.log_lines:
        assert marker not in line, line
        assert token not in line, line
    connected = [r for r in records if r["message"] == "client connected"]
    assert [(r["client_id"], r["user_id"], r["room"]) for r in connected] == [
        (client_id, "alice", "r")
    ]
    (left,) = [r for r in records if r["message"] == "client disconnected"]
    assert (left["client_id"], left["user_id"], left["room"]) == (client_id, "alice", "r")
    assert any(r["message"].startswith("ready listening=") for r in records)
