"""The `llmdeck` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from llmdeck.catalog.models import Model
from llmdeck.core.db import get_database
from llmdeck.core.settings import get_settings


def llmdeck(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmdeck", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=300,
        env=os.environ.copy(),
    )


def test_projects_users_and_keys() -> None:
    assert llmdeck("projects", "create", "acme").returncode == 0
    again = llmdeck("projects", "create", "acme")
    assert again.returncode == 1 and "already exists" in again.stderr

    listed = json.loads(llmdeck("projects", "list", "--json").stdout)
    assert {p["name"] for p in listed} == {"acme", "default"}

    user = llmdeck(
        "users",
        "create",
        "ada@example.com",
        "--project",
        "acme",
        "--role",
        "reviewer",
        input="long enough pw\nlong enough pw\n",
    )
    assert user.returncode == 0 and "as reviewer in acme" in user.stdout
    assert "long enough pw" not in user.stdout + user.stderr

    created = llmdeck("keys", "create", "--project", "acme", "--name", "ci", "--json")
    key = json.loads(created.stdout)
    assert key["key"].startswith(key["prefix"]) and key["project"] == "acme"

    listed = llmdeck("keys", "list", "--project", "acme", "--json")
    rows = json.loads(listed.stdout)
    assert [r["prefix"] for r in rows] == [key["prefix"]] and key["key"] not in listed.stdout
    assert rows[0]["status"] == "active"

    assert llmdeck("keys", "revoke", key["prefix"]).returncode == 0
    again = llmdeck("keys", "revoke", key["prefix"])
    assert again.returncode == 1 and "already revoked" in again.stderr
    assert (
        json.loads(llmdeck("keys", "list", "--project", "acme", "--json").stdout)[0]["status"]
        == "revoked"
    )


def test_errors_say_what_to_do_next() -> None:
    missing = llmdeck("keys", "create", "--project", "nope")
    assert missing.returncode == 1
    assert (
        "No project named 'nope'" in missing.stderr
        and "llmdeck projects create nope" in missing.stderr
    )
    bad_role = llmdeck("keys", "create", "--project", "default", "--role", "owner")
    assert bad_role.returncode == 1 and "choose one of" in bad_role.stderr


def test_models_add_stores_the_key_encrypted_and_never_prints_it() -> None:
    added = llmdeck(
        "models",
        "add",
        "remote",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--upstream",
        "big-model",
        "--api-key",
        "sk-secret-123",
        "--input-price",
        "1.5",
    )
    assert added.returncode == 0, added.stderr
    assert "sk-secret-123" not in added.stdout
    listed = llmdeck("models", "list", "--json")
    models = {m["alias"]: m for m in json.loads(listed.stdout)}
    assert "sk-secret-123" not in listed.stdout
    assert models["remote"]["has_api_key"] and models["remote"]["input_price_per_mtok"] == 1.5
    assert {"smollm2-135m", "minilm-l6"} <= set(models)
    with get_database(get_settings()).session() as session:
        stored = session.scalar(select(Model).where(Model.alias == "remote")).api_key_encrypted
    assert "sk-secret-123" not in stored
    bad = llmdeck("models", "add", "x", "--base-url", "ftp://h", "--upstream", "m")
    assert bad.returncode == 1 and "http://" in bad.stderr


def test_config_show_describes_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-super-secret")
    shown = llmdeck("config", "show", "--json")
    rows = {r["variable"]: r for r in json.loads(shown.stdout)}
    assert {"LLMDECK_HOME", "LLMDECK_DATABASE_URL", "LLMDECK_MASTER_KEY"} <= set(rows)
    assert all(r["description"] for r in rows.values())
    assert (
        "ldk-super-secret" not in shown.stdout
        and rows["LLMDECK_MASTER_KEY"]["value"] == "(set, hidden)"
    )


@pytest.mark.slow
def test_chat_streams_an_answer_and_traces_it() -> None:
    chat = llmdeck("chat", "What is the capital of France?", "--max-tokens", "12")
    assert chat.returncode == 0, chat.stderr
    assert "Paris" in chat.stdout and "trace" in chat.stderr
    traces = json.loads(llmdeck("traces", "list", "--json").stdout)
    assert len(traces) == 1 and traces[0]["model"] == "smollm2-135m"
    assert traces[0]["output_tokens"] > 0
    shown = llmdeck("traces", "show", traces[0]["trace_id"])
    assert "Paris" in shown.stdout and '"source": "cli"' in shown.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["gateway", "limits", "set", "--project", "default", "--rpm", "-1"], "--rpm:"),
        (["gateway", "limits", "set", "--rpm", "5"], "give --project NAME or --key KEY"),
        (["gateway", "limits", "set", "--project", "default", "--period", "year"], "--period:"),
        (["gateway", "cache", "set", "--project", "default", "--ttl", "0"], "--ttl:"),
        (
            ["gateway", "cache", "set", "--project", "default", "--semantic-threshold", "2"],
            "--semantic-threshold:",
        ),
        (
            ["gateway", "cache", "set", "--project", "default", "--semantic-threshold", "0.9"]
            + ["--embedding-model", "nope"],
            "embedding_model: there is no model 'nope'",
        ),
        (["chat", "hi", "--max-tokens", "0"], "--max-tokens:"),
        (["chat", "hi", "--temperature", "5"], "--temperature:"),
        (["gateway", "apply", "{latin1}"], "is not UTF-8 text"),
        (["gateway", "export", "-o", "{tmp}/missing/x.yaml"], "/missing does not exist"),
    ],
)
def test_bad_option_values_end_with_one_error_line_not_a_traceback(
    tmp_path, args: list[str], says: str
) -> None:
    latin1 = tmp_path / "gateway.yaml"
    latin1.write_bytes("routes: []  # caf\xe9\n".encode("latin-1"))
    args = [a.format(latin1=latin1, tmp=tmp_path) for a in args]
    result = llmdeck(*args)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
