"""What a database error means for the work that met it: wait for the server, or give up on the item.

The pipeline, the outbox and the scheduler's loops call `unavailable(exc)`: True when the
server could not be reached or could not answer (a network error, a server shutting down or
stepping down, a lost commit answer); the same work is then tried again once the server is
back, and no item is blamed for it. Anything else (a duplicate key, a document too large, a
bad value, an unknown error) is a fault of the work itself: it is counted against the item
and, past its attempts, recorded as failed, so it can never stop the line behind it.
"""
from __future__ import annotations

from pymongo.errors import ConnectionFailure, PyMongoError, WaitQueueTimeoutError

# The server's codes for "not now" (MongoDB's retryable-error list: shutting down, not
# primary, network and host errors, interrupted by a stepdown, exceeded time limit).
_NOT_NOW = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 63, 150, 234})
# Labels the driver and server put on errors the whole operation may be retried after.
_RETRY_LABELS = ("RetryableWriteError", "UnknownTransactionCommitResult", "NoWritesPerformed")
DUPLICATE_KEY = frozenset({11000, 11001, 12582})


def unavailable(exc: BaseException) -> bool:
    """The database could not do it now (retry the same work later, count no attempt)."""
    if isinstance(exc, (ConnectionFailure, WaitQueueTimeoutError)):
        return True
    if not isinstance(exc, PyMongoError):
        return False
    if any(exc.has_error_label(label) for label in _RETRY_LABELS):
        return True
    return getattr(exc, "code", None) in _NOT_NOW


def conflict(exc: BaseException) -> bool:
    """A write conflict with another transaction: redo the transaction at once."""
    return isinstance(exc, PyMongoError) and exc.has_error_label("TransientTransactionError") \
        and not isinstance(exc, ConnectionFailure)


def duplicate_key(exc: BaseException) -> bool:
    """The write met a unique key that is already there (also inside a bulk write's details)."""
    code = getattr(exc, "code", None)
    if code in DUPLICATE_KEY:
        return True
    details = getattr(exc, "details", None) or {}
    errors = details.get("writeErrors", []) if isinstance(details, dict) else []
    return bool(errors) and all(e.get("code") in DUPLICATE_KEY for e in errors)


def describe(exc: BaseException) -> str:
    """One line for the log and an item's `reason`. A server error is told by its code and
    name only: its message may quote the document (a duplicate key names the phone)."""
    code = getattr(exc, "code", None)
    if isinstance(exc, PyMongoError) and code is not None:
        name = (getattr(exc, "details", None) or {}).get("codeName", "")
        return f"{type(exc).__name__}: code {code} {name}".strip()
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:200]
