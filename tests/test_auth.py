"""AUTH_ENABLED=true: HS256 JWTs from the header or the token parameter;
anything else is refused with 401 before the upgrade."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from .conftest import StartServer
from .helpers import RunningServer, connect, raw_upgrade

SECRET = "test-secret-of-at-least-thirty-two-bytes"


def token(*, sub: str = "user-7", expires_in: float = 60, secret: str = SECRET) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + expires_in)}, secret, "HS256")


@pytest.fixture
async def auth_server(start_server: StartServer) -> RunningServer:
    return await start_server(auth_enabled=True, auth_jwt_secret=SECRET)


async def test_token_in_header_sets_user_id(auth_server: RunningServer) -> None:
    headers = [("Authorization", f"Bearer {token()}")]
    async with connect(auth_server.url("a"), extra_headers=headers) as client:
        assert client.welcome["user_id"] == "user-7"


async def test_token_in_query_parameter(auth_server: RunningServer) -> None:
    async with connect(auth_server.url("a", token=token(sub="via-query"))) as client:
        assert client.welcome["user_id"] == "via-query"


async def test_user_id_parameter_cannot_override_the_token(auth_server: RunningServer) -> None:
    async with connect(auth_server.url("a", token=token(), user_id="mallory")) as client:
        assert client.welcome["user_id"] == "user-7"


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Authorization: Bearer not.a.jwt\r\n",
        f"Authorization: Bearer {token(secret='another-secret-of-thirty-two-bytes!!')}\r\n",
        f"Authorization: Bearer {token(expires_in=-30)}\r\n",
        f"Authorization: Basic {token()}\r\n",
        "Authorization: Bearer " + jwt.encode({"sub": "x"}, SECRET, "HS256") + "\r\n",
    ],
    ids=["missing", "malformed", "wrong-signature", "expired", "not-bearer", "no-exp"],
)
async def test_bad_token_is_401_before_upgrade(auth_server: RunningServer, header: str) -> None:
    status, headers, body = await raw_upgrade(auth_server.port, "/api/chat-api/ws", header)
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert json.loads(body)["error"] == "unauthorized"
    assert auth_server.runtime.hub.connection_count() == 0


async def test_expired_token_in_query_is_401(auth_server: RunningServer) -> None:
    path = f"/api/chat-api/ws/r?token={token(expires_in=-30)}"
    status, headers, _ = await raw_upgrade(auth_server.port, path)
    assert (status, headers["www-authenticate"]) == (401, "Bearer")
