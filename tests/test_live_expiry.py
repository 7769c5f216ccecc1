"""Live expiry: `token_expiring` TOKEN_EXPIRY_NOTICE seconds before `exp`,
`refresh` answered `refreshed` or `invalid_token`, close 4002 at `exp`.

The timed tests run on trio's MockClock (everything here is in this process:
the server, its sockets, the clients), so a minute of token life passes in
no time and the assertions can say exactly when things happen.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio
import trio.testing

from .conftest import StartServer
from .helpers import Client, RunningServer, connect
from .test_rooms import subscribe
from .tokens import SECRET, mint

NOTICE = 30.0
# Virtual seconds a wait may take here: longer than any token below lives.
LONG = 1000.0


@pytest.fixture
async def auth_server(start_server: StartServer) -> RunningServer:
    return await start_server(
        auth_enabled=True,
        auth_jwt_secret=SECRET,
        token_expiry_notice=NOTICE,
        auth_leeway_seconds=0,
        # No heartbeat close in the virtual minutes these tests span.
        heartbeat_interval=LONG,
    )


async def next_frame(client: Client) -> dict[str, Any]:
    """The next frame but pings and presence, however long (virtual) it takes to come."""
    with trio.fail_after(LONG):
        while True:
            frame: dict[str, Any] = json.loads(await client.ws.get_message())
            if frame["type"] not in ("ping", "presence_diff"):
                return frame


async def expect_notice_then_4002(client: Client, exp: int, *, start: float, life: float) -> None:
    """`token_expiring` NOTICE seconds before the token ends, then the close
    with 4002 as it ends, `life` (virtual) seconds after `start`; both may
    come up to 1.5 s early, as `exp` is whole seconds."""
    assert await next_frame(client) == {"type": "token_expiring", "exp": exp}
    assert life - NOTICE - 1.5 <= trio.current_time() - start <= life - NOTICE
    assert await client.closed_code(within=LONG) == 4002
    assert life - 1.5 <= trio.current_time() - start <= life


async def test_unrefreshed_token_gets_notice_then_4002_at_exp(
    autojump_clock: trio.testing.MockClock, auth_server: RunningServer
) -> None:
    exp = int(time.time()) + 60
    async with connect(auth_server.url("a", token=mint(exp=exp))) as client:
        await expect_notice_then_4002(client, exp, start=trio.current_time(), life=60)
    assert auth_server.runtime.hub.connection_count() == 0


async def test_refreshed_token_lives_on_until_its_own_exp(
    autojump_clock: trio.testing.MockClock, auth_server: RunningServer
) -> None:
    first_exp = int(time.time()) + 60
    async with connect(auth_server.url("a", token=mint(exp=first_exp))) as client:
        start = trio.current_time()
        assert (await next_frame(client))["type"] == "token_expiring"
        second_exp = int(time.time()) + 120
        await client.send({"type": "refresh", "token": mint(exp=second_exp)})
        assert await next_frame(client) == {"type": "refreshed", "exp": second_exp}

        # Past the first token's exp: still served.
        await trio.sleep_until(start + 61)
        await client.send({"body": "still here"})
        assert (await next_frame(client))["body"] == "still here"

        # The new token gets its own notice, and its own close.
        await expect_notice_then_4002(client, second_exp, start=start, life=120)


async def test_a_token_close_to_exp_gets_its_notice_at_once(
    autojump_clock: trio.testing.MockClock, auth_server: RunningServer
) -> None:
    exp = int(time.time()) + 10
    async with connect(auth_server.url("a", token=mint(exp=exp))) as client:
        start = trio.current_time()
        assert await next_frame(client) == {"type": "token_expiring", "exp": exp}
        assert trio.current_time() - start < 1


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        (mint(sub="mallory"), "another sub"),
        (mint(expires_in=-60), "expired"),
        (mint("another-secret-of-at-least-32-bytes!"), "Signature verification failed"),
        ("not.a.jwt", "invalid"),
    ],
    ids=["other-sub", "expired", "wrong-key", "malformed"],
)
async def test_a_bad_refresh_is_refused_and_the_old_token_stays(
    auth_server: RunningServer, token: str, detail: str
) -> None:
    async with connect(auth_server.url("a", token=mint())) as client:
        await client.send({"type": "refresh", "token": token})
        error = await client.receive_type("error")
        assert error["code"] == "invalid_token"
        assert detail in error["detail"]
        # It may try again, and succeed.
        await client.send({"type": "refresh", "token": mint(expires_in=600)})
        assert (await client.receive_type("refreshed"))["type"] == "refreshed"
        assert client.welcome["user_id"] == "user-7"


async def test_a_refresh_that_narrows_rooms_unsubscribes_the_rest(
    auth_server: RunningServer,
) -> None:
    async with connect(auth_server.url("team-a", token=mint(rooms=["team-*"]))) as client:
        await subscribe(client, "team-b")
        await subscribe(client, "team-c")
        await client.send({"type": "refresh", "token": mint(rooms=["team-a", "team-c"])})
        assert (await client.receive())["type"] == "refreshed"
        assert await client.receive() == {
            "type": "unsubscribed",
            "room": "team-b",
            "reason": "forbidden",
        }
        await client.send({"type": "subscribe", "room": "team-b"})
        assert (await client.receive_type("error"))["code"] == "forbidden_room"
        await client.send({"room": "team-c", "body": "kept"})
        assert (await client.receive_type("chat"))["room"] == "team-c"


async def test_refresh_without_auth_is_refused(server: RunningServer) -> None:
    async with connect(server.url("a")) as client:
        await client.send({"type": "refresh", "token": mint()})
        assert (await client.receive_type("error"))["code"] == "invalid_token"
