"""nginx with the shipped site configuration (`deploy/nginx/`), on this
machine's ports and in a directory of its own: the config an operator
installs is the config the tests and `make cluster` run."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEPLOY_DIR",
    "READY_LINE",
    "SITE",
    "UPSTREAM",
    "NginxMissing",
    "main_config",
    "nginx_command",
    "nginx_executable",
    "render_site",
    "write_config",
]

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
SITE = DEPLOY_DIR / "nginx" / "chat-service.conf"
UPSTREAM = DEPLOY_DIR / "nginx" / "upstream.conf"

# What nginx logs once its listening sockets are open and a worker has been
# forked ("start worker process <pid>"; the space tells it from the
# "start worker processes" logged before the fork).
READY_LINE = "start worker process "

_LISTEN = re.compile(r"^(\s*)listen 80;$", re.MULTILINE)
_SERVER = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;$", re.MULTILINE)


class NginxMissing(RuntimeError):
    """No nginx executable on this machine (`make test` installs it)."""


def nginx_executable() -> str:
    """The nginx binary's path: on PATH, or where Debian puts it."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise NginxMissing("nginx is not installed: `make test` (or apt-get install nginx) adds it")
    return found


def render_site(listen_port: int, upstream_ports: Sequence[int]) -> str:
    """The shipped site and upstream files, listening on 127.0.0.1:`listen_port`
    and proxying to one instance per port in `upstream_ports`.

    Raises:
        ValueError: the shipped files no longer have the `listen 80;` or
            `server 127.0.0.1:PORT ...;` lines this substitutes.
    """
    site, found = _LISTEN.subn(rf"\g<1>listen 127.0.0.1:{listen_port};", SITE.read_text())
    if found != 1:
        raise ValueError(f"{SITE} should have one `listen 80;` line, has {found}")
    upstream = UPSTREAM.read_text()
    servers = list(_SERVER.finditer(upstream))
    if not servers:
        raise ValueError(f"{UPSTREAM} has no `server 127.0.0.1:PORT` line")
    indent, parameters = servers[0].group(1), servers[0].group(2) or ""
    lines = "\n".join(f"{indent}server 127.0.0.1:{port}{parameters};" for port in upstream_ports)
    start, end = servers[0].start(), servers[-1].end()
    return f"{upstream[:start]}{lines}{upstream[end:]}\n{site}"


def main_config(prefix: Path, *includes: Path, access_log: Path | None = None) -> str:
    """nginx.conf around the site files `includes`: in the foreground,
    errors on stderr, every other file under `prefix` (the access log
    there too unless `access_log` says where)."""
    temp = "\n".join(
        f"    {name}_temp_path {prefix / (name + '_temp')};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    included = "\n".join(f"    include {path};" for path in includes)
    return f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr notice;
events {{
    worker_connections 4096;
}}
http {{
    access_log {access_log or prefix / "access.log"};
{temp}
{included}
}}
"""


def write_config(
    prefix: Path,
    listen_port: int,
    upstream_ports: Sequence[int],
    *,
    access_log: Path | None = None,
) -> Path:
    """Write nginx.conf and the rendered site under `prefix`; the nginx.conf path."""
    prefix.mkdir(parents=True, exist_ok=True)
    site = prefix / "chat-service.conf"
    site.write_text(render_site(listen_port, upstream_ports))
    conf = prefix / "nginx.conf"
    conf.write_text(main_config(prefix, site, access_log=access_log))
    return conf


def nginx_command(prefix: Path, conf: Path, *, test: bool = False) -> list[str]:
    """Run (or, with `test`, check: `nginx -t`) `conf` with `prefix` as its
    directory; start-up errors go to stderr, not to /var/log/nginx."""
    command = [nginx_executable(), "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"]
    return [*command, "-t"] if test else command
