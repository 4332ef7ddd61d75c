"""Which periodic summaries were already sent: one document per (kind, period start).

Called by `cases.report_mail.send_due_summaries`: it skips a period that is `done`, and
`record`s a period in the same transaction that queues its e-mails, so a restart or a second
pass never sends a summary twice.
"""
from __future__ import annotations

from datetime import datetime

from store.base import Repo
from store.safe import plain


class ReportRunRepo(Repo):
    async def done(self, run_id: str) -> bool:
        """Whether the summary `run_id` ("month:20260301"…) was recorded as sent."""
        return await self.db.report_runs.find_one({"_id": plain(run_id)}, session=self.s) is not None

    async def record(self, run_id: str, at: datetime, received: int) -> None:
        """Mark `run_id` sent; raises pymongo's DuplicateKeyError if another pass did first
        (which aborts the caller's transaction, and with it the e-mails it queued)."""
        await self.db.report_runs.insert_one({"_id": plain(run_id), "at": at, "received": received},
                                             session=self.s)
