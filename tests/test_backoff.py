"""The reconnect backoff: capped, exponential, jittered, on trio's clock."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from chat_service.realtime.backoff import Backoff


async def _waits(backoff: Backoff, count: int) -> list[float]:
    """How long each of `count` waits took on trio's (mock) clock."""
    waits = []
    for _ in range(count):
        start = trio.current_time()
        await backoff.wait()
        waits.append(trio.current_time() - start)
    return waits


async def test_waits_double_up_to_the_cap_with_jitter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(1))
    waits = await _waits(backoff, 12)
    bounds = [0.2, 0.4, 0.8] + [1.0] * 9
    for wait, bound in zip(waits, bounds, strict=True):
        assert 0.1 <= wait <= bound + 1e-9
    assert max(waits[3:]) > 0.8, "the cap is reached"
    assert len({round(wait, 9) for wait in waits}) == len(waits), "waits are jittered"
    # Twelve waits of at most 1 s passed in no real time: trio's clock drove them.
    assert trio.current_time() == pytest.approx(sum(waits))


async def test_reset_starts_over_from_the_first_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(0.1, 10.0, rng=random.Random(2))
    await _waits(backoff, 6)
    backoff.reset()
    (first,) = await _waits(backoff, 1)
    assert 0.1 <= first <= 0.2


def test_instances_do_not_wait_in_step() -> None:
    one, other = Backoff(0.1, 10.0), Backoff(0.1, 10.0)
    assert [one.next_delay() for _ in range(5)] != [other.next_delay() for _ in range(5)]


def test_first_wait_must_not_exceed_the_cap() -> None:
    with pytest.raises(ValueError, match="first <= cap"):
        Backoff(2.0, 1.0)
