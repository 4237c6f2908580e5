"""The database: the one place where SQLite and PostgreSQL part ways."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from llmdeck.core.settings import Settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every domain's tables."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the API) proceed while the trace writer commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    # SQLite leaves foreign keys off unless asked, per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
    # Wait for a competing writer (another thread or server process) instead of failing.
    cursor.execute("PRAGMA busy_timeout=10000")
    # In WAL mode NORMAL is crash-safe for the database; it only risks the last commits on
    # power loss, and saves an fsync per transaction.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured database, with per-dialect settings applied."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        Path(settings.home).mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine and its session factory; one per process and settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.prepared = False  # set once the always-present rows are seeded

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def migrate(self) -> None:
        """Apply every pending migration."""
        from llmdeck.core.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}
_lock = threading.Lock()


def get_database(settings: Settings) -> Database:
    """The process's database for these settings, migrated on first use."""
    url = settings.resolved_database_url
    with _lock:
        if url not in _databases:
            db = Database(settings)
            db.migrate()
            _databases[url] = db
        return _databases[url]


def forget_databases() -> None:
    """Dispose every cached engine (tests, and `llmdeck up` shutdown)."""
    with _lock:
        for db in _databases.values():
            db.dispose()
        _databases.clear()


def after_commit_changing(watched: tuple[type, ...], callback: Callable[[], None]) -> None:
    """Call `callback` after each commit, in this process, that added, changed or deleted an
    instance of one of `watched` (in-memory caches clear themselves this way)."""
    flag = f"llmdeck_changed_{id(callback)}"

    @event.listens_for(Session, "after_flush")
    def _note(session: Session, _context) -> None:
        if any(isinstance(o, watched) for o in (*session.new, *session.dirty, *session.deleted)):
            session.info[flag] = True

    @event.listens_for(Session, "after_commit")
    def _notify(session: Session) -> None:
        if session.info.pop(flag, False):
            callback()
