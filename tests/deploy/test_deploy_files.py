"""The files in deploy/ that cannot run here (image, compose, Kubernetes,
systemd) parse, and agree with the code and with each other: ports, paths,
probes, environment names, signals and grace periods. The nginx site is
checked by nginx itself (`nginx -t`)."""

from __future__ import annotations

import configparser
import dataclasses
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chat_service.__main__ import EXIT_CONFIG
from chat_service.app import create_app
from chat_service.config import Config
from chat_service.devtools.nginx import DEPLOY_DIR, SITE, UPSTREAM, main_config, nginx_command
from chat_service.runtime import ChatRuntime

ROOT = DEPLOY_DIR.parent
ENV_NAMES = {spec.metadata["env"] for spec in dataclasses.fields(Config)}
UNIT = DEPLOY_DIR / "chat-service@.service"
# Upper-case names in deploy/ that are not the service's settings.
NOT_SETTINGS = {"PYTHONUNBUFFERED", "RLIMIT_NOFILE", "AF_INET", "AF_INET6", "AF_UNIX"}


def _config(env: dict[str, str]) -> Config:
    """The Config an environment gives; every name must be one Config reads."""
    assert set(env) <= ENV_NAMES, set(env) - ENV_NAMES
    return Config.load(env)


def _routes() -> set[str]:
    app = create_app(ChatRuntime(Config()))
    return {rule.rule for rule in app.url_map.iter_rules()}


def _seconds(value: str) -> float:
    """An nginx, compose or systemd duration: `75s`, `20s`, `1m`, `20`."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", value.strip())
    assert match, value
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60}[unit]


def _directives(text: str, name: str) -> list[str]:
    """The arguments of every nginx `name ...;` directive in `text`."""
    return [m.group(1) for m in re.finditer(rf"^\s*{name}\s+([^;]*);", text, re.MULTILINE)]


def _dockerfile() -> dict[str, list[str]]:
    """Each Dockerfile instruction -> its arguments (continuations joined)."""
    text = (DEPLOY_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
    return instructions


def _console_script() -> str:
    """The server's console script (the other one is the terminal client)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["chat-service"] == "chat_service.__main__:main"
    return "chat-service"


def _image_port() -> int:
    (exposed,) = _dockerfile()["EXPOSE"]
    return int(exposed)


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY_DIR / "compose.yaml").read_text()))


def _kubernetes() -> Iterator[dict[str, Any]]:
    for path in sorted((DEPLOY_DIR / "kubernetes").glob("*.yaml")):
        yield from yaml.safe_load_all(path.read_text())


def _kind(kind: str, name: str) -> dict[str, Any]:
    (found,) = (d for d in _kubernetes() if d["kind"] == kind and d["metadata"]["name"] == name)
    return found


