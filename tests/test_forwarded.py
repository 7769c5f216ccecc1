"""FORWARDED_ALLOW_IPS: the client's address from X-Forwarded-For, believed
only from trusted proxies, in the logs and in MAX_CONNECTIONS_PER_IP."""

from __future__ import annotations

import logging

import pytest

from chat_service.config import Config
from chat_service.forwarded import TrustedProxies

from .conftest import StartServer
from .helpers import connect, raw_upgrade


def _trusted(setting: str) -> TrustedProxies:
    return TrustedProxies(Config.load({"FORWARDED_ALLOW_IPS": setting}).forwarded_allow_ips)


def _forwarded(address: str) -> str:
    return f"X-Forwarded-For: {address}\r\n"


def _header(address: str) -> list[tuple[str, str]]:
    return [("X-Forwarded-For", address)]


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("10.0.0.5", ["203.0.113.7"], "203.0.113.7"),  # from the proxy: believed
        ("198.51.100.9", ["203.0.113.7"], "198.51.100.9"),  # from anyone else: ignored
        ("10.0.0.5", ["1.2.3.4", "203.0.113.7"], "203.0.113.7"),  # the client's own claim skipped
        ("10.0.0.5", ["203.0.113.7", "10.0.0.4"], "203.0.113.7"),  # two trusted proxies
        ("10.0.0.5", ["10.0.0.3", "10.0.0.4"], "10.0.0.3"),  # only proxies: the first one
        ("10.0.0.5", ["unknown", "203.0.113.7"], "203.0.113.7"),
        ("10.0.0.5", ["203.0.113.7", "garbage"], "10.0.0.5"),  # a broken hop ends the walk
        ("10.0.0.5", ["2001:db8::1"], "2001:db8::1"),
    ],
)
def test_the_client_is_the_first_hop_no_trusted_proxy_vouches_for(
    peer: str, header: list[str], client: str
) -> None:
    assert _trusted("10.0.0.0/24").client_address(peer, header) == client


def test_star_trusts_every_peer_and_empty_trusts_none() -> None:
    everyone = _trusted("*")
    assert "198.51.100.9" in everyone
    assert "2001:db8::1" in everyone
    nobody = _trusted("")
    assert "127.0.0.1" not in nobody


async def test_per_ip_limit_counts_the_forwarded_address_from_a_trusted_proxy(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chat_service")
    server = await start_server(
        max_connections_per_ip=1,
        forwarded_allow_ips=Config.load({"FORWARDED_ALLOW_IPS": "127.0.0.1"}).forwarded_allow_ips,
    )
    async with connect(server.url(), extra_headers=_header("203.0.113.7")):
        status, _, _ = await raw_upgrade(server.port, "/api/chat-api/ws", _forwarded("203.0.113.7"))
        assert status == 429
        status, _, _ = await raw_upgrade(server.port, "/api/chat-api/ws", _forwarded("203.0.113.8"))
        assert status == 101
    connected = [r for r in caplog.records if r.getMessage() == "client connected"]
    assert connected[0].fields["address"] == "203.0.113.7"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chat_service")
    server = await start_server(max_connections_per_ip=1)  # FORWARDED_ALLOW_IPS empty
    async with connect(server.url(), extra_headers=_header("203.0.113.7")):
        # A client reaching the port directly cannot escape its limit by naming another address.
        status, _, _ = await raw_upgrade(server.port, "/api/chat-api/ws", _forwarded("203.0.113.8"))
        assert status == 429
    connected = [r for r in caplog.records if r.getMessage() == "client connected"]
    assert connected[0].fields["address"] == "127.0.0.1"
