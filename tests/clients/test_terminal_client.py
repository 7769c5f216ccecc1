"""The terminal client against a live service: `python -m chat_service.client`
processes, driven through pipes, and `python -m chat_service` servers."""

from __future__ import annotations

from pathlib import Path

import port_for
from pytest_redis.executor import RedisExecutor

from ..client_process import client_process
from ..redis_helpers import tcp_url
from ..server_process import server_process
from ..tokens import SECRET, mint

# Reconnect quickly: the test waits for the restarted instance to be found.
FAST = ("--reconnect-min", "0.1", "--reconnect-max", "0.5")


async def test_two_clients_hold_a_conversation_through_their_pipes() -> None:
    async with (
        server_process() as server,
        client_process(server.url("general"), "--user-id", "alice", "--json") as alice,
        client_process(server.url("general"), "--user-id", "bob", "--json") as bob,
        client_process(server.url("elsewhere"), "--json") as outsider,
    ):
        await alice.err.wait_for("connected as alice")
        await bob.err.wait_for("connected as bob")
        await outsider.err.wait_for("connected as anonymous")
        await alice.say("hi bob")
        await bob.wait_for_bodies("hi bob")
        await bob.say("hi alice, <b>not bold</b>")
        await alice.wait_for_bodies("hi bob", "hi alice, <b>not bold</b>")
        await alice.end_input()
        await bob.end_input()
        await outsider.end_input()
        assert await alice.wait_exit() == 0
        assert await bob.wait_exit() == 0
        assert await outsider.wait_exit() == 0
    expected = [("alice", "hi bob", 1), ("bob", "hi alice, <b>not bold</b>", 2)]
    for client in (alice, bob):
        assert [(f["user_id"], f["body"], f["seq"]) for f in client.frames()] == expected
    assert outsider.frames() == []


async def test_a_client_shows_every_room_it_is_in_and_says_lines_in_the_first() -> None:
    async with (
        server_process() as server,
        client_process(server.url("general"), "--room", "random", "--json") as both,
        client_process(server.url("random"), "--user-id", "rita", "--json") as rita,
    ):
        await both.err.wait_for("#random: joined")
        await rita.err.wait_for("#random: joined")
        await rita.say("in random")
        await both.wait_for_bodies("in random")
        await both.say("in general")
        await both.wait_for_bodies("in general")
        await rita.end_input()
        await both.end_input()
        assert await both.wait_exit() == 0
        assert await rita.wait_exit() == 0
    assert [(f["room"], f["body"]) for f in both.frames()] == [
        ("random", "in random"),
        ("general", "in general"),
    ]
    assert [f["body"] for f in rita.frames()] == ["in random"]


async def test_a_restart_that_loses_history_is_reported() -> None:
    """Without Redis, a restarted instance has a new epoch: the client says
    that the room's history could not be recovered, and chats on."""
    port = str(port_for.select_random())
    async with server_process(PORT=port) as first:
        async with client_process(first.url("general"), "--json", *FAST) as client:
            await client.say("before")
            await client.wait_for_bodies("before")
            first.process.terminate()
            assert await first.wait_exit() == 0
            async with server_process(PORT=port):
                await client.err.wait_for(r"#general: history since seq 1 could not be recovered")
                await client.say("after")
                await client.wait_for_bodies("after")
                await client.end_input()
                assert await client.wait_exit() == 0
    assert [(f["seq"], f["body"]) for f in client.frames()] == [(1, "before"), (1, "after")]


async def test_lines_print_for_people_with_room_and_sender() -> None:
    async with (
        server_process() as server,
        client_process(server.url("general"), "--user-id", "carol", "--once") as carol,
    ):
        await carol.say("a line with an \x1b[31mescape")
        await carol.end_input()
        assert await carol.wait_exit() == 0
    # HH:MM:SS #room user: body, with the terminal escape written out.
    assert len(carol.out.lines) == 1
    assert carol.out.lines[0][8:] == " #general carol: a line with an \\u001b[31mescape"


