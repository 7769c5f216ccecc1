"""Service configuration, read once from the environment at start-up.

Nothing here reads the environment at import time: `Config.load()` takes a
mapping (default `os.environ`) and returns a frozen `Config`, or raises
`ConfigError` whose message is one line naming the offending variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .forwarded import Network, parse_trusted_proxies

__all__ = ["Config", "ConfigError", "cluster_seeds"]

_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash.
_MIN_SECRET_BYTES = 32
# The largest TCP_KEEPIDLE Linux accepts (MAX_TCP_KEEPIDLE); TCP_USER_TIMEOUT
# shares the bound here, which keeps its milliseconds within a C int.
_MAX_TCP_SECONDS = 32767
# Clock skew tolerated on exp/nbf: synced clocks differ by far less; more
# than a few minutes would quietly extend every token's life.
_MAX_LEEWAY_SECONDS = 300.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


_N = TypeVar("_N", int, float)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable."""


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("is not an integer") from None


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("is not a number") from None


def _port(raw: str) -> int:
    value = _int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be an integer from 0 to 65535")
    return value


def _optional_port(raw: str) -> int | None:
    return None if raw == "" else _port(raw)


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = _float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = _float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be zero or a positive number")
    return value


def _at_most(parse: Callable[[str], _N], most: _N) -> Callable[[str], _N]:
    """`parse`, refusing values above `most`."""

    def bounded(raw: str) -> _N:
        value = parse(raw)
        if value > most:
            raise ValueError(f"must be at most {most}")
        return value

    return bounded


# Whole seconds for a TCP socket option: Linux takes at most 32767.
_tcp_seconds = _at_most(_non_negative_int, _MAX_TCP_SECONDS)


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level


def _log_format(raw: str) -> str:
    value = raw.lower()
    if value not in ("text", "json"):
        raise ValueError("must be text or json")
    return value


def _redis_url(raw: str) -> str:
    url = raw.strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise ValueError("must start with redis://, rediss:// or unix://")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs a socket path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("needs a host name")
    database = parts.path.lstrip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError("the database number after the host must be an integer")
    _check_coredis_accepts(url)
    return url


def _check_coredis_accepts(url: str) -> None:
    """Let coredis parse `url` (query options, TLS files) without connecting."""
    import coredis

    try:
        coredis.Redis.from_url(url)
    except (ValueError, LookupError, OSError) as exc:
        raise ValueError(f"is not usable by coredis ({type(exc).__name__}: {exc})") from None


def _redis_cluster_url(raw: str) -> str:
    """`redis://[user:password@]host:port[,host:port...]`: the cluster's seed nodes."""
    url = raw.strip()
    if not url:
        return ""
    if url.partition("://")[0] != "redis":
        raise ValueError("must start with redis:// (TLS to a cluster is not supported)")
    for host, port in _seed_parts(url):
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"seed {host}:{port} is not host:port")
    return url


