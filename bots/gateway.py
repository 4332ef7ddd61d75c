"""Everything the gateway runs, on one event loop: channels, web app, workers, scheduler.

`run_bots.py` builds a `Gateway` from the settings; the tests build one directly with
their own database, channels and clock. Start order: channels get their sinks, then the
web app serves the webhook routes the channels offer, then the workers run.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any, Callable, Mapping

from bots.dispatch import Dispatcher
from bots.intake import IntakeBot
from bots.limits import FloodLimits, Limits
from bots.pipeline import Pipeline
from bots.staff import StaffBot, StaffSetup
from cases.calendar import WorkingCalendar
from cases.filing import CaseDesk
from cases.policy import Policy
from cases.report_mail import run_summaries
from cases.sla import SlaSettings, sla_pass
from channels.base import Channel
from channels.outbox import OutboxWorker
from channels.webapp import WebServer, build_app, serve
from normalizer.media import MediaLimits
from normalizer.messages import utcnow
from normalizer.texts import Texts
from portal import PortalContext, portal_routes
from replies.agency_bot import AgencyLoop
from store.database import Database
from store.media import MediaStore
from store.outbox_keys import Kind, outbox_key
from store.repos import unit_of_work
from store.sessions import SessionPool

log = logging.getLogger(__name__)

TRANSACTION_SESSIONS = 8  # the scheduler's, agency loop's, staff's and Open311's transactions at once, at most


class Gateway:
    def __init__(self, database: Database, policy: Policy, channels: Mapping[str, Channel], *,
                 texts: Texts | None = None, clock: Callable[[], datetime] = utcnow,
                 agency_token_secret: str = "", ioc_email: str | None = None,
                 limits: MediaLimits = MediaLimits(), web: tuple[str, int] | None = None,
                 max_body_bytes: int = 1_000_000, scheduler_seconds: float = 60.0,
                 open311_api_key: str | None = None,
                 idle_seconds: float = 0.5, outbox_max_attempts: int = 8, staff: StaffSetup | None = None,
                 sla: SlaSettings = SlaSettings(), workers: int = 2,
                 flood: FloodLimits = FloodLimits()) -> None:
        self.database, self.policy, self.channels = database, policy, dict(channels)
        self.texts = texts or Texts()
        for channel in self.channels.values():  # channels keeping state of their own (tokens, raw mail)
            channel.bind(database)
        self.clock = clock
        self.media = MediaStore(database)
        self.desk = CaseDesk(policy)
        self.calendar = WorkingCalendar.from_policy(policy)
        self.sla = sla
        self.intake = IntakeBot(self.texts, policy, self.desk, clock=clock,
                                max_photo_mb=limits.max_bytes // 1_000_000, max_photos=limits.max_count)
        self.dispatcher = Dispatcher(self.intake)
        self.agency = AgencyLoop(database, policy, self.texts, self.channels, clock, agency_token_secret, ioc_email)
        self.dispatcher.add(self.agency.claims, self.agency.bot)  # agency replies share the inbox
        self.staff = StaffBot(self.texts, policy, staff, self.agency.loop, clock=clock) if staff else None
        if self.staff is not None:  # the staff group and members' private chats
            self.dispatcher.add(self.staff.claims, self.staff)
        self.pipeline = Pipeline(database, self.channels, self.dispatcher, self.media, limits,
                                 flood=Limits(self.texts, flood))
        self.outbox = OutboxWorker(database, self.channels, max_attempts=outbox_max_attempts,
                                   on_window_closed=self.agency.on_window_closed, poll_seconds=idle_seconds)
        self.pipeline.on_queued = self.outbox.accept
        self.sessions = SessionPool(database, "gateway", size=TRANSACTION_SESSIONS)
        self.workers = workers  # loops each of pipeline and outbox: one batch's I/O overlaps the next
        self.web_address, self.max_body_bytes, self.open311_api_key = web, max_body_bytes, open311_api_key
        self.scheduler_seconds, self.idle_seconds = scheduler_seconds, idle_seconds
        self.web: WebServer | None = None
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, workers: bool = True) -> None:
        """Start channels and web app; `workers=False` leaves processing to `drain` (replay)."""
        self.database.transactions = self.sessions  # every transaction on a session the next start can end
        await self.sessions.open()  # ends the last run's, so nothing it left open holds a document
        await self.pipeline.recover()  # before anything new arrives: what the last run left comes first
        for name, channel in self.channels.items():
            await channel.start(self.pipeline.sink(name))
            log.info("channel %s started", name)
        if self.web_address is not None:
            routes = [r for ch in self.channels.values() for r in ch.routes()]
            app = build_app(routes, self.health, max_body_bytes=self.max_body_bytes, extra_routes=portal_routes(
                PortalContext(self.database, self.policy, self.desk, self.clock, self.open311_api_key)))
            self.web = await serve(app, *self.web_address)
            log.info("web app on %s", self.web.url)
        if workers:
            await self.outbox.recover()
            self._start_workers()

    def _start_workers(self) -> None:
        self._tasks = [
            *(asyncio.create_task(self.pipeline.run(self.stopping, self.idle_seconds), name=f"pipeline-{n}")
              for n in range(self.workers)),
            *(asyncio.create_task(self.outbox.run(self.stopping, self.idle_seconds), name=f"outbox-{n}")
              for n in range(self.workers)),
            asyncio.create_task(self._schedule(), name="scheduler"),
            asyncio.create_task(run_summaries(self.database, self.policy, self.texts, self.stopping,
                                              ioc_email=self.sla.ioc_email, clock=self.clock), name="summaries"),
        ]

    async def drain(self) -> None:
        """Process every stored event and send every queued message (replay and tests)."""
        while True:
            await self.pipeline.stored()
            if not (await self.pipeline.process() or await self.outbox.deliver(look_in_database=True)):
                return

    async def health(self) -> dict[str, Any]:
        return {"database": "ok" if await self.database.ping() else "unreachable",
                "channels": sorted(self.channels)}

    async def tick(self) -> None:
        """One scheduler pass: expire stale conversations, then deadlines and escalations."""
        await self.agency.tick()  # forward routed cases to their agencies (replies/forward.py)
        async with unit_of_work(self.database) as store:
            for d in await self.intake.expire(store):
                await store.outbox.enqueue(outbox_key(Kind.EXPIRE, d.channel, d.address, f"{self.clock():%Y%m%d%H%M}"),
                                           d.channel, d.address, d.message)
            if self.staff is not None:  # new urgent and late cases, pushed once to the staff chat
                await self.staff.alerts(store)
        report = await sla_pass(self.database, self.policy, self.calendar, self.texts, self.clock(), self.sla)
        if report.queued or report.late or report.for_ioc:
            log.info("sla: queued %d, late %s, for IOC %s", len(report.queued), report.late, report.for_ioc)

    async def _schedule(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the scheduler must outlive one bad pass
                log.exception("scheduler pass failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.scheduler_seconds)

    async def stop(self) -> None:
        self.stopping.set()
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.stop()
        if self.web is not None:
            await self.web.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pipeline.session.close()
        await self.sessions.close()
        self.database.transactions = None
