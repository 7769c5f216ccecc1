"""Capped exponential backoff with jitter, on trio's clock."""

from __future__ import annotations

import random

import trio

__all__ = ["Backoff"]


class Backoff:
    """How long to wait before the next attempt to reach a service.

    The n-th wait since the last `reset()` (n = 1, 2, ...) is drawn uniformly
    from [first, min(cap, first * 2**n)]: the bound doubles per failure up to
    `cap`, and the jitter keeps instances that lost the service together from
    all knocking again at the same moment. Waits run on trio's clock, so a
    `trio.testing.MockClock` drives them in tests.
    """

    def __init__(self, first: float, cap: float, *, rng: random.Random | None = None) -> None:
        if not 0 < first <= cap:
            raise ValueError("need 0 < first <= cap")
        self._first = first
        self._cap = cap
        self._bound = first
        self._rng = rng or random.Random()

    def reset(self) -> None:
        """The service answered: the next wait starts from `first` again."""
        self._bound = self._first

    def next_delay(self) -> float:
        """The next wait in seconds (and one more failure counted)."""
        self._bound = min(self._cap, self._bound * 2)
        return self._rng.uniform(self._first, self._bound)

    async def wait(self) -> None:
        """Sleep for `next_delay()` seconds. Cancellation ends the wait early."""
        await trio.sleep(self.next_delay())