def _seed_parts(url: str) -> list[tuple[str, str]]:
    hosts = url.partition("://")[2].rpartition("@")[2]
    return [(host, port) for host, _, port in (seed.partition(":") for seed in hosts.split(","))]


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The (host, port) seed nodes of a valid `REDIS_CLUSTER_URL`."""
    return [(host, int(port)) for host, port in _seed_parts(url)]


def _channel_prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:._-]{1,64}", raw):
        raise ValueError("must be 1 to 64 characters of A-Z a-z 0-9 : . _ -")
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    """Comma-separated origins (`scheme://host[:port]`), lower-cased as
    browsers send them; empty: any origin."""
    origins = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(f"{origin!r} is not an origin like https://chat.example.com")
    return origins


def _text(raw: str) -> str:
    return raw


def _public_key_file(raw: str) -> str:
    """The PEM text of the RSA or EC P-256 public key in file `raw` (empty: none)."""
    if not raw:
        return ""
    from .api.auth import key_algorithm

    try:
        with open(raw, encoding="ascii") as file:
            pem = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read ({exc})") from None
    key_algorithm(pem)
    return pem


def _env(name: str, parse: Callable[[str], Any], default: Any) -> Any:
    """A dataclass field read from environment variable `name` by `parse`."""
    return field(default=default, metadata={"env": name, "parse": parse})


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of one chat_service instance; see README "Configuration"."""

    host: str = _env("HOST", _text, "127.0.0.1")
    port: int = _env("PORT", _port, 8080)
    # A second listener for GET /metrics alone (None: only on PORT).
    metrics_port: int | None = _env("METRICS_PORT", _optional_port, None)
    redis_url: str = _env("REDIS_URL", _redis_url, "")
    # Seed nodes of a Redis Cluster (sharded pub/sub); instead of REDIS_URL.
    redis_cluster_url: str = _env("REDIS_CLUSTER_URL", _redis_cluster_url, "")
    redis_channel_prefix: str = _env("REDIS_CHANNEL_PREFIX", _channel_prefix, "chat:room:")
    # Waits between attempts to reach Redis, in seconds: the bound doubles
    # from the first to the cap. 0.1 s rides out a restart; 10 s keeps a long
    # outage from costing more than a connect attempt now and then.
    redis_reconnect_min: float = _env("REDIS_RECONNECT_MIN", _positive_float, 0.1)
    redis_reconnect_max: float = _env("REDIS_RECONNECT_MAX", _positive_float, 10.0)
    auth_enabled: bool = _env("AUTH_ENABLED", _boolean, False)
    auth_jwt_secret: str = _env("AUTH_JWT_SECRET", _text, "")
    # The identity provider's PEM public key (RS256 or ES256), instead of the
    # secret; the field holds the key itself, read once at start-up.
    auth_jwt_public_key: str = _env("AUTH_JWT_PUBLIC_KEY_FILE", _public_key_file, "")
    auth_jwt_audience: str = _env("AUTH_JWT_AUDIENCE", _text, "")
    auth_jwt_issuer: str = _env("AUTH_JWT_ISSUER", _text, "")
    # Seconds of clock skew between the token's issuer and us forgiven on
    # exp and nbf: enough for NTP-synced hosts, too little to matter.
    # The key a backend publishes with (POST .../rooms/{room}/messages,
    # `Authorization: Bearer <key>`); empty: only JWTs with scope publish.
    publish_api_key: str = _env("PUBLISH_API_KEY", _text, "")
    # Messages per second one publishing credential may post, sustained, and
    # at once: a busy bot's replies, while one leaked key cannot flood rooms.
    publish_rate_per_second: float = _env("PUBLISH_RATE_PER_SECOND", _positive_float, 20.0)
    publish_rate_burst: int = _env("PUBLISH_RATE_BURST", _positive_int, 50)
    # Seconds before a token's exp that its connection is sent
    # `token_expiring`: time for a client to fetch a new token and refresh.
    token_expiry_notice: float = _env("TOKEN_EXPIRY_NOTICE", _non_negative_float, 30.0)
    auth_leeway_seconds: float = _env(
        "AUTH_LEEWAY_SECONDS", _at_most(_non_negative_float, _MAX_LEEWAY_SECONDS), 5.0
    )
    log_level: str = _env("LOG_LEVEL", _log_level, "INFO")
    log_format: str = _env("LOG_FORMAT", _log_format, "text")
    max_body_chars: int = _env("MAX_BODY_CHARS", _positive_int, 4096)
    # 64 KiB holds the largest legal chat frame (4096 chars, up to 4 UTF-8
    # bytes each, JSON-escaped) with room to spare, and caps what one frame
    # can make the server buffer.
    max_message_bytes: int = _env("MAX_MESSAGE_BYTES", _positive_int, 65536)
    heartbeat_interval: float = _env("HEARTBEAT_INTERVAL", _positive_float, 25.0)
    heartbeat_timeout: float = _env("HEARTBEAT_TIMEOUT", _positive_float, 20.0)
    # Frames a client may lag behind its room before it counts as a slow
    # consumer: a few seconds of a busy room, a few hundred KiB at most.
    send_queue_size: int = _env("SEND_QUEUE_SIZE", _positive_int, 256)
    # Rooms one socket may be subscribed to at once: a busy chat client's
    # sidebar, while keeping what one socket costs the hub bounded.
    max_rooms_per_connection: int = _env("MAX_ROOMS_PER_CONNECTION", _positive_int, 100)
    # Chat messages each room keeps for recovery and the history API: a few
    # minutes of a busy room, a day of a quiet one; a replay is at most this.
    history_size: int = _env("HISTORY_SIZE", _positive_int, 1000)
    # Seconds a message stays in history; 0 turns history off (messages
    # still get their seq). A day covers a client that was off overnight.
    history_ttl: int = _env("HISTORY_TTL", _non_negative_int, 86400)
    # presence_diff frames (protocol v2); false: presence only in `subscribed`
    # and the presence endpoint.
    presence_events: bool = _env("PRESENCE_EVENTS", _boolean, True)
    # Seconds between a room's presence diffs: every change in between is
    # coalesced, so a member gets at most one per room per interval however
    # many join at once; 1 s still feels live.
    presence_interval: float = _env("PRESENCE_INTERVAL", _positive_float, 1.0)
    # Members listed in a `subscribed` frame (and the endpoint's default page):
    # a sidebar's worth, while a room of thousands stays one small frame.
    presence_list_max: int = _env("PRESENCE_LIST_MAX", _non_negative_int, 100)
    # Seconds an instance's share of presence outlives it in Redis: an
    # instance that dies without cleaning up drops out within this.
    presence_ttl: float = _env("PRESENCE_TTL", _positive_float, 30.0)
    # Longest a batched (batch=1) client's frames wait to be coalesced, in
    # seconds; 0 flushes at once.
    batch_window: float = _env("BATCH_WINDOW", _non_negative_float, 0.02)
    max_connections: int = _env("MAX_CONNECTIONS", _non_negative_int, 10000)
    # 0: no per-user limit (without auth, user_id is whatever the client says).
    max_connections_per_user: int = _env("MAX_CONNECTIONS_PER_USER", _non_negative_int, 0)
    # 0: no per-address limit. Behind a proxy, set FORWARDED_ALLOW_IPS too, or
    # every client counts as the proxy's address.
    max_connections_per_ip: int = _env("MAX_CONNECTIONS_PER_IP", _non_negative_int, 0)
    # Proxies whose X-Forwarded-For names the client (logs, per-IP limit);
    # empty trusts nobody, so a client reaching the port directly cannot
    # claim another address.
    forwarded_allow_ips: tuple[Network, ...] = _env(
        "FORWARDED_ALLOW_IPS", parse_trusted_proxies, ()
    )
    # Frames per second one connection may send, sustained; 0 turns the limit
    # off. 10/s is far above human typing and still cheap to serve.
    rate_limit_per_second: float = _env("RATE_LIMIT_PER_SECOND", _non_negative_float, 10.0)
    # Frames a connection may send at once after being quiet: a pasted
    # paragraph or a reconnect resending its backlog.
    rate_limit_burst: int = _env("RATE_LIMIT_BURST", _positive_int, 20)
    # Refused frames within RATE_LIMIT_STRIKE_WINDOW seconds before the
    # client is closed with 1008: a buggy client gets a few `rate_limited`
    # answers to back off on, a flooder is cut off within a second.
    rate_limit_strikes: int = _env("RATE_LIMIT_STRIKES", _positive_int, 10)
    rate_limit_strike_window: float = _env("RATE_LIMIT_STRIKE_WINDOW", _positive_float, 10.0)
    shutdown_grace_seconds: float = _env("SHUTDOWN_GRACE_SECONDS", _positive_float, 10.0)
    # Seconds a connection may stay open without sending a complete request
    # head (a new client's upgrade request, or the next request on a kept-alive
    # HTTP connection): long enough for a slow mobile link, short enough that
    # silent sockets cannot pile up.
    handshake_timeout: float = _env("HANDSHAKE_TIMEOUT", _positive_float, 10.0)
    # permessage-deflate (without context takeover: no memory per idle
    # connection, a room's frame compressed once); off unless asked for
    # (protocol v2): frames cost CPU to compress, and clients to inflate.
    ws_compression: bool = _env("WS_COMPRESSION", _boolean, False)
    # Seconds the kernel lets sent data go unacknowledged, or a peer's window
    # stay closed, before it resets the connection (0: its default, minutes
    # or never): a peer that stops reading or vanishes gives back its socket
    # and slot within 20 s, and a phone on a bad link has that long to recover.
    tcp_user_timeout: int = _env("TCP_USER_TIMEOUT", _tcp_seconds, 20)
    # Seconds of silence before TCP keepalive probes (0: none): finds peers
    # that vanished while nothing was being sent.
    # Origins a browser's upgrade may come from (protocol v2); empty: any.
    allowed_origins: tuple[str, ...] = _env("ALLOWED_ORIGINS", _origins, ())
    tcp_keepalive_idle: int = _env("TCP_KEEPALIVE_IDLE", _tcp_seconds, 10)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read every setting from `environ` (default: the process environment).

        Raises:
            ConfigError: a value does not parse, is out of range, or settings
                contradict each other; the message is one line naming the
                variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = spec.metadata["env"]
            raw = env.get(name)
            if raw is None:
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}") from None
        config = cls(**values)
        config._check_consistency()
        return config

    def _check_consistency(self) -> None:
        if self.metrics_port is not None and self.metrics_port == self.port != 0:
            raise ConfigError("METRICS_PORT: must differ from PORT (leave it empty for PORT alone)")
        if self.redis_reconnect_max < self.redis_reconnect_min:
            raise ConfigError("REDIS_RECONNECT_MAX: must not be less than REDIS_RECONNECT_MIN")
        if self.redis_url and self.redis_cluster_url:
            raise ConfigError(
                "REDIS_CLUSTER_URL: set either REDIS_URL or REDIS_CLUSTER_URL, not both"
            )
        if self.auth_jwt_secret and self.auth_jwt_public_key:
            raise ConfigError(
                "AUTH_JWT_PUBLIC_KEY_FILE: set either AUTH_JWT_SECRET or "
                "AUTH_JWT_PUBLIC_KEY_FILE, not both"
            )
        if self.auth_enabled and not (self.auth_jwt_secret or self.auth_jwt_public_key):
            raise ConfigError(
                "AUTH_JWT_SECRET: required when AUTH_ENABLED is true (or AUTH_JWT_PUBLIC_KEY_FILE)"
            )
        if self.publish_api_key and len(self.publish_api_key.encode()) < _MIN_SECRET_BYTES:
            raise ConfigError(
                f"PUBLISH_API_KEY: must be at least {_MIN_SECRET_BYTES} bytes (a random key)"
            )
        if (
            self.auth_enabled
            and self.auth_jwt_secret
            and len(self.auth_jwt_secret.encode()) < _MIN_SECRET_BYTES
        ):
            raise ConfigError(
                f"AUTH_JWT_SECRET: must be at least {_MIN_SECRET_BYTES} bytes for HS256 (RFC 7518)"
            )

    @property
    def heartbeat_deadline(self) -> float:
        """Seconds of silence after which a client is closed with 4000."""
        return self.heartbeat_interval + self.heartbeat_timeout
