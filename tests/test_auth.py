"""AUTH_ENABLED=true: JWTs (HS256 with the secret, RS256/ES256 with a public
key) from the header or the token parameter, with audience, issuer and
leeway; anything else is refused with 401 before the upgrade."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from .conftest import StartServer
from .helpers import RunningServer, connect, raw_upgrade
from .tokens import SECRET, ec_private_key, forge, mint, public_pem, rsa_private_key

AUDIENCE = "chat"
ISSUER = "https://idp.example.com/"


def token(*, sub: str = "user-7", expires_in: float = 3600, secret: str = SECRET) -> str:
    return mint(secret, sub=sub, expires_in=expires_in)


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


async def test_token_with_an_audience_is_accepted_when_none_is_configured(
    auth_server: RunningServer,
) -> None:
    async with connect(auth_server.url("a", token=mint(aud="someone"))) as client:
        assert client.welcome["user_id"] == "user-7"


RSA_KEY = rsa_private_key()
EC_KEY = ec_private_key()


def _idp_token(key: Any = RSA_KEY, algorithm: str = "RS256", **claims: Any) -> str:
    return mint(key, algorithm, **({"aud": AUDIENCE, "iss": ISSUER} | claims))


@pytest.fixture
async def rsa_server(start_server: StartServer) -> RunningServer:
    return await start_server(
        auth_enabled=True,
        auth_jwt_public_key=public_pem(RSA_KEY),
        auth_jwt_audience=AUDIENCE,
        auth_jwt_issuer=ISSUER,
        auth_leeway_seconds=5,
    )


async def test_rs256_token_from_the_identity_provider(rsa_server: RunningServer) -> None:
    async with connect(rsa_server.url("a", token=_idp_token(sub="alice"))) as client:
        assert client.welcome["user_id"] == "alice"


async def test_es256_token_with_an_ec_public_key(start_server: StartServer) -> None:
    server = await start_server(auth_enabled=True, auth_jwt_public_key=public_pem(EC_KEY))
    async with connect(server.url("a", token=mint(EC_KEY, "ES256", sub="bob"))) as client:
        assert client.welcome["user_id"] == "bob"


async def test_leeway_forgives_a_little_clock_skew(rsa_server: RunningServer) -> None:
    skewed = _idp_token(exp=int(time.time()) - 2, nbf=int(time.time()) + 2)
    async with connect(rsa_server.url("a", token=skewed)) as client:
        assert client.welcome["user_id"] == "user-7"


# The refused tokens are made when the module loads and used minutes later in
# a full run: an hour keeps each refused for its own reason, not for expiry.
_HOUR = 3600


def _claims(**changes: Any) -> dict[str, Any]:
    return {
        "sub": "user-7",
        "exp": int(time.time()) + _HOUR,
        "aud": AUDIENCE,
        "iss": ISSUER,
    } | changes


_RSA_PUBLIC_PEM = public_pem(RSA_KEY).encode()

REFUSED_TOKENS = {
    "wrong-audience": _idp_token(aud="another-service"),
    "no-audience": mint(RSA_KEY, "RS256", iss=ISSUER),
    "wrong-issuer": _idp_token(iss="https://evil.example.com/"),
    "no-issuer": mint(RSA_KEY, "RS256", aud=AUDIENCE),
    "expired-beyond-leeway": _idp_token(exp=int(time.time()) - 30),
    "not-yet-valid": _idp_token(nbf=int(time.time()) + _HOUR),
    "wrong-rsa-key": _idp_token(rsa_private_key()),
    "es256-to-an-rsa-key": _idp_token(EC_KEY, "ES256"),
    "hs256-with-the-secret-it-does-not-use": _idp_token(SECRET, "HS256"),
    "alg-none": forge({"alg": "none", "typ": "JWT"}, _claims(), None),
    "hs256-signed-with-the-rsa-public-key": forge(
        {"alg": "HS256", "typ": "JWT"}, _claims(), _RSA_PUBLIC_PEM
    ),
    "rooms-not-a-list": _idp_token(rooms="lobby"),
}


@pytest.mark.parametrize("bad_token", REFUSED_TOKENS.values(), ids=REFUSED_TOKENS.keys())
async def test_refused_tokens_are_401_before_upgrade(
    rsa_server: RunningServer, bad_token: str
) -> None:
    header = f"Authorization: Bearer {bad_token}\r\n"
    status, headers, body = await raw_upgrade(rsa_server.port, "/api/chat-api/ws", header)
    assert (status, headers["www-authenticate"]) == (401, "Bearer")
    assert json.loads(body)["error"] == "unauthorized"
    assert rsa_server.runtime.hub.connection_count() == 0
