"""Which process runs the background work when several serve the same database.

`llmdeck up --workers N` (or several hosts on one PostgreSQL) runs N processes that all
serve requests; alerts, retention, drift reports and queued jobs must run in one of them.
The claim is an exclusive lock held for the life of the process: an advisory lock on
PostgreSQL, an `flock` beside the SQLite file. Either is released by the operating system
or the database when its holder dies, however it dies, so another process can take over.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Connection, text

from llmdeck.core.db import Database

# An arbitrary constant naming this lock among the database's advisory locks.
_ADVISORY_KEY = 0x6C6D_6463_6B62_67  # "lmdckbg"


class Claim:
    """Held by at most one process per database at a time."""

    def __init__(self, *, fd: int | None = None, connection: Connection | None = None):
        self._fd = fd
        self._connection = connection

    @classmethod
    def take(cls, db: Database) -> Claim | None:
        """The claim if no other process holds it, else None (never waits)."""
        if db.engine.dialect.name == "postgresql":
            connection = db.engine.connect()
            query = text("SELECT pg_try_advisory_lock(:key)")
            if connection.execute(query, {"key": _ADVISORY_KEY}).scalar():
                return cls(connection=connection)
            connection.close()
            return None
        path = db.engine.url.database
        if not path or path == ":memory:":
            return cls()  # a private database: no other process can share it
        try:
            import fcntl
        except ImportError:  # Windows: one process per database
            return cls()
        fd = os.open(
            Path(path).with_name(Path(path).name + ".background.lock"), os.O_CREAT | os.O_RDWR
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return cls(fd=fd)

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()  # ends the session, and with it the advisory lock
            self._connection = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
