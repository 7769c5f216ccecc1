"""Checks the service makes of its environment at start-up."""

from __future__ import annotations

import resource

from ..server_process import server_process

_FD_LINE = "file descriptor limit"


async def test_a_file_limit_below_max_connections_is_warned_about_once() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)  # the service inherits it
    async with server_process(MAX_CONNECTIONS=str(soft)) as service:
        line = await service.wait_for_line(_FD_LINE)
        assert f"MAX_CONNECTIONS + 100 = {soft + 100}" in line
        assert len(service.matching(_FD_LINE)) == 1


async def test_enough_file_descriptors_give_no_warning() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    async with server_process(MAX_CONNECTIONS=str(max(0, soft - 200))) as service:
        await service.health()
    assert service.matching(_FD_LINE) == []
