"""What a conversation bot is to the pipeline: an Inbound in, deliveries (`normalizer.messages`) out.

Bots never touch a network: the pipeline gives them a transaction-bound `Store` and puts
what they return into the outbox in the same transaction.
"""
from __future__ import annotations

from typing import Protocol

from normalizer.messages import Delivery, Inbound
from store.repos import Store


class Bot(Protocol):
    async def handle(self, inbound: Inbound, store: Store) -> list[Delivery]: ...
