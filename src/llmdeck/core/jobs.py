"""Background jobs: rows in the `jobs` table, run by a small in-process worker.

A job is queued as a row (so it survives a restart and any process can see its progress),
then claimed atomically by a worker thread that runs it on its own event loop. Domains
register a handler per job kind: `register("knowledge.ingest", handler)`. At scale the same
handlers can run elsewhere (Ray); here one worker thread per process is enough.

A claim is a lease: the worker stamps `heartbeat_at` every third of `Settings.job_lease`
while the handler runs. A running job whose heartbeat is older than the lease belonged to a
process that died (kill -9, lost machine); any worker claims it again, and the handler runs
from the start, so handlers must be resumable (skip what they already stored). A worker that
finds its claim taken over stops its handler rather than run it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, and_, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from llmdeck.core.db import Base, Database, UTCDateTime, utcnow
from llmdeck.core.errors import LLMDeckError, NotFound
from llmdeck.core.ids import new_id

log = logging.getLogger(__name__)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|done|failed
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(String(500), default="")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The lease: which worker runs it, when it last said so, and how many claims it took.
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class JobContext:
    """What a running handler gets: the job's payload, a progress reporter and the runtime."""

    def __init__(self, db: Database, job: Job, runtime: Any, *, min_interval: float = 0.3):
        self.db = db
        self.job_id = job.id
        self.project_id = job.project_id
        self.payload = dict(job.payload or {})
        self.runtime = runtime
        self._min_interval = min_interval
        self._last = 0.0

    def progress(self, done: int, total: int, message: str = "", *, force: bool = False) -> None:
        """Record progress (throttled: at most a few writes a second)."""
        now = time.monotonic()
        if not force and now - self._last < self._min_interval and done < total:
            return
        self._last = now
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(done=done, total=total, message=message[:500])
            )


Handler = Callable[[JobContext], Awaitable[dict[str, Any] | None]]
_handlers: dict[str, Handler] = {}


def register(kind: str, handler: Handler) -> None:
    """Make `kind` runnable; a domain calls this when its module is imported."""
    _handlers[kind] = handler


def enqueue(session: Session, *, kind: str, project_id: str | None, payload: dict[str, Any]) -> Job:
    """Queue a job; a worker picks it up once the session commits."""
    job = Job(kind=kind, project_id=project_id, payload=payload, status="queued")
    session.add(job)
    session.flush()
    return job


def get_or_raise(session: Session, *, job_id: str, project_id: str | None = None) -> Job:
    job = session.get(Job, job_id)
    if job is None or (project_id is not None and job.project_id != project_id):
        raise NotFound(f"No job {job_id!r} in this project.", param="job_id")
    return job


def _claim(session: Session, *, worker: str, lease: float) -> Job | None:
    """Take the oldest queued job, or a running one whose lease ran out.

    The conditional UPDATE (same condition as the SELECT) makes this safe across processes:
    of two workers racing for a row, one updates it and the other sees no row changed.
    """
    kinds = list(_handlers)
    if not kinds:
        return None
    expired = utcnow() - timedelta(seconds=lease)
    claimable = or_(
        Job.status == "queued",
        and_(
            Job.status == "running",
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < expired),
        ),
    )
    candidates = session.scalars(
        select(Job.id).where(claimable, Job.kind.in_(kinds)).order_by(Job.created_at).limit(5)
    ).all()
    for job_id in candidates:
        claimed = session.execute(
            update(Job).where(Job.id == job_id, claimable).values(**_claimed_by(worker))
        ).rowcount
        if claimed:
            session.commit()
            return session.get(Job, job_id)
    session.rollback()
    return None


CLI_WORKER = "cli:"  # the prefix of claims made by CLI commands


def claim_job(db: Database, job_id: str) -> str | None:
    """Claim one queued job for this process to run in the foreground (a CLI command); the
    claim's owner name, or None when a server's worker already has the job."""
    worker = f"{CLI_WORKER}{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
    with db.session() as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(**_claimed_by(worker))
        ).rowcount
    return worker if claimed else None


def _claimed_by(worker: str) -> dict[str, Any]:
    """The columns a claim sets."""
    now = utcnow()
    return {
        "status": "running",
        "started_at": now,
        "heartbeat_at": now,
        "claimed_by": worker,
        "attempts": Job.attempts + 1,
    }


