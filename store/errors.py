"""What a database error means for the work that met it: wait for the server, or blame the item.

The pipeline, the outbox and the scheduler's loops ask `unavailable(exc)`: True when the
server could not be reached or could not answer (a network error, a server shutting down
or stepping down, a lost commit answer); the same work is tried again once the server is
back and no item is blamed. The e-mail reader asks `verdict(exc)`, which also says when an
error is about the document itself ("permanent": a duplicate key, a document too large, a
bad value) so the mail can be quarantined at once. Everything logs errors with `describe`:
the kind and the server's code, never the message, which may quote the document (a
duplicate key names the phone; a bulk write error holds the whole payload).
"""
from __future__ import annotations

import asyncio
from typing import Literal

from bson.errors import BSONError
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WaitQueueTimeoutError,
    WriteConcernError,
)

Verdict = Literal["transient", "permanent", "unknown"]

# The server's codes for "not now": network and host errors, elections, shutdown, not
# primary, time limits, interrupted operations (MongoDB's retryable-error list and kin).
NOT_NOW = frozenset({6, 7, 24, 46, 50, 63, 89, 91, 134, 150, 189, 234, 251, 262, 9001, 10107,
                     11600, 11602, 13388, 13435, 13436})
# Codes about the document itself: it will be refused every time.
PERMANENT = frozenset({2, 4, 14, 17, 52, 55, 56, 57, 121, 10334, 11000, 11001, 12582, 16733, 17280, 17419})
DUPLICATE_KEY = frozenset({11000, 11001, 12582})
# Labels the driver and server put on errors after which the whole operation may be retried.
_RETRY_LABELS = ("RetryableWriteError", "UnknownTransactionCommitResult", "NoWritesPerformed")


def unavailable(exc: BaseException) -> bool:
    """The database could not do it now (retry the same work later, count no attempt)."""
    if isinstance(exc, (ConnectionFailure, WaitQueueTimeoutError, ExecutionTimeout, WriteConcernError)):
        return True
    if not isinstance(exc, PyMongoError):
        return False
    if any(exc.has_error_label(label) for label in _RETRY_LABELS):
        return True
    return _code(exc) in NOT_NOW


def conflict(exc: BaseException) -> bool:
    """A write conflict with another transaction: redo the transaction at once."""
    return isinstance(exc, PyMongoError) and exc.has_error_label("TransientTransactionError") \
        and not isinstance(exc, ConnectionFailure)


def verdict(exc: BaseException) -> Verdict:
    """For work outside a transaction (the e-mail reader's sink): transient, permanent, or unknown."""
    if unavailable(exc) or conflict(exc) or isinstance(exc, (OSError, asyncio.TimeoutError)):
        return "transient"
    if isinstance(exc, BulkWriteError):
        codes = {error.get("code") for error in exc.details.get("writeErrors", [])}
        if not codes:
            return "transient"  # only the write concern failed
        return "transient" if codes <= NOT_NOW else "permanent"
    if isinstance(exc, OperationFailure):
        return "permanent" if exc.code in PERMANENT else "unknown"
    if isinstance(exc, (BSONError, ValueError, TypeError)):
        return "permanent"  # DocumentTooLarge, InvalidDocument, store.safe.UnsafeValue…
    return "unknown"


def describe(exc: BaseException) -> str:
    """One line for the log and an item's `reason`: the kind and the server's code and name;
    the first line of the message only for errors that are not the server's."""
    if isinstance(exc, PyMongoError) and (code := _code(exc)) is not None:
        return f"{type(exc).__name__}: code {code} {_code_name(exc)}".strip()
    first = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _code(exc: PyMongoError) -> int | None:
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return errors[0].get("code") if errors else None
    return getattr(exc, "code", None)


def _code_name(exc: PyMongoError) -> str:
    details = getattr(exc, "details", None) or {}
    if isinstance(exc, BulkWriteError):
        errors = details.get("writeErrors", [])
        details = errors[0] if errors else {}
    return str(details.get("codeName", "")) if isinstance(details, dict) else ""
