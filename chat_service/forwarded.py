"""The client's address behind a reverse proxy: `X-Forwarded-For`, honoured
only when the request comes from a proxy listed in `FORWARDED_ALLOW_IPS`.

Hypercorn's `ProxyFixMiddleware` trusts a fixed number of hops whoever
sent the request, so a client that reaches the instance directly could
name any address it likes (and escape the per-IP limit). Here the peer
must be a trusted proxy, and the client is the rightmost address in the
header that is not one: the first hop no trusted proxy vouches for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["ForwardedFor", "Network", "TrustedProxies", "parse_trusted_proxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

_HEADER = b"x-forwarded-for"


# What `*` stands for: every IPv4 and every IPv6 peer.
_EVERYONE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


class TrustedProxies:
    """The networks whose `X-Forwarded-For` is believed."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: list[str]) -> str:
        """Who sent the request: `peer` unless it is trusted, else the
        rightmost untrusted address of `forwarded_for` (the leftmost if every
        one is trusted). Entries that are not IP addresses end the walk."""
        if peer not in self:
            return peer
        client = peer
        for entry in reversed(forwarded_for):
            try:
                ipaddress.ip_address(entry)
            except ValueError:
                break
            client = entry
            if entry not in self:
                break
        return client


def parse_trusted_proxies(raw: str) -> tuple[Network, ...]:
    """`FORWARDED_ALLOW_IPS`: comma-separated addresses or CIDR networks, or
    `*` for every peer (only when nothing but the proxy can reach the
    instance); empty trusts nobody.

    Raises:
        ValueError: an entry is neither an address nor a network.
    """
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if entries == ["*"]:
        return _EVERYONE
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (or use *)") from None
    return tuple(networks)


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every hop of every X-Forwarded-For header, in order."""
    hops: list[str] = []
    for name, value in headers:
        if name.lower() == _HEADER:
            hops.extend(hop.strip() for hop in value.decode("latin-1").split(","))
    return [hop for hop in hops if hop]


class ForwardedFor:
    """ASGI middleware: the scope's `client` becomes the address the trusted
    proxy forwarded (see `TrustedProxies.client_address`); requests from
    any other peer keep their own address, whatever they send."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve the request with the client's address in `scope["client"]`."""
        peer = scope.get("client")
        if scope["type"] in ("http", "websocket") and peer and peer[0] in self.trusted:
            client = self.trusted.client_address(peer[0], _forwarded_for(scope["headers"]))
            if client != peer[0]:
                scope = {**scope, "client": (client, 0)}
        await self.app(scope, receive, send)
