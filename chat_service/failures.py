"""One log line for a failure, however deeply trio nested it in groups."""

from __future__ import annotations

__all__ = ["leaf_exceptions", "summarize"]


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc` and its nested groups (or `exc` itself)."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in leaf_exceptions(inner)]


def summarize(exc: BaseException) -> str:
    """ "Type: message" of every leaf of `exc`, joined by "; "."""
    return "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaf_exceptions(exc))
