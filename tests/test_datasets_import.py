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


# Three bad lines among good ones: not JSON, not an object, metadata that is not an object.
BAD = (
    '{"input": {"question": "ok?"}, "expected": "yes"}\n'
    "{question: 'no quotes'}\n"
    '{"input": {"question": "fine"}}\n'
    '["a", "list"]\n'
    "\n"
    '{"question": "tags?", "metadata": "urgent"}\n'
)
BAD_LINES = (
    "Line 2 is not JSON: Expecting property name enclosed in double quotes.",
    "Line 4 is not a JSON object.",
    "Line 6: metadata: Input should be a valid dictionary.",
)


def test_a_file_with_bad_lines_is_refused_naming_every_one(db, tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(QA)
    llmdeck("datasets", "import", "qa", str(qa))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(BAD)
    for name in ("qa", "fresh"):
        refused = llmdeck("datasets", "import", name, str(bad))
        assert refused.exit_code == 1, refused.output
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: 3 lines of the file are wrong")
        for problem in BAD_LINES:
            assert problem in lines[0]
        assert lines[0].endswith("Fix them and import the file again.")
    # Nothing was stored: qa is as it was, and no dataset `fresh` was made.
    assert (dataset("qa")["version"], dataset("qa")["item_count"]) == (1, 3)
    assert [d["name"] for d in json.loads(llmdeck("datasets", "list", "--json").stdout)] == ["qa"]


def test_csv_problems_are_all_named_and_a_long_list_is_cut_at_twenty(db, tmp_path: Path) -> None:
    csv = tmp_path / "qa.csv"
    csv.write_text('question,expected,metadata\na,b,{}\nc,d,e,f\ng,h,"[1, 2]"\ni\n')
    refused = llmdeck("datasets", "import", "qa", str(csv))
    message = refused.stderr
    assert "3 lines of the file are wrong, so nothing was imported." in message
    assert (
        "Line 3 has 4 values but the header has 3 columns (question, expected, metadata)."
        in message
    )
    assert "Line 4: metadata: Input should be a valid dictionary." in message
    assert "Line 5 has 1 value but the header has 3 columns" in message
    assert "Fix them (quote values that contain commas) and import the file again." in message

    many = tmp_path / "many.jsonl"
    many.write_text("".join(f"not json {n}\n" for n in range(1, 24)))
    refused = llmdeck("datasets", "import", "qa", str(many))
    message = refused.stderr
    assert "23 lines of the file are wrong" in message
    assert "Line 20 is not JSON" in message and "Line 21 " not in message
    assert "3 more lines are wrong too." in message
    assert json.loads(llmdeck("datasets", "list", "--json").stdout) == []  # nothing stored


def test_the_api_and_console_name_every_bad_line(database_url) -> None:
    async def scenario():
        async with running() as gw:
            refused = await gw.client.post("/api/datasets/qa/import", content=BAD)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["param"] == "file"
            for problem in BAD_LINES:
                assert problem in error["message"]
            assert (await gw.client.get("/api/datasets/qa")).status_code == 404

    asyncio.run(scenario())

    with TestClient(create_app(get_settings()), follow_redirects=False) as client:
        add_user(client.app, "b@example.com", "builder")
        sign_in(client, "b@example.com")
        token = csrf_of(client.get("/datasets").text)
        page = client.post(
            "/datasets/import",
            data={"csrf_token": token, "name": "qa"},
            files={"file": ("bad.jsonl", BAD.encode())},
        )
        assert page.status_code == 200 and 'value="qa"' in page.text
        text = page.text.replace("&#39;", "'")
        for problem in BAD_LINES:
            assert problem in text
