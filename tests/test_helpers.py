"""The test helpers themselves: a failure inside them must fail the test."""

from __future__ import annotations

import pytest

from .helpers import RunningServer, connect


async def test_a_failure_inside_connect_reaches_the_test(server: RunningServer) -> None:
    with pytest.raises(ExceptionGroup) as failure:
        async with connect(server.url("r")):
            raise AssertionError("seen")
    assert failure.group_contains(AssertionError, match="seen")
