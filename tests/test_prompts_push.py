"""Pushing a prompt or chain whose content equals the latest version's adds no version: the
CLI, the API and the console each say so, and the labels asked for still move."""

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

GREET = """\
name: greet
description: Says hello
model: smollm2-135m
params: {temperature: 0.2, max_tokens: 16}
messages:
  - role: system
    content: Be brief.
  - role: user
    content: Hello {{ who }}
commit_message: first
"""

# The same content with every mapping's keys in another order and another commit message.
GREET_REORDERED = """\
commit_message: just re-pushed from CI
messages:
  - content: Be brief.
    role: system
  - content: Hello {{ who }}
    role: user
params: {max_tokens: 16, temperature: 0.2}
model: smollm2-135m
name: greet
"""

CHAIN = """\
name: tidy
steps:
  - {type: transform, template: '{{ x }}', op: upper, output: shout}
"""


def llmdeck(*args: str):
    return CliRunner().invoke(app, list(args))


def push(path: Path, text: str, *labels: str):
    path.write_text(text)
    return llmdeck("prompts", "push", str(path), *[f"--label={label}" for label in labels])


def listed(name: str) -> dict:
    rows = json.loads(llmdeck("prompts", "list", "--json").stdout)
    return next(r for r in rows if r["name"] == name)


def test_pushing_the_same_prompt_again_adds_no_version(db, tmp_path: Path) -> None:
    spec = tmp_path / "greet.yaml"
    first = push(spec, GREET)
    assert first.exit_code == 0, first.output
    assert "Prompt greet version 1 saved." in first.stdout

    again = push(spec, GREET_REORDERED)
    assert again.exit_code == 0, again.output
    assert "Prompt greet unchanged: still version 1." in again.stdout
    assert listed("greet")["latest_version"] == 1
    shown = llmdeck("prompts", "show", "greet")
    assert "commit_message: first" in shown.stdout  # the kept version is the first one

    changed = push(spec, GREET.replace("Be brief.", "Be very brief."))
    assert "Prompt greet version 2 saved." in changed.stdout
    assert listed("greet")["latest_version"] == 2
    # A different model or parameter is a change too.
    assert "version 3 saved" in push(spec, GREET.replace("0.2", "0.3")).stdout

    # However long the name, the message stays on one line for CI logs and grep.
    long_name = "greeting-for-the-customer-support-team-" + "x" * 60
    push(spec, GREET.replace("name: greet", f"name: {long_name}"))
    again = push(spec, GREET.replace("name: greet", f"name: {long_name}"))
    assert f"Prompt {long_name} unchanged: still version 1.\n" in again.stdout


def test_an_unchanged_push_still_moves_labels_and_saves_the_description(db, tmp_path: Path) -> None:
    spec = tmp_path / "greet.yaml"
    push(spec, GREET)
    push(spec, GREET.replace("Hello", "Hi"))
    labelled = push(spec, GREET.replace("Hello", "Hi"), "production", "staging")
    assert labelled.exit_code == 0, labelled.output
    assert "Prompt greet unchanged: still version 2." in labelled.stdout
    assert "greet@production → version 2." in labelled.stdout
    assert "greet@staging → version 2." in labelled.stdout
    row = listed("greet")
    assert row["latest_version"] == 2
    assert row["labels"] == "production→2, staging→2"

    described = push(spec, GREET.replace("Hello", "Hi").replace("Says hello", "Greets people"))
    assert "unchanged: still version 2." in described.stdout
    row = listed("greet")
    assert (row["latest_version"], row["description"]) == (2, "Greets people")

    # Same content as version 1 is still new: only the latest version counts.
    assert "version 3 saved" in push(spec, GREET).stdout