def _beat(db: Database, job_id: str, worker: str) -> bool:
    """Renew the lease; False when another worker took the job over."""
    with db.session() as session:
        return bool(
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.claimed_by == worker, Job.status == "running")
                .values(heartbeat_at=utcnow())
            ).rowcount
        )


async def _heartbeat(db: Database, job: Job, worker: str, every: float, task: asyncio.Task):
    while True:
        await asyncio.sleep(every)
        try:
            held = await anyio.to_thread.run_sync(_beat, db, job.id, worker)
        except Exception:  # a database hiccup: try again at the next beat
            log.warning("could not renew the lease of job %s", job.id, exc_info=True)
            continue
        if not held:
            log.warning("job %s was taken over by another worker; stopping here", job.id)
            task.cancel()
            return


async def run_one(
    db: Database, job: Job, runtime: Any, *, worker: str | None = None, lease: float = 30.0
) -> None:
    """Run a claimed job to its end, recording the outcome (handlers' errors never escape).

    With `worker` (the claim's owner), the lease is renewed while the handler runs, and the
    outcome is only written while the claim is still ours.
    """
    ctx = JobContext(db, job, runtime)
    status, result, error = "done", None, None
    handler = asyncio.ensure_future(_handlers[job.kind](ctx))
    beat = (
        asyncio.ensure_future(_heartbeat(db, job, worker, lease / 3, handler)) if worker else None
    )
    try:
        result = await handler
    except asyncio.CancelledError:
        if beat is None or not beat.done():
            raise
        return  # the lease was lost: the new owner records the outcome
    except LLMDeckError as exc:
        status, error = "failed", exc.message
    except Exception as exc:  # a failing job must not stop the worker
        log.exception("job %s (%s) failed", job.id, job.kind)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
    query = update(Job).where(Job.id == job.id)
    if worker:
        query = query.where(Job.claimed_by == worker)
    with db.session() as session:
        session.execute(
            query.values(status=status, result=result, error=error, finished_at=utcnow())
        )


class JobRunner:
    """One worker thread with its own event loop, polling the jobs table.

    Up to `max_jobs` jobs run at once on that loop (an experiment waiting on a slow model
    does not hold up an ingestion). Stopping cancels them and hands their claims back, so
    another process (or this one, restarted) resumes them at once.
    """

    def __init__(
        self, db: Database, runtime: Any, *, poll_interval: float = 0.25, max_jobs: int = 4
    ):
        self.db = db
        self.runtime = runtime
        self.poll_interval = poll_interval
        self.max_jobs = max_jobs
        self.lease = db.settings.job_lease
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmdeck-jobs", daemon=True)

    def start(self) -> JobRunner:
        self._requeue_abandoned()
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)

    def _requeue_abandoned(self) -> None:
        # Only safe for one process per database (SQLite, local mode): a job left running by
        # a server process that died is started again at once. Elsewhere other replicas may
        # be busy with theirs: an abandoned job waits for its lease to run out (see `_claim`).
        # A CLI command running its own job in the foreground (`claim_job`) keeps its lease.
        if not self.db.settings.is_sqlite:
            return
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(
                    Job.status == "running",
                    or_(Job.claimed_by.is_(None), ~Job.claimed_by.startswith(CLI_WORKER)),
                )
                .values(status="queued")
            )

    def _claim_one(self) -> Job | None:
        try:
            with self.db.sessionmaker() as session:
                job = _claim(session, worker=self.worker, lease=self.lease)
                if job is not None:
                    session.expunge(job)
                return job
        except Exception:
            log.exception("could not poll the jobs table")
            return None

    def _release(self, job_id: str) -> None:
        """Hand a claim back (on stop): the job is queued again for whoever comes next."""
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.claimed_by == self.worker, Job.status == "running")
                .values(status="queued", claimed_by=None, heartbeat_at=None)
            )

    async def _main(self) -> None:
        active: dict[str, asyncio.Task] = {}
        try:
            while not self._stop.is_set():
                job = None
                if len(active) < self.max_jobs:
                    job = await anyio.to_thread.run_sync(self._claim_one)
                if job is not None:
                    task = asyncio.ensure_future(
                        run_one(self.db, job, self.runtime, worker=self.worker, lease=self.lease)
                    )
                    active[job.id] = task
                    task.add_done_callback(lambda _, j=job.id: active.pop(j, None))
                    continue
                await anyio.to_thread.run_sync(self._wake.wait, self.poll_interval)
                self._wake.clear()
        finally:
            for job_id, task in list(active.items()):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                with contextlib.suppress(Exception):
                    self._release(job_id)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()
