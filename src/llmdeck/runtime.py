"""What a running llmdeck holds: settings, database, trace writer and gateway."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmdeck.catalog import service as catalog
from llmdeck.core.db import Database, get_database
from llmdeck.core.jobs import JobRunner
from llmdeck.core.settings import Settings
from llmdeck.gateway.service import Gateway
from llmdeck.identity import service as identity
from llmdeck.monitoring.loop import MonitoringLoop
from llmdeck.providers.service import close_providers
from llmdeck.tracing.writer import TraceWriter


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
    # The server's background work: alerts and retention, and queued jobs (ingestion, ...).
    monitor: MonitoringLoop | None = field(default=None)
    jobs: JobRunner | None = field(default=None)

    @classmethod
    def start(cls, settings: Settings, *, background: bool = False) -> Runtime:
        """Prepare the database and start the trace writer.

        `background` also starts the server's background work; a CLI command's runtime
        leaves it to the server, so that a short-lived process never claims a queued job.
        """
        db = prepare_database(settings)
        writer = TraceWriter(
            db, interval=settings.trace_flush_interval, batch_size=settings.trace_batch_size
        )
        runtime = cls(
            settings=settings, db=db, writer=writer, gateway=Gateway(db, settings, writer)
        )
        if background:
            runtime.monitor = MonitoringLoop(db, settings, runtime=runtime).start()
            runtime.jobs = JobRunner(db, runtime).start()
        return runtime

    def wake_jobs(self) -> None:
        """Tell the job worker a job was queued (it polls anyway)."""
        if self.jobs is not None:
            self.jobs.wake()

    async def stop(self) -> None:
        """Stop background work, write every queued span and release connections."""
        if self.jobs is not None:
            self.jobs.stop()
        if self.monitor is not None:
            self.monitor.stop()
        await self.gateway.drain()
        self.writer.close()
        await close_providers()
