"""Importing a dataset file: rows already in the dataset are skipped (the same file twice
adds nothing), and every surface says how many were added and how many were there."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmdeck.app import create_app
from llmdeck.cli.main import app
from llmdeck.core.settings import get_settings
from tests.test_console import add_user, csrf_of, sign_in
from tests.test_gateway_support import running

QA = (
    '{"input": {"question": "2+2?"}, "expected": "4", "metadata": {"topic": "math"}}\n'
    '{"input": {"question": "Capital of France?"}, "expected": "Paris"}\n'
    '{"question": "Largest planet?", "expected": "Jupiter"}\n'
)
# Two rows of QA written another way (keys in another order) and two new ones, one of them
# twice: a file's own repeats are kept as written.
MORE = (
    '{"metadata": {"topic": "math"}, "expected": "4", "input": {"question": "2+2?"}}\n'
    '{"expected": "Paris", "question": "Capital of France?"}\n'
    '{"input": {"question": "Capital of Italy?"}, "expected": "Rome"}\n'
    '{"input": {"question": "Capital of Italy?"}, "expected": "Rome"}\n'
    '{"input": {"question": "2+2?"}, "expected": "4", "metadata": {"topic": "sums"}}\n'
)


def llmdeck(*args: str):
    return CliRunner().invoke(app, list(args))


def exported(name: str) -> list[dict]:
    text = llmdeck("datasets", "export", name).stdout
    return [json.loads(line) for line in text.splitlines()]


def dataset(name: str) -> dict:
    rows = json.loads(llmdeck("datasets", "list", "--json").stdout)
    return next(r for r in rows if r["name"] == name)


def test_importing_the_same_file_twice_adds_nothing(db, tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(QA)
    first = llmdeck("datasets", "import", "qa", str(qa))
    assert first.exit_code == 0, first.output
    assert "Dataset qa is now version 1: 3 added, 0 already in the dataset." in first.stdout

    again = llmdeck("datasets", "import", "qa", str(qa))
    assert again.exit_code == 0, again.output
    assert (
        "Dataset qa stays at version 1: all 3 items already in the dataset; nothing added."
        in again.stdout
    )
    assert (dataset("qa")["version"], dataset("qa")["item_count"]) == (1, 3)

    more = tmp_path / "more.jsonl"
    more.write_text(MORE)
    some = llmdeck("datasets", "import", "qa", str(more))
    assert "Dataset qa is now version 2: 3 added, 2 already in the dataset." in some.stdout
    items = exported("qa")
    assert [i["input"]["question"] for i in items] == [
        "2+2?",
        "Capital of France?",
        "Largest planet?",
        "Capital of Italy?",
        "Capital of Italy?",
        "2+2?",
    ]
    assert items[-1]["metadata"] == {"topic": "sums"}  # other metadata: another item

    # A CSV row equal to a stored item is skipped too; one with another expected is new.
    csv = tmp_path / "qa.csv"
    csv.write_text("question,expected\nLargest planet?,Jupiter\nLargest planet?,Saturn\n")
    mixed = llmdeck("datasets", "import", "qa", str(csv))
    assert "is now version 3: 1 added, 1 already in the dataset." in mixed.stdout


def test_a_removed_item_imported_again_comes_back(db, tmp_path: Path) -> None:
    """Only the current version counts: an item dropped from it is new again."""
    from llmdeck.evals import datasets
    from llmdeck.identity import service as identity

    qa = tmp_path / "qa.jsonl"
    qa.write_text(QA)
    llmdeck("datasets", "import", "qa", str(qa))
    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default").id
        ds = datasets.get_by_name_or_raise(session, project_id=project, name="qa")
        first = datasets.items(session, dataset=ds)[0]
        datasets.change(session, dataset=ds, remove=[first.id])
    back = llmdeck("datasets", "import", "qa", str(qa))
    assert "Dataset qa is now version 3: 1 added, 2 already in the dataset." in back.stdout


def test_the_api_reports_added_and_already_present(database_url) -> None:
    async def scenario():
        async with running() as gw:
            c = gw.client
            url = "/api/datasets/qa/import"
            first = await c.post(url, content=QA)
            assert first.status_code == 200, first.text
            body = first.json()
            assert (body["version"], body["item_count"]) == (1, 3)
            assert (body["added"], body["already_present"]) == (3, 0)

            again = (await c.post(url, content=QA)).json()
            assert (again["version"], again["item_count"]) == (1, 3)
            assert (again["added"], again["already_present"]) == (0, 3)

            some = (await c.post(url, content=MORE)).json()
            assert (some["version"], some["item_count"]) == (2, 6)
            assert (some["added"], some["already_present"]) == (3, 2)

    asyncio.run(scenario())


def test_the_console_says_what_an_import_added(database_url) -> None:
    with TestClient(create_app(get_settings()), follow_redirects=False) as client:
        add_user(client.app, "b@example.com", "builder")
        sign_in(client, "b@example.com")
        token = csrf_of(client.get("/datasets").text)
        csv_file = ("qa.csv", b"question,expected\nCapital of France?,Paris\nOf Italy?,Rome\n")
        first = client.post(
            "/datasets/import", data={"csrf_token": token, "name": "qa"}, files={"file": csv_file}
        )
        assert first.headers["location"] == "/datasets/qa?added=2&via=file"
        page = client.get(first.headers["location"]).text
        assert "Imported the file as version 1: 2 added, 0 already in the dataset." in page

        again = client.post(
            "/datasets/qa/import", data={"csrf_token": token}, files={"file": csv_file}
        )
        assert again.headers["location"] == "/datasets/qa?added=0&already=2&via=file"
        page = client.get(again.headers["location"]).text
        assert "All 2 items already in the dataset; nothing added (still version 1)." in page
        assert "Version 1 of 1" in page and "?version=2" not in page

        grown = ("qa.csv", b"question,expected\nCapital of France?,Paris\nOf Spain?,Madrid\n")
        some = client.post("/datasets/qa/import", data={"csrf_token": token}, files={"file": grown})
        page = client.get(some.headers["location"]).text
        assert "Imported the file as version 2: 1 added, 1 already in the dataset." in page
