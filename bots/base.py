"""What a conversation bot is to the pipeline: an Inbound in, deliveries out.

Bots never touch a network: the pipeline gives them a transaction-bound `Store` and puts
what they return into the outbox in the same transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from normalizer.messages import Inbound, Outbound
from store.repos import Store


@dataclass(frozen=True)
class Delivery:
    channel: str
    address: str
    message: Outbound


def reply(inbound: Inbound, message: Outbound) -> Delivery:
    """Answer the sender on the channel the message came from, keeping its thread context."""
    if inbound.context and not message.context:
        message = message.model_copy(update={"context": dict(inbound.context)})
    return Delivery(inbound.channel, inbound.sender, message)


class Bot(Protocol):
    async def handle(self, inbound: Inbound, store: Store) -> list[Delivery]: ...
