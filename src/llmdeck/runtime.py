"""What a running llmdeck holds: settings, database, trace writer and gateway."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from llmdeck.catalog import service as catalog
from llmdeck.core.claim import Claim
from llmdeck.core.db import Database, get_database
from llmdeck.core.jobs import JobRunner
from llmdeck.core.settings import Settings
from llmdeck.gateway.service import Gateway
from llmdeck.identity import service as identity
from llmdeck.identity.keycache import KeyCache
from llmdeck.monitoring.loop import MonitoringLoop
from llmdeck.providers.service import close_providers
from llmdeck.tracing.writer import TraceWriter

CLAIM_RETRY_SECONDS = 5.0


def prepare_database(settings: Settings) -> Database:
    """The migrated database, with what must always exist seeded (idempotent)."""
    db = get_database(settings)
    if not db.prepared:
        with db.session() as session:
            identity.ensure_project(session, name=identity.DEFAULT_PROJECT)
            catalog.ensure_builtin_models(session)
            if settings.master_key is not None:
                identity.ensure_master_key(session, secret=settings.master_key.get_secret_value())
        db.prepared = True
    return db


@dataclass
class Runtime:
    settings: Settings
    db: Database
    writer: TraceWriter
    gateway: Gateway
    # Callers checked in the last moment (the gateway, the OTLP receiver, prompt fetches).
    keys: KeyCache
    # The server's background work: alerts and retention, and queued jobs (ingestion, ...).
    monitor: MonitoringLoop | None = field(default=None)
    jobs: JobRunner | None = field(default=None)
    # The right to run it, which one server process per database holds (see core/claim.py).
    claim: Claim | None = field(default=None)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, settings: Settings, *, background: bool = False) -> Runtime:
        """Prepare the database and start the trace writer.

        `background` also starts the server's background work; a CLI command's runtime
        leaves it to the server, so that a short-lived process never claims a queued job.
        Of several server processes on one database, the one holding the claim runs it and
        the others stand by to take over (core/claim.py).
        """
        db = prepare_database(settings)
        writer = TraceWriter(
            db, interval=settings.trace_flush_interval, batch_size=settings.trace_batch_size
        )
        runtime = cls(
            settings=settings,
            db=db,
            writer=writer,
            gateway=Gateway(db, settings, writer),
            keys=KeyCache(db, settings.key_cache_ttl),
        )
        if background and not runtime._claim_background():
            # Another server process runs it; take over should that process end.
            threading.Thread(
                target=runtime._wait_for_claim, name="llmdeck-claim", daemon=True
            ).start()
        return runtime

    def _claim_background(self) -> bool:
        self.claim = Claim.take(self.db)
        if self.claim is None:
            return False
        if self._stopping.is_set():  # claimed just as this process began to stop
            self.claim.release()
            return True
        self.monitor = MonitoringLoop(self.db, self.settings, runtime=self).start()
        self.jobs = JobRunner(self.db, self).start()
        return True

    def _wait_for_claim(self) -> None:
        while not self._stopping.wait(CLAIM_RETRY_SECONDS):
            if self._claim_background():
                return

    def wake_jobs(self) -> None:
        """Tell the job worker a job was queued (it polls anyway)."""
        if self.jobs is not None:
            self.jobs.wake()

    async def stop(self) -> None:
        """Stop background work, write every queued span and release connections."""
        self._stopping.set()
        if self.jobs is not None:
            self.jobs.stop()
        if self.monitor is not None:
            self.monitor.stop()
        if self.claim is not None:
            self.claim.release()
        await self.gateway.drain()
        self.writer.close()
        await close_providers()
