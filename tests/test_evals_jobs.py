"""Experiments run as durable jobs: a server killed mid-run (kill -9) leaves a job that the
restarted server (SQLite: at start; PostgreSQL: once the lease runs out) takes up again, and
the experiment finishes with every item scored exactly once."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from llmdeck.core.jobs import Job
from llmdeck.core.settings import Settings
from llmdeck.evals.background import EXPERIMENT_JOB
from llmdeck.evals.models import ExperimentResult
from llmdeck.runtime import prepare_database
from tests.conftest import free_port, start_server, stop_server
from tests.test_evals_support import EchoUpstream

ITEMS = 16


class SlowEcho(EchoUpstream):
    """Echoes like EchoUpstream, a moment later (so a run is still going when killed)."""

    delay = 0.3

    async def chat(self, request):
        await asyncio.sleep(self.delay)
        return await super().chat(request)


@pytest.fixture
def slow_echo():
    server = SlowEcho()
    server.start(free_port())
    yield server
    server.stop()


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_an_experiment_survives_kill_9_of_its_server(tmp_path, database_url, slow_echo) -> None:
    home = tmp_path / "home"
    lease = {"LLMDECK_JOB_LEASE": "2"}  # a dead worker's job is taken over after 2 s
    server = start_server(home, database_url=database_url, extra_env=lease)
    try:
        with server.client() as http:
            model = {
                "alias": "echo",
                "provider": "openai",
                "upstream_name": "echo-model",
                "base_url": slow_echo.url,
            }
            assert http.post("/api/models", json=model).status_code == 201
            items = [
                {"input": {"input": f"item {i}"}, "expected": f"item {i}"} for i in range(ITEMS)
            ]
            assert http.post("/api/datasets", json={"name": "d", "items": items}).status_code == 201
            created = http.post(
                "/api/experiments",
                json={
                    "dataset": "d",
                    "target": {"type": "model", "model": "echo"},
                    "metrics": ["exact_match"],
                    "concurrency": 2,
                },
            )
            assert created.status_code == 201, created.text
            exp_id = created.json()["id"]
            assert created.json()["status"] == "queued"
            progress = _wait(
                lambda: (
                    (e := http.get(f"/api/experiments/{exp_id}").json())["completed"] >= 4 and e
                ),
                60,
                "the first results",
            )
            assert progress["status"] == "running" and progress["completed"] < ITEMS
        server.process.kill()  # SIGKILL: the job stays claimed by a process that is gone
        server.process.wait(timeout=30)
        hits_at_kill = slow_echo.hits

        server = start_server(home, database_url=database_url, extra_env=lease)
        with server.client() as http:
            done = _wait(
                lambda: (
                    (e := http.get(f"/api/experiments/{exp_id}").json())["status"] == "done" and e
                ),
                90,
                "the experiment to finish after the restart",
            )
            results = http.get(f"/api/experiments/{exp_id}/results").json()
        assert done["completed"] == done["total"] == ITEMS
        assert done["summary"]["metrics"]["exact_match"] == 1.0
        assert sorted(r["output"] for r in results) == sorted(f"item {i}" for i in range(ITEMS))
        # Only what was not stored before the kill was asked again.
        assert slow_echo.hits - hits_at_kill <= ITEMS - progress["completed"]
        db = prepare_database(Settings(home=home, database_url=database_url))
        with db.session() as session:
            stored = session.scalar(
                select(func.count(ExperimentResult.id)).where(
                    ExperimentResult.experiment_id == exp_id
                )
            )
            distinct = session.scalar(
                select(func.count(func.distinct(ExperimentResult.item_id))).where(
                    ExperimentResult.experiment_id == exp_id
                )
            )
            job = session.scalar(select(Job).where(Job.kind == EXPERIMENT_JOB))
        assert stored == distinct == ITEMS
        assert (job.status, job.attempts) == ("done", 2)
    finally:
        stop_server(server)


def test_cli_resume_refuses_an_experiment_a_server_is_running(db) -> None:
    """`llmdeck eval resume` runs in the foreground; it leaves a queued or running job alone."""
    import subprocess
    import sys

    from llmdeck.evals import background, datasets, service
    from llmdeck.evals.schemas import ExperimentCreate
    from llmdeck.identity import service as identity
    from llmdeck.identity.schemas import Principal

    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default")
        datasets.create(session, project_id=project.id, name="d", items=[{"input": {"input": "x"}}])
        experiment = service.create(
            session,
            project_id=project.id,
            data=ExperimentCreate(
                dataset="d", target={"type": "model", "model": "smollm2-135m"}, metrics=["contains"]
            ),
        )
        principal = Principal(project_id=project.id, project_name=project.name, role="admin")
        background.queue_run(session, experiment=experiment, principal=principal)
        exp_id = experiment.id
    with db.session() as session, pytest.raises(Exception, match="already running"):
        background.queue_run(
            session,
            experiment=service.get_or_raise(session, project_id=project.id, experiment_id=exp_id),
            principal=principal,
        )
    cli = subprocess.run(
        [sys.executable, "-m", "llmdeck", "eval", "resume", exp_id],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1 and "running this experiment as a job" in cli.stderr, cli.stderr
