"""Fixtures: nginx with the shipped configuration (deploy/nginx/), on a free
port in front of the given instances, stopped with the test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import port_for
import pytest
import trio

from chat_service.devtools.cluster import Child
from chat_service.devtools.nginx import READY_LINE, nginx_command, write_config

from ..helpers import WAIT

StartNginx = Callable[[Sequence[int]], Awaitable[int]]


@pytest.fixture
def start_nginx(nursery: trio.Nursery, tmp_path: Path) -> StartNginx:
    """Start nginx in front of instances on `upstream_ports`; its port."""

    async def start(upstream_ports: Sequence[int]) -> int:
        port = port_for.select_random()
        prefix = tmp_path / f"nginx-{port}"
        conf = write_config(prefix, port, upstream_ports)
        nginx = Child("nginx", nginx_command(prefix, conf), prefix / "nginx.log", READY_LINE)
        nursery.start_soon(nginx.run)
        with trio.fail_after(WAIT):
            await nginx.settled.wait()
        assert nginx.ready, nginx.log.read_text()
        return port

    return start
