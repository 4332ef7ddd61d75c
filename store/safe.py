"""Guards for values that come from users and end up in a query.

Repositories call `plain` on every user-provided value they put in a filter, so a payload
like `{"$gt": ""}` can never turn into a MongoDB operator.
"""
from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", str, int, float, bool)


class UnsafeValue(ValueError):
    """A user value that is not a plain scalar (a dict, a list, an operator string…)."""


def plain(value: object, kind: type[T] = str) -> T:  # type: ignore[assignment]
    """Return `value` if it is a plain scalar of `kind`; raise `UnsafeValue` otherwise."""
    if isinstance(value, bool) and kind is not bool:
        raise UnsafeValue(f"expected {kind.__name__}, got bool")
    if not isinstance(value, kind):
        raise UnsafeValue(f"expected {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, str) and ("\x00" in value or len(value) > 10_000):
        raise UnsafeValue("string with NUL or too long")
    return value


def safe_key(key: str) -> str:
    """Field names built from user input must not start with `$` nor contain dots."""
    if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
        raise UnsafeValue(f"unsafe field name {key!r}")
    return key
