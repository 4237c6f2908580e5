"""Adding recorded requests to a dataset: a request whose item is already in the current
version is skipped (the same requests twice add nothing and make no version), and every
surface says how many were added and how many were there, in the words an import uses."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmdeck.app import create_app
from llmdeck.cli.main import app
from llmdeck.core.db import Database
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.tracing.writer import SpanRecord, TraceWriter
from tests.test_console import add_user, csrf_of, sign_in
from tests.test_gateway_support import running

QUESTIONS = ("What is 2+2?", "Capital of France?", "Largest planet?")


def llmdeck(*args: str):
    return CliRunner().invoke(app, list(args))


def recorded_requests(db: Database) -> list[str]:
    """The trace ids of three recorded chat calls in the default project."""
    with db.session() as session:
        project_id = identity.get_project_by_name_or_raise(session, name="default").id
    writer = TraceWriter(db, interval=0.05)
    trace_ids = []
    for question in QUESTIONS:
        trace_ids.append(new_trace_id())
        writer.submit(
            SpanRecord(
                project_id=project_id,
                trace_id=trace_ids[-1],
                span_id=new_span_id(),
                name="chat m",
                started_at=datetime.now(UTC),
                model="m",
                input=[{"role": "user", "content": question}],
                output=f"answer to {question}",
            )
        )
    writer.close()
    return trace_ids


def dataset(name: str) -> dict:
    rows = json.loads(llmdeck("datasets", "list", "--json").stdout)
    return next(r for r in rows if r["name"] == name)


def exported_traces(name: str) -> list[str]:
    text = llmdeck("datasets", "export", name).stdout
    return [json.loads(line)["metadata"]["trace_id"] for line in text.splitlines()]


def test_the_cli_adds_the_same_requests_once(db: Database) -> None:
    first, second, third = recorded_requests(db)
    made = llmdeck("datasets", "add-traces", "golden", first, second, "--create")
    assert made.exit_code == 0, made.output
    assert "Created dataset golden." in made.stdout
    assert "Dataset golden is now version 1: 2 added, 0 already in the dataset." in made.stdout

    again = llmdeck("datasets", "add-traces", "golden", second, first)
    assert again.exit_code == 0, again.output
    assert (
        "Dataset golden stays at version 1: all 2 items already in the dataset; nothing added."
        in again.stdout
    )
    assert (dataset("golden")["version"], dataset("golden")["item_count"]) == (1, 2)

    one = llmdeck("datasets", "add-traces", "golden", first)
    assert (
        "Dataset golden stays at version 1: its one item is already in the dataset; "
        "nothing added." in one.stdout
    )

    mixed = llmdeck("datasets", "add-traces", "golden", first, third, second)
    assert "Dataset golden is now version 2: 1 added, 2 already in the dataset." in mixed.stdout
    assert exported_traces("golden") == [first, second, third]


def test_a_request_removed_from_the_dataset_can_be_added_again(db: Database) -> None:
    """Only the current version counts: an item dropped from it is new again."""
    from llmdeck.evals import datasets

    first, second, _ = recorded_requests(db)
    llmdeck("datasets", "add-traces", "golden", first, second, "--create")
    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default").id
        ds = datasets.get_by_name_or_raise(session, project_id=project, name="golden")
        datasets.change(session, dataset=ds, remove=[datasets.items(session, dataset=ds)[0].id])
    back = llmdeck("datasets", "add-traces", "golden", first, second)
    assert "Dataset golden is now version 3: 1 added, 1 already in the dataset." in back.stdout
    assert exported_traces("golden") == [second, first]


def test_the_api_reports_added_and_already_present(database_url) -> None:
    async def scenario():
        async with running() as gw:
            first, second, third = recorded_requests(gw.app.state.runtime.db)
            url = "/api/datasets/picked/traces"
            made = await gw.client.post(
                url, json={"trace_ids": [first, second], "create_dataset": True}
            )
            assert made.status_code == 200, made.text
            body = made.json()
            assert body["name"] == "picked" and "id" in body and "created_at" in body
            assert (body["version"], body["item_count"]) == (1, 2)
            assert (body["added"], body["already_present"]) == (2, 0)

            again = (await gw.client.post(url, json={"trace_ids": [first, second]})).json()
            assert (again["version"], again["item_count"]) == (1, 2)
            assert (again["added"], again["already_present"]) == (0, 2)

            mixed = (await gw.client.post(url, json={"trace_ids": [third, first]})).json()
            assert (mixed["version"], mixed["item_count"]) == (2, 3)
            assert (mixed["added"], mixed["already_present"]) == (1, 1)

    asyncio.run(scenario())


def test_the_console_says_what_adding_requests_added(db: Database) -> None:
    first, second, third = recorded_requests(db)
    with TestClient(create_app(get_settings()), follow_redirects=False) as client:
        add_user(client.app, "b@example.com", "builder")
        sign_in(client, "b@example.com")
        token = csrf_of(client.get("/requests").text)
        # The explorer's "Add to dataset", into a new dataset and then the same rows again.
        picked = {"csrf_token": token, "trace_ids": [first, second]}
        made = client.post("/datasets/from-requests", data={**picked, "new_dataset": "picked"})
        assert made.headers["location"] == "/datasets/picked?added=2"
        page = client.get(made.headers["location"]).text
        assert "Added the requests as version 1: 2 added, 0 already in the dataset." in page

        again = client.post("/datasets/from-requests", data={**picked, "dataset": "picked"})
        assert again.headers["location"] == "/datasets/picked?added=0&already=2"
        page = client.get(again.headers["location"]).text
        assert "All 2 items already in the dataset; nothing added (still version 1)." in page
        assert "Version 1 of 1" in page and "?version=2" not in page

        # The dataset page's own form (trace ids pasted): only the new one is added.
        pasted = {"csrf_token": token, "trace_ids": f"{first}, {third}"}
        mixed = client.post("/datasets/picked/traces", data=pasted)
        assert mixed.headers["location"] == "/datasets/picked?added=1&already=1"
        page = client.get(mixed.headers["location"]).text
        assert "Added the requests as version 2: 1 added, 1 already in the dataset." in page
        assert "Version 2 of 2" in page
        assert page.count(f'href="/requests/{first}"') == 1
