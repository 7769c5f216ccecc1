"""Query parameters of the HTTP API: parsed and checked before a request is
served, so a bad value is answered with HTTP 400 naming the parameter
(`invalid_<name>`) instead of reaching the hub or Redis."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, overload

from ..realtime.message import MAX_EPOCH_CHARS, MAX_SEQ, FrameError, Since, parse_since
from .access import Refused

__all__ = ["BadParameter", "integer_parameter", "since_parameters"]

# Digits only: no sign, no spaces, no exponent; sixteen hold MAX_SEQ (2**53 - 1),
# and the bound keeps int() off huge strings.
_DIGITS: Final = re.compile(r"[0-9]{1,16}")


class BadParameter(Refused):
    """A query parameter is missing where it is required, or has a bad
    value: refused with 400 `invalid_<name>`.

    Attributes:
        name: the parameter's name.
    """

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(400, f"invalid_{name}", detail)
        self.name = name


@overload
def integer_parameter(
    args: Mapping[str, str], name: str, *, low: int, high: int, default: int
) -> int: ...


@overload
def integer_parameter(
    args: Mapping[str, str], name: str, *, low: int, high: int, default: None = None
) -> int | None: ...


def integer_parameter(
    args: Mapping[str, str], name: str, *, low: int, high: int, default: int | None = None
) -> int | None:
    """The integer `name` of `args` (`default` when absent), written in
    decimal digits, from `low` to `high`.

    Raises:
        BadParameter: it is present and not such an integer.
    """
    text = args.get(name)
    if text is None:
        return default
    if _DIGITS.fullmatch(text) is None or not low <= int(text) <= high:
        raise BadParameter(name, f"{name} must be an integer from {low} to {high}")
    return int(text)


def since_parameters(args: Mapping[str, str]) -> Since | None:
    """The recovery position of `since=<seq>&epoch=<epoch>`, or None when
    neither is there; the same rules as a `subscribe` frame's `since`.

    Raises:
        BadParameter: one is there without the other, `since` is not an
            integer from 0 to MAX_SEQ, or `epoch` is longer than
            MAX_EPOCH_CHARS.
    """
    if "since" not in args and "epoch" not in args:
        return None
    if "epoch" not in args:
        raise BadParameter("epoch", "epoch is required with since (both come from `subscribed`)")
    if "since" not in args:
        raise BadParameter("since", "since is required with epoch (the last seq received)")
    seq = integer_parameter(args, "since", low=0, high=MAX_SEQ)
    try:
        return parse_since(args["epoch"], seq)
    except FrameError:
        raise BadParameter("epoch", f"epoch must be at most {MAX_EPOCH_CHARS} characters") from None
