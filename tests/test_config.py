"""Config.load(): defaults, parsing, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_service.config import Config, ConfigError, cluster_seeds

from .tokens import ec_private_key, public_pem, rsa_private_key


def test_defaults_from_an_empty_environment() -> None:
    config = Config.load({})
    assert (config.host, config.port, config.redis_url) == ("127.0.0.1", 8080, "")
    assert config.auth_enabled is False
    assert config.max_body_chars == 4096
    assert config.presence_events is True
    assert config.ws_compression is False
    assert 0 < config.tcp_user_timeout < 60


def test_values_are_parsed() -> None:
    config = Config.load(
        {
            "PORT": "9000",
            "AUTH_ENABLED": "true",
            "AUTH_JWT_SECRET": "s3cret" * 6,
            "HEARTBEAT_INTERVAL": "0.5",
            "LOG_LEVEL": "debug",
            "REDIS_URL": "redis://:pw@localhost:6380/2",
            "PRESENCE_EVENTS": "false",
            "HANDSHAKE_TIMEOUT": "2.5",
            "REDIS_RECONNECT_MIN": "0.5",
            "REDIS_RECONNECT_MAX": "30",
            "WS_COMPRESSION": "true",
            "TCP_USER_TIMEOUT": "0",
            "TCP_KEEPALIVE_IDLE": "30",
            "ALLOWED_ORIGINS": "https://Chat.example.com, http://localhost:8080",
        }
    )
    assert config.allowed_origins == ("https://chat.example.com", "http://localhost:8080")
    assert (config.ws_compression, config.tcp_user_timeout, config.tcp_keepalive_idle) == (
        True,
        0,
        30,
    )
    assert config.handshake_timeout == 2.5
    assert (config.port, config.auth_enabled, config.heartbeat_interval) == (9000, True, 0.5)
    assert (config.log_level, config.presence_events) == ("DEBUG", False)
    assert config.redis_url == "redis://:pw@localhost:6380/2"
    assert (config.redis_reconnect_min, config.redis_reconnect_max) == (0.5, 30.0)


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"METRICS_PORT": "nine"}, "METRICS_PORT"),
        ({"METRICS_PORT": "-1"}, "METRICS_PORT"),
        ({"METRICS_PORT": "8080"}, "METRICS_PORT"),
        ({"AUTH_ENABLED": "true"}, "AUTH_JWT_SECRET"),
        ({"AUTH_ENABLED": "maybe"}, "AUTH_ENABLED"),
        ({"AUTH_ENABLED": "true", "AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET"),
        ({"MAX_BODY_CHARS": "-1"}, "MAX_BODY_CHARS"),
        ({"SEND_QUEUE_SIZE": "0"}, "SEND_QUEUE_SIZE"),
        ({"HEARTBEAT_INTERVAL": "nan"}, "HEARTBEAT_INTERVAL"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"HANDSHAKE_TIMEOUT": "0"}, "HANDSHAKE_TIMEOUT"),
        ({"WS_COMPRESSION": "gzip"}, "WS_COMPRESSION"),
        ({"ALLOWED_ORIGINS": "chat.example.com"}, "ALLOWED_ORIGINS"),
        ({"ALLOWED_ORIGINS": "https://chat.example.com/app"}, "ALLOWED_ORIGINS"),
        ({"TCP_USER_TIMEOUT": "-1"}, "TCP_USER_TIMEOUT"),
        ({"TCP_KEEPALIVE_IDLE": "1.5"}, "TCP_KEEPALIVE_IDLE"),
        ({"TCP_KEEPALIVE_IDLE": "40000"}, "TCP_KEEPALIVE_IDLE"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://localhost:port"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://localhost?db=abc"}, "REDIS_URL"),
        ({"REDIS_RECONNECT_MIN": "0"}, "REDIS_RECONNECT_MIN"),
        ({"REDIS_RECONNECT_MIN": "5", "REDIS_RECONNECT_MAX": "1"}, "REDIS_RECONNECT_MAX"),
        ({"FORWARDED_ALLOW_IPS": "127.0.0.1,nginx"}, "FORWARDED_ALLOW_IPS"),
        ({"FORWARDED_ALLOW_IPS": "10.0.0.0/33"}, "FORWARDED_ALLOW_IPS"),
        ({"MAX_CONNECTIONS_PER_IP": "-1"}, "MAX_CONNECTIONS_PER_IP"),
        ({"REDIS_CLUSTER_URL": "http://h1:7000"}, "REDIS_CLUSTER_URL"),
        ({"REDIS_CLUSTER_URL": "redis://h1:7000,h2"}, "REDIS_CLUSTER_URL"),
        ({"REDIS_CLUSTER_URL": "redis://h1:7000", "REDIS_URL": "redis://h"}, "REDIS_CLUSTER_URL"),
    ],
)
def test_bad_values_name_their_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}"):
        Config.load(environ)


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"AUTH_ENABLED": "1"}, "AUTH_JWT_SECRET"),
        ({"MAX_MESSAGE_BYTES": "-5"}, "MAX_MESSAGE_BYTES"),
        ({"REDIS_URL": "redis://host:notaport"}, "REDIS_URL"),
        # Malformed in ways only coredis' own URL parsing finds.
        ({"REDIS_URL": "redis://localhost:6379?db=abc"}, "REDIS_URL"),
        ({"REDIS_URL": "rediss://localhost:6379?ssl_cert_reqs=sometimes"}, "REDIS_URL"),
        ({"FORWARDED_ALLOW_IPS": "localhost"}, "FORWARDED_ALLOW_IPS"),
    ],
)
def test_bad_config_exits_2_with_one_line(environ: dict[str, str], variable: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "AUTH_ENABLED", "REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "chat_service"],
        env=env | environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_cluster_url_gives_its_seeds() -> None:
    config = Config.load({"REDIS_CLUSTER_URL": "redis://:pw@h1:7000,10.0.0.2:7001"})
    assert cluster_seeds(config.redis_cluster_url) == [("h1", 7000), ("10.0.0.2", 7001)]


def test_limit_defaults_and_values() -> None:
    config = Config.load({})
    assert (config.rate_limit_per_second, config.rate_limit_burst) == (10.0, 20)
    assert (config.rate_limit_strikes, config.rate_limit_strike_window) == (10, 10.0)
    assert (config.max_connections, config.max_connections_per_user) == (10000, 0)
    config = Config.load(
        {
            "RATE_LIMIT_PER_SECOND": "0",
            "RATE_LIMIT_BURST": "5",
            "RATE_LIMIT_STRIKES": "3",
            "RATE_LIMIT_STRIKE_WINDOW": "2.5",
            "MAX_CONNECTIONS_PER_USER": "4",
        }
    )
    assert (config.rate_limit_per_second, config.rate_limit_burst) == (0.0, 5)
    assert (config.rate_limit_strikes, config.rate_limit_strike_window) == (3, 2.5)
    assert config.max_connections_per_user == 4


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT_PER_SECOND", "-1"),
        ("RATE_LIMIT_PER_SECOND", "inf"),
        ("RATE_LIMIT_BURST", "0"),
        ("RATE_LIMIT_STRIKES", "0"),
        ("RATE_LIMIT_STRIKE_WINDOW", "0"),
        ("MAX_CONNECTIONS_PER_USER", "-1"),
    ],
)
def test_bad_limits_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}"):
        Config.load({variable: value})


def test_public_key_file_is_read_at_load(tmp_path: Path) -> None:
    pem = public_pem(ec_private_key())
    (tmp_path / "idp.pem").write_text(pem)
    config = Config.load(
        {
            "AUTH_ENABLED": "true",
            "AUTH_JWT_PUBLIC_KEY_FILE": str(tmp_path / "idp.pem"),
            "AUTH_JWT_AUDIENCE": "chat",
            "AUTH_JWT_ISSUER": "https://idp.example.com/",
            "AUTH_LEEWAY_SECONDS": "10",
        }
    )
    assert config.auth_jwt_public_key == pem
    assert (config.auth_jwt_audience, config.auth_jwt_issuer) == (
        "chat",
        "https://idp.example.com/",
    )
    assert config.auth_leeway_seconds == 10


def test_bad_public_keys_name_their_variable(tmp_path: Path) -> None:
    (tmp_path / "secret.pem").write_text("not a key")
    (tmp_path / "rsa.pem").write_text(public_pem(rsa_private_key()))
    for environ in (
        {"AUTH_JWT_PUBLIC_KEY_FILE": str(tmp_path / "missing.pem")},
        {"AUTH_JWT_PUBLIC_KEY_FILE": str(tmp_path / "secret.pem")},
        {"AUTH_JWT_PUBLIC_KEY_FILE": str(tmp_path / "rsa.pem"), "AUTH_JWT_SECRET": "s" * 32},
    ):
        with pytest.raises(ConfigError, match=r"^AUTH_JWT_PUBLIC_KEY_FILE"):
            Config.load(environ)
    with pytest.raises(ConfigError, match=r"^AUTH_LEEWAY_SECONDS"):
        Config.load({"AUTH_LEEWAY_SECONDS": "3600"})


def test_publish_settings() -> None:
    config = Config.load(
        {
            "PUBLISH_API_KEY": "k" * 32,
            "PUBLISH_RATE_PER_SECOND": "5",
            "PUBLISH_RATE_BURST": "7",
            "TOKEN_EXPIRY_NOTICE": "60",
        }
    )
    assert (config.publish_api_key, config.publish_rate_per_second) == ("k" * 32, 5.0)
    assert (config.publish_rate_burst, config.token_expiry_notice) == (7, 60.0)
    for environ, variable in (
        ({"PUBLISH_API_KEY": "short"}, "PUBLISH_API_KEY"),
        ({"PUBLISH_RATE_PER_SECOND": "0"}, "PUBLISH_RATE_PER_SECOND"),
        ({"TOKEN_EXPIRY_NOTICE": "-1"}, "TOKEN_EXPIRY_NOTICE"),
    ):
        with pytest.raises(ConfigError, match=f"^{variable}"):
            Config.load(environ)
