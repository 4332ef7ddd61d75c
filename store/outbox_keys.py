"""The outbox's keys: what each queued message is for, built and read back by one type.

A key is deterministic (the same cause never queues twice: a redelivered event, a retried
scheduler pass) and says what the message is: `OutboxKey(Kind.FORWARD, code, round)` is
stored as "fwd:PA-2026-000123:1". Everything that queues a message builds its key here
(the pipeline, the agency loop, staff commands and alerts, the scheduler, the reports), and
what reads one back (`replies/ingest.py` matching an agency's reply to its case,
`replies/deliver.py` falling back for a result, the staff alerts skipping their own notices)
parses it here: no code splits a key on ":" by itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    REPLY = "in"  # the bot's replies to one inbound event: in:<event id>:<n>
    FORWARD = "fwd"  # a case forwarded to its agency: fwd:<code>:<round>
    APPROVAL = "apr"  # a result to the agency's leader for approval: apr:<code>:<version>
    SEND_BACK = "back"  # a result sent back to the agency: back:<code>:<version>
    RESULT = "result"  # the result to one subscriber: result:<code>:<round>:<channel>:<address>
    STAFF = "staff"  # a staff command's message to a citizen: staff:<code>:<what>:<n>
    STAFF_ALERT = "staff-alert"  # an urgent or late case pushed to the staff chat: staff-alert:<code>:<flag>
    STAFF_UNDELIVERED = "staff-undelivered"  # a message given up on: staff-undelivered:<key>
    STAFF_FAILED = "staff-failed"  # an incoming event given up on: staff-failed:<event id>
    EXPIRE = "expire"  # a conversation closed for silence: expire:<channel>:<address>:<minute>
    REPORT = "report"  # a periodic report: report:<run id>:<address>
    SLA = "sla"  # a deadline alert: sla:<code>:<since>:<alert>


_CASE_KINDS = {Kind.FORWARD, Kind.APPROVAL, Kind.SEND_BACK, Kind.RESULT, Kind.STAFF, Kind.STAFF_ALERT, Kind.SLA}
_TO_STAFF = {Kind.STAFF_ALERT, Kind.STAFF_UNDELIVERED, Kind.STAFF_FAILED}


@dataclass(frozen=True)
class OutboxKey:
    kind: Kind
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return ":".join([self.kind.value, *self.parts])

    @classmethod
    def parse(cls, key: str) -> OutboxKey | None:
        """The key's kind and parts; None for a key no code here built."""
        head, _, rest = key.partition(":")
        try:
            kind = Kind(head)
        except ValueError:
            return None
        return cls(kind, tuple(rest.split(":")) if rest else ())

    @property
    def case_code(self) -> str | None:
        """The code of the case the message is about, for the kinds that carry one."""
        return self.parts[0] if self.kind in _CASE_KINDS and self.parts else None

    @property
    def to_staff(self) -> bool:
        """A notice to the staff chat (one that fails must not raise another)."""
        return self.kind in _TO_STAFF


def outbox_key(kind: Kind, *parts: object) -> str:
    """The stored key for a message of `kind` about `parts`."""
    return str(OutboxKey(kind, tuple(str(p) for p in parts)))


def reply_prefix(record_id: object) -> str:
    """The keys of the bot's replies to one inbound event start with this ("in:<id>:")."""
    return outbox_key(Kind.REPLY, record_id, "")