def test_nginx_accepts_the_shipped_site(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(main_config(tmp_path, UPSTREAM, SITE))
    result = subprocess.run(
        nginx_command(tmp_path, conf, test=True),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_site_proxies_websockets_to_several_instances() -> None:
    site = SITE.read_text()
    assert _directives(site, "proxy_http_version") == ["1.1"]
    headers = dict(h.split(None, 1) for h in _directives(site, "proxy_set_header"))
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert _directives(site, "proxy_buffering") == ["off"]
    # An idle socket hears the service's heartbeat before nginx gives up on it.
    (read_timeout,) = _directives(site, "proxy_read_timeout")
    assert _seconds(read_timeout) > Config().heartbeat_deadline
    # A draining instance refuses upgrades with 503: nginx tries another one.
    (next_upstream,) = _directives(site, "proxy_next_upstream")
    assert {"error", "timeout", "http_503"} <= set(next_upstream.split())
    (target,) = _directives(site, "proxy_pass")
    for upstream in (UPSTREAM, DEPLOY_DIR / "nginx" / "upstream-compose.conf"):
        text = upstream.read_text()
        assert re.search(rf"^upstream {urlsplit(target).hostname} {{", text, re.MULTILINE)
        servers = _directives(text, "server")
        assert servers
        # Failover per request only: nginx would mark an instance failed for
        # as long as its WebSockets live (see upstream.conf).
        assert all(server.split()[1:] == ["max_fails=0"] for server in servers)
    assert len(_directives(UPSTREAM.read_text(), "server")) == 3


def test_systemd_unit_drains_within_its_stop_timeout() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    service = unit["Service"]
    env = dict(
        line.split("=", 1)
        for line in (DEPLOY_DIR / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert "PORT" not in env  # the instance name gives it
    config = _config(env)
    assert service["Environment"] == "PORT=%i"
    assert service["EnvironmentFile"] == "-/etc/chat-service/env"
    assert service["KillSignal"] == "SIGTERM"
    assert _seconds(service["TimeoutStopSec"]) > config.shutdown_grace_seconds
    assert int(service["LimitNOFILE"]) > config.max_connections
    assert service["User"] not in ("", "root")
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert shlex.split(service["ExecStart"])[0].endswith(f"/bin/{_console_script()}")
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    # The ports nginx proxies to are the instances the unit's comment enables.
    ports = [s.split()[0].rsplit(":", 1)[1] for s in _directives(UPSTREAM.read_text(), "server")]
    assert all(f"chat-service@{port}" in UNIT.read_text() for port in ports)


def test_image_runs_the_service_unprivileged_and_stops_on_sigterm() -> None:
    docker = _dockerfile()
    env = dict(pair.split("=", 1) for line in docker["ENV"] for pair in line.split())
    port = _image_port()
    assert int(env["PORT"]) == port
    assert docker["STOPSIGNAL"] == ["SIGTERM"]
    assert docker["ENTRYPOINT"] == [f'["{_console_script()}"]']
    assert docker["USER"] == ["chat"]
    (healthcheck,) = docker["HEALTHCHECK"]
    url = urlsplit(re.search(r"http://[^'\"]+", healthcheck).group(0))  # type: ignore[union-attr]
    assert (url.port, url.path) == (port, "/readyz")
    assert url.path in _routes()
    for line in docker["COPY"]:
        *sources, _ = line.split()
        assert all((ROOT / source).exists() for source in sources), line


def test_compose_runs_three_replicas_behind_nginx_with_redis() -> None:
    services = _compose()["services"]
    chat, nginx = services["chat"], services["nginx"]
    assert chat["deploy"]["replicas"] == 3
    assert (DEPLOY_DIR / chat["build"]["context"] / "pyproject.toml").exists()
    assert (DEPLOY_DIR / chat["build"]["context"] / chat["build"]["dockerfile"]).exists()
    config = _config(dict(chat["environment"]))
    redis = urlsplit(config.redis_url)
    assert services[redis.hostname]["image"].startswith("redis:")
    assert redis.port == 6379
    assert chat["stop_signal"] == "SIGTERM"
    assert _seconds(chat["stop_grace_period"]) > config.shutdown_grace_seconds
    assert chat["expose"] == [str(_image_port())]
    assert chat["ulimits"]["nofile"] > config.max_connections
    # nginx mounts the shipped site and the compose upstream, which names the replicas.
    mounted = {DEPLOY_DIR / volume.split(":")[0] for volume in nginx["volumes"]}
    compose_upstream = DEPLOY_DIR / "nginx" / "upstream-compose.conf"
    assert mounted == {SITE, compose_upstream}
    (server,) = _directives(compose_upstream.read_text(), "server")
    assert server.split()[0] == f"chat:{_image_port()}"
    assert "chat" in nginx["depends_on"]


def test_kubernetes_deployment_probes_ports_and_grace_agree_with_the_service() -> None:
    deployment = _kind("Deployment", "chat-service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = _config({item["name"]: item["value"] for item in container["env"]})
    (port,) = container["ports"]
    assert port["containerPort"] == config.port == _image_port()
    routes = _routes()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        check = container[probe]["httpGet"]
        assert (check["path"], check["port"]) == (path, port["name"])
        assert path in routes
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(pre_stop[1]) + config.shutdown_grace_seconds
    assert pod["terminationGracePeriodSeconds"] > drain
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = re.search(r"--uid (\d+)", " ".join(_dockerfile()["RUN"]))
    assert uid
    assert pod["securityContext"]["runAsUser"] == int(uid.group(1))
    # Rollouts and node drains take one pod at a time.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["replicas"] == 3
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    budget = _kind("PodDisruptionBudget", "chat-service")
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert budget["spec"]["maxUnavailable"] == 1
    service = _kind("Service", "chat-service")
    assert service["spec"]["selector"] == labels
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    # REDIS_URL names the Redis Service of redis.yaml.
    redis_url = urlsplit(config.redis_url)
    redis = _kind("Service", str(redis_url.hostname))
    assert [p["port"] for p in redis["spec"]["ports"]] == [redis_url.port]


@pytest.mark.parametrize(
    "path", sorted(p for p in DEPLOY_DIR.rglob("*") if p.is_file()), ids=lambda p: p.name
)
def test_deploy_comments_name_only_real_settings(path: Path) -> None:
    """Every UPPER_CASE setting a deploy file mentions is one Config reads."""
    mentioned = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", path.read_text()))
    assert mentioned - NOT_SETTINGS <= ENV_NAMES
