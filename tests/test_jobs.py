"""The job runner's lease: a job whose worker died is claimed again, never twice at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from llmdeck.core import jobs
from llmdeck.core.db import Database, utcnow


async def _noop(ctx: jobs.JobContext) -> dict:
    return {"ran": ctx.payload["n"]}


def _queue(db: Database, n: int = 1) -> str:
    with db.session() as session:
        return jobs.enqueue(session, kind="test.noop", project_id=None, payload={"n": n}).id


def test_a_job_is_claimed_once_and_again_when_its_lease_runs_out(db: Database) -> None:
    jobs.register("test.noop", _noop)
    job_id = _queue(db)
    with db.sessionmaker() as session:
        claimed = jobs._claim(session, worker="a", lease=30)
    assert claimed is not None and claimed.id == job_id and claimed.attempts == 1
    with db.sessionmaker() as session:
        assert jobs._claim(session, worker="b", lease=30) is None  # a's lease is fresh
    assert jobs._beat(db, job_id, "a")
    # Worker a dies: its heartbeat grows old, and b takes the job over.
    with db.session() as session:
        session.execute(
            update(jobs.Job)
            .where(jobs.Job.id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=60))
        )
    with db.sessionmaker() as session:
        again = jobs._claim(session, worker="b", lease=30)
    assert again is not None and again.id == job_id and again.attempts == 2
    assert not jobs._beat(db, job_id, "a")  # a, if it were still alive, learns it lost
    asyncio.run(jobs.run_one(db, again, None, worker="b", lease=30))
    with db.session() as session:
        row = jobs.get_or_raise(session, job_id=job_id)
        assert (row.status, row.result, row.claimed_by) == ("done", {"ran": 1}, "b")


def test_a_worker_that_lost_its_lease_does_not_record_an_outcome(db: Database) -> None:
    async def slow(ctx: jobs.JobContext) -> dict:
        await asyncio.sleep(5)
        return {"late": True}

    jobs.register("test.slow", slow)
    with db.session() as session:
        job_id = jobs.enqueue(session, kind="test.slow", project_id=None, payload={}).id
    with db.sessionmaker() as session:
        job = jobs._claim(session, worker="a", lease=0.3)
    with db.session() as session:  # another worker takes over while a runs
        session.execute(update(jobs.Job).where(jobs.Job.id == job_id).values(claimed_by="b"))
    asyncio.run(asyncio.wait_for(jobs.run_one(db, job, None, worker="a", lease=0.3), 3))
    with db.session() as session:
        row = jobs.get_or_raise(session, job_id=job_id)
        assert (row.status, row.result, row.claimed_by) == ("running", None, "b")


def test_stopping_the_runner_hands_running_jobs_back(db: Database) -> None:
    """A server shutting down cancels its jobs and queues them again for the next worker."""
    import time

    started = []

    async def long(ctx: jobs.JobContext) -> dict:
        started.append(ctx.job_id)
        await asyncio.sleep(60)
        return {}

    jobs.register("test.long", long)
    with db.session() as session:
        job_id = jobs.enqueue(session, kind="test.long", project_id=None, payload={}).id
    runner = jobs.JobRunner(db, None, poll_interval=0.05).start()
    deadline = time.monotonic() + 10
    while not started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started == [job_id]
    with db.session() as session:
        assert jobs.get_or_raise(session, job_id=job_id).claimed_by == runner.worker
    runner.stop()
    with db.session() as session:
        row = jobs.get_or_raise(session, job_id=job_id)
        assert (row.status, row.claimed_by, row.finished_at) == ("queued", None, None)


def test_a_job_a_cli_runs_in_the_foreground_is_claimed_like_any_other(db: Database) -> None:
    """`llmdeck kb add` claims its job: a server's worker then leaves it alone, and a job a
    server already took is not run a second time by the CLI."""
    jobs.register("test.noop", _noop)
    job_id = _queue(db)
    owner = jobs.claim_job(db, job_id)
    assert owner is not None and owner.startswith("cli:")
    assert jobs.claim_job(db, job_id) is None  # one claim at a time
    with db.sessionmaker() as session:
        assert jobs._claim(session, worker="server", lease=30) is None
    with db.session() as session:
        job = jobs.get_or_raise(session, job_id=job_id)
        session.expunge(job)
    asyncio.run(jobs.run_one(db, job, None, worker=owner, lease=30))
    with db.session() as session:
        row = jobs.get_or_raise(session, job_id=job_id)
        assert (row.status, row.result, row.claimed_by, row.attempts) == (
            "done",
            {"ran": 1},
            owner,
            1,
        )

    taken = _queue(db, n=2)
    with db.sessionmaker() as session:
        assert jobs._claim(session, worker="server", lease=30).id == taken
    assert jobs.claim_job(db, taken) is None


def test_a_starting_server_leaves_a_cli_job_alone(db: Database) -> None:
    """On SQLite a starting runner requeues the jobs its dead predecessor left running, but
    not the one a CLI command is running in the foreground."""
    if not db.settings.is_sqlite:
        pytest.skip("only SQLite requeues at start; elsewhere leases decide")
    jobs.register("test.noop", _noop)
    abandoned, foreground = _queue(db), _queue(db, n=2)
    with db.sessionmaker() as session:
        assert jobs._claim(session, worker="dead-server", lease=30).id == abandoned
    owner = jobs.claim_job(db, foreground)
    jobs.JobRunner(db, None)._requeue_abandoned()
    with db.session() as session:
        assert jobs.get_or_raise(session, job_id=abandoned).status == "queued"
        row = jobs.get_or_raise(session, job_id=foreground)
        assert (row.status, row.claimed_by) == ("running", owner)
