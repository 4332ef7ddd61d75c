"""What the portal's and Open311's routes need from the gateway, handed to them once.

`bots/gateway.py` builds one `PortalContext` when it builds the web app; `portal/web.py`
and `portal/open311.py` read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from cases.filing import CaseDesk
from cases.policy import Policy
from normalizer.messages import utcnow
from store.database import Database
from store.media import MediaStore


@dataclass
class PortalContext:
    """What the public routes need from the gateway."""
    database: Database
    policy: Policy
    desk: CaseDesk
    clock: Callable[[], datetime] = utcnow
    open311_api_key: str | None = None  # None: filing through Open311 is off

    @property
    def media(self) -> MediaStore:
        return MediaStore(self.database)
