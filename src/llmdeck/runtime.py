"""What a running llmdeck holds: settings, database, trace writer and gateway."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmdeck.catalog import service as catalog
from llmdeck.core.db import Database, get_database
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
    # Alert evaluation and the retention purge, in the background.
    monitor: MonitoringLoop | None = field(default=None)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        """Prepare the database and start the trace writer."""
        db = prepare_database(settings)
        writer = TraceWriter(
            db, interval=settings.trace_flush_interval, batch_size=settings.trace_batch_size
        )
        gateway = Gateway(db, settings, writer)
        monitor = MonitoringLoop(db, settings).start()
        return cls(settings=settings, db=db, writer=writer, gateway=gateway, monitor=monitor)

    async def stop(self) -> None:
        """Write every queued span and release connections."""
        if self.monitor is not None:
            self.monitor.stop()
        await self.gateway.drain()
        self.writer.close()
        await close_providers()