def test_pushing_the_same_chain_again_adds_no_version(db, tmp_path: Path) -> None:
    spec = tmp_path / "tidy.yaml"
    spec.write_text(CHAIN)
    first = llmdeck("chains", "push", str(spec))
    assert "Chain tidy version 1 saved." in first.stdout, first.output
    spec.write_text(CHAIN.replace("op: upper, output: shout", "output: shout, op: upper"))
    again = llmdeck("chains", "push", str(spec))
    assert "Chain tidy unchanged: still version 1." in again.stdout, again.output
    assert listed("tidy")["latest_version"] == 1
    spec.write_text(CHAIN.replace("upper", "lower"))
    assert "Chain tidy version 2 saved." in llmdeck("chains", "push", str(spec)).stdout


def test_the_api_answers_200_with_created_false_when_nothing_changed(database_url) -> None:
    body = {
        "messages": [{"role": "user", "content": "Hello {{ who }}"}],
        "model": "smollm2-135m",
        "params": {"temperature": 0.2, "max_tokens": 16},
        "commit_message": "first",
    }

    async def scenario():
        async with running() as gw:
            c = gw.client
            made = await c.post("/api/prompts/greet/versions", json=body)
            assert made.status_code == 201, made.text
            assert made.json()["version"] == 1 and made.json()["created"] is True

            same = {
                **body,
                "params": {"max_tokens": 16, "temperature": 0.2},
                "commit_message": "again",
                "labels": ["production"],
            }
            kept = await c.post("/api/prompts/greet/versions", json=same)
            assert kept.status_code == 200, kept.text
            answer = kept.json()
            assert answer["created"] is False and answer["version"] == 1
            assert answer["commit_message"] == "first" and answer["labels"] == ["production"]
            versions = (await c.get("/api/prompts/greet/versions")).json()
            assert [v["version"] for v in versions] == [1]
            got = await c.get("/api/prompts/greet", params={"label": "production"})
            assert got.json()["version"] == 1

            changed = await c.post(
                "/api/prompts/greet/versions", json={**body, "model": "another-model"}
            )
            assert changed.status_code == 201 and changed.json()["version"] == 2
            assert changed.json()["created"] is True

            chain = await c.post("/api/chains", content=CHAIN)
            assert chain.status_code == 201 and chain.json()["created"] is True
            chain_again = await c.post("/api/chains", content=CHAIN)
            assert chain_again.status_code == 200, chain_again.text
            assert (chain_again.json()["created"], chain_again.json()["version"]) == (False, 1)

            operation = (await c.get("/openapi.json")).json()["paths"][
                "/api/prompts/{name}/versions"
            ]["post"]
            assert {"200", "201"} <= set(operation["responses"])

    asyncio.run(scenario())


def test_the_console_says_an_unchanged_save_kept_the_version(database_url) -> None:
    with TestClient(create_app(get_settings()), follow_redirects=False) as client:
        add_user(client.app, "b@example.com", "builder")
        sign_in(client, "b@example.com")
        token = csrf_of(client.get("/prompts").text)
        form = {"name": "greet", "user": "Hello {{ who }}", "model": "smollm2-135m"}
        made = client.post("/prompts", data={**form, "csrf_token": token})
        assert made.headers["location"] == "/prompts/greet?v=1"

        edits = {"user": "Hello {{ who }}", "model": "smollm2-135m", "params": "{}"}
        saved = client.post(
            "/prompts/greet/versions",
            data={**edits, "commit_message": "no real change", "csrf_token": token},
        )
        assert saved.status_code == 303 and saved.headers["location"] == "/prompts/greet?v=1"
        page = client.get(saved.headers["location"]).text
        assert "greet is unchanged, still version 1." in page
        assert "Save as v2" in page  # no second version
        assert "unchanged" not in client.get("/prompts/greet?v=1").text  # said once

        labelled = client.post(
            "/prompts/greet/versions",
            data={**edits, "commit_message": "x", "label": "staging", "csrf_token": token},
        )
        page = client.get(labelled.headers["location"]).text
        assert "greet is unchanged, still version 1. staging now points at it." in page
        assert "staging → v1" in page

        changed = client.post(
            "/prompts/greet/versions",
            data={**edits, "user": "Hi {{ who }}", "commit_message": "x", "csrf_token": token},
        )
        assert changed.headers["location"] == "/prompts/greet?v=2"
        assert "unchanged" not in client.get(changed.headers["location"]).text