async def test_once_says_stdin_waits_for_its_echo_and_exits_0() -> None:
    async with (
        server_process() as server,
        client_process(server.url("general"), "--json") as listener,
    ):
        await listener.err.wait_for("connected")
        async with client_process(server.url("general"), "--once", "--json") as once:
            await once.say("hi", "and bye")
            await once.end_input()
            assert await once.wait_exit() == 0
        assert [f["body"] for f in once.frames()] == ["hi", "and bye"]
        await listener.wait_for_bodies("hi", "and bye")


async def test_once_exits_1_when_the_server_refuses_a_line() -> None:
    async with (
        server_process(MAX_BODY_CHARS="5") as server,
        client_process(server.url("general"), "--once", "--json") as once,
    ):
        await once.say("far too long", "ok")
        await once.end_input()
        assert await once.wait_exit() == 1
        await once.err.wait_for("error body_too_long")
    assert [f["body"] for f in once.frames()] == ["ok"]


async def test_a_token_names_the_user_and_a_refused_one_exits_1() -> None:
    dora_token = mint(SECRET, sub="dora")
    async with (
        server_process(AUTH_ENABLED="true", AUTH_JWT_SECRET=SECRET) as server,
        client_process(server.url("general"), "--once", "--json", "--token", dora_token) as dora,
        client_process(server.url("general"), "--once", "--token", "not-a-jwt") as refused,
    ):
        await dora.say("signed in")
        await dora.end_input()
        await refused.end_input()
        assert await dora.wait_exit() == 0
        assert await refused.wait_exit() == 1
        await refused.err.wait_for("refused: HTTP 401")
    assert [(f["user_id"], f["body"]) for f in dora.frames()] == [("dora", "signed in")]


async def test_a_token_file_is_read_again_when_the_token_expires(tmp_path: Path) -> None:
    """The server says at once that the first token expires (its notice is
    longer than the token has left); the client answers with the token now in
    the file, and chats on."""
    token_file = tmp_path / "token"
    token_file.write_text(mint(SECRET, sub="dora", expires_in=600) + "\n")
    expiring = {"AUTH_ENABLED": "true", "AUTH_JWT_SECRET": SECRET, "TOKEN_EXPIRY_NOTICE": "25"}
    first = mint(SECRET, sub="dora", expires_in=20)
    args = ("--once", "--json", "--token", first, "--token-file", str(token_file))
    async with (
        server_process(**expiring) as server,
        client_process(server.url("general"), *args) as dora,
    ):
        await dora.err.wait_for("token refreshed, valid until")
        await dora.say("still signed in")
        await dora.end_input()
        assert await dora.wait_exit() == 0
    assert [f["body"] for f in dora.frames()] == ["still signed in"]


async def test_a_restart_of_the_clients_instance_loses_nothing(
    redis_server: RedisExecutor,
) -> None:
    """The listener's instance stops (1001) while the other instance carries
    on; what was said meanwhile reaches the listener once it is back, via
    `since`, exactly once and in order."""
    redis = {"REDIS_URL": tcp_url(redis_server)}
    port = str(port_for.select_random())
    async with (
        server_process(**redis) as other,
        client_process(other.url("hall"), "--user-id", "sender", "--json") as sender,
    ):
        async with server_process(PORT=port, **redis) as first:
            async with client_process(first.url("hall"), "--json", *FAST) as listener:
                await listener.err.wait_for("connected")
                await sender.say("before")
                await listener.wait_for_bodies("before")
                first.process.terminate()
                assert await first.wait_exit() == 0
                await listener.err.wait_for(r"disconnected \(1001\)")
                await sender.say("while away 1", "while away 2")
                await sender.wait_for_bodies("while away 1", "while away 2")
                async with server_process(PORT=port, **redis):
                    await listener.err.wait_for("recovered everything after seq 1")
                    await sender.say("after")
                    frames = await listener.wait_for_bodies("after")
                    await listener.end_input()
                    assert await listener.wait_exit() == 0
        await sender.end_input()
        assert await sender.wait_exit() == 0
    assert [(f["seq"], f["body"]) for f in frames] == list(
        enumerate(["before", "while away 1", "while away 2", "after"], start=1)
    )
    assert len([line for line in listener.err.lines if "connected as" in line]) == 2
    assert not [line for line in listener.err.lines if "could not be recovered" in line]
