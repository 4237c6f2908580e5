"""Commands the REST API has had and the CLI gained: each run in-process on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from llmdeck.cli.main import app
from llmdeck.core.db import Database
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.knowledge import service as knowledge
from llmdeck.knowledge.models import KnowledgeBase
from llmdeck.knowledge.schemas import KnowledgeBaseCreate
from llmdeck.tracing.writer import SpanRecord, TraceWriter


def llmdeck(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def one_error_line(result, says: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines


@pytest.fixture
def handbook(db: Database, settings: Settings) -> str:
    """A knowledge base `handbook` of the default project with two documents."""
    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default")
        kb = knowledge.create(
            session, project_id=project.id, data=KnowledgeBaseCreate(name="handbook")
        )
        for name in ("faq.md", "policy.md"):
            knowledge.add_document(
                session, settings=settings, kb=kb, name=name, data=b"# " + name.encode()
            )
        return kb.id


def _documents(db: Database, kb_id: str) -> list[str]:
    with db.session() as session:
        kb = session.get(KnowledgeBase, kb_id)
        return [d.name for d in knowledge.list_documents(session, kb=kb)[0]]


def test_kb_rm_deletes_a_document_by_name_or_id(db: Database, handbook: str) -> None:
    removed = llmdeck("kb", "rm", "handbook", "faq.md")
    assert removed.exit_code == 0, removed.output
    assert "Deleted document faq.md" in removed.stdout
    assert _documents(db, handbook) == ["policy.md"]

    with db.session() as session:
        kb = session.get(KnowledgeBase, handbook)
        policy_id = knowledge.get_document_or_raise(session, kb=kb, ref="policy.md").id
    assert llmdeck("kb", "rm", "handbook", policy_id).exit_code == 0
    assert _documents(db, handbook) == []

    one_error_line(llmdeck("kb", "rm", "handbook", "faq.md"), "No document 'faq.md'")


def test_kb_delete_asks_first_unless_yes(db: Database, handbook: str) -> None:
    declined = llmdeck("kb", "delete", "handbook", input="n\n")
    assert declined.exit_code == 1 and "2 documents" in declined.stdout
    listed = json.loads(llmdeck("kb", "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["handbook"]

    confirmed = llmdeck("kb", "delete", "handbook", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "Deleted knowledge base handbook" in confirmed.stdout
    assert json.loads(llmdeck("kb", "list", "--json").stdout) == []

    one_error_line(llmdeck("kb", "delete", "handbook", "--yes"), "No knowledge base 'handbook'")


def test_alert_rules_create_list_delete(db: Database) -> None:
    created = llmdeck(
        "monitoring", "alerts", "create", "slow answers", "--metric", "latency_p95",
        "--threshold", "2.5", "--window", "15", "--webhook-url", "https://hooks.example/x",
        "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    rule = json.loads(created.stdout)
    assert rule["window_minutes"] == 15 and rule["threshold"] == 2.5
    assert len(rule["secret"]) >= 16

    listed = llmdeck("monitoring", "alerts", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"], r["state"]) for r in rows] == [(rule["id"], "slow answers", "ok")]
    assert rule["secret"] not in listed.stdout

    shown = llmdeck(
        "monitoring", "alerts", "create", "costly", "--metric", "cost_per_day",
        "--threshold", "10", "--webhook-url", "http://127.0.0.1:9/hook",
    )  # fmt: skip
    assert shown.exit_code == 0 and "shown once" in shown.stdout

    assert llmdeck("monitoring", "alerts", "delete", rule["id"]).exit_code == 0
    assert llmdeck("monitoring", "alerts", "delete", "costly").exit_code == 0
    assert json.loads(llmdeck("monitoring", "alerts", "list", "--json").stdout) == []
    one_error_line(llmdeck("monitoring", "alerts", "delete", "costly"), "No alert rule 'costly'")
    assert json.loads(llmdeck("monitoring", "alerts", "history", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--metric", "vibes"], "Unknown metric 'vibes'"),
        (["--webhook-url", "ftp://x"], "http(s) URL"),
        (["--window", "0"], "--window:"),
        (["--comparison", "="], "--comparison:"),
        (["--secret", "short"], "--secret:"),
    ],
)
def test_alert_rule_refusals_are_one_error_line(db: Database, args: list[str], says: str) -> None:
    given = {"--metric": "error_rate", "--threshold": "0.1", "--webhook-url": "https://h/x"}
    given.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [part for pair in given.items() for part in pair]
    one_error_line(llmdeck("monitoring", "alerts", "create", "r", *flat), says)


def _create_user(email: str, project: str, role: str) -> None:
    made = llmdeck(
        "users", "create", email, "--project", project, "--role", role,
        input="long enough pw\nlong enough pw\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output


def test_users_list_role_and_remove_keep_an_admin(db: Database) -> None:
    _create_user("ada@example.com", "default", "admin")
    _create_user("bob@example.com", "default", "viewer")

    def members() -> dict[str, str]:
        listed = llmdeck("users", "list", "--project", "default", "--json")
        assert listed.exit_code == 0, listed.output
        return {m["email"]: m["role"] for m in json.loads(listed.stdout)}

    assert members() == {"ada@example.com": "admin", "bob@example.com": "viewer"}

    demoted = llmdeck("users", "role", "ada@example.com", "builder", "--project", "default")
    one_error_line(demoted, "last admin of default")
    removed = llmdeck("users", "remove", "ada@example.com", "--project", "default")
    one_error_line(removed, "last admin of default")

    promoted = llmdeck("users", "role", "bob@example.com", "admin", "--project", "default")
    assert promoted.exit_code == 0 and "bob@example.com is now admin in default" in promoted.stdout
    assert llmdeck("users", "remove", "ada@example.com", "--project", "default").exit_code == 0
    assert members() == {"bob@example.com": "admin"}

    one_error_line(
        llmdeck("users", "remove", "ada@example.com", "--project", "default"),
        "not a member of default",
    )
    one_error_line(
        llmdeck("users", "role", "eve@example.com", "viewer", "--project", "default"),
        "llmdeck users create eve@example.com",
    )
    one_error_line(
        llmdeck("users", "role", "bob@example.com", "owner", "--project", "default"),
        "choose one of",
    )


def _recorded_request(db: Database) -> str:
    """The trace id of one recorded chat call in the default project."""
    with db.session() as session:
        project_id = identity.get_project_by_name_or_raise(session, name="default").id
    trace_id = new_trace_id()
    writer = TraceWriter(db, interval=0.05)
    writer.submit(
        SpanRecord(
            project_id=project_id,
            trace_id=trace_id,
            span_id=new_span_id(),
            name="chat m",
            started_at=datetime.now(UTC),
            model="m",
            input=[{"role": "user", "content": "What is 2+2?"}],
            output="4",
        )
    )
    writer.close()
    return trace_id


def test_datasets_create_then_add_traces_and_missing_names_say_how(db: Database) -> None:
    trace_id = _recorded_request(db)
    missing = llmdeck("datasets", "add-traces", "golden", trace_id)
    one_error_line(missing, "Run `llmdeck datasets create golden` first, or add --create")

    created = llmdeck("datasets", "create", "golden", "--description", "Answers we trust")
    assert created.exit_code == 0 and "Created dataset golden" in created.stdout
    one_error_line(llmdeck("datasets", "create", "golden"), "already exists")
    one_error_line(llmdeck("datasets", "create", "no spaces allowed"), "name:")

    added = llmdeck("datasets", "add-traces", "golden", trace_id)
    assert added.exit_code == 0, added.output
    assert "Created" not in added.stdout
    assert "version 1: 1 added, 0 already in the dataset." in added.stdout

    made = llmdeck("datasets", "add-traces", "fresh", trace_id, "--create")
    assert made.exit_code == 0, made.output
    assert "Created dataset fresh" in made.stdout

    listed = {d["name"]: d for d in json.loads(llmdeck("datasets", "list", "--json").stdout)}
    assert listed["golden"]["description"] == "Answers we trust"
    assert listed["golden"]["item_count"] == 1 and listed["fresh"]["item_count"] == 1


def test_retention_is_days_or_forever_and_zero_says_how_to_keep_forever(db: Database) -> None:
    def retention(*args: str) -> str:
        result = llmdeck("monitoring", "retention", *args)
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    assert retention() == "default keeps spans forever."
    assert retention("30") == "default keeps spans 30 days."
    assert retention() == "default keeps spans 30 days."
    one_error_line(llmdeck("monitoring", "retention", "0"), "use --forever to keep spans forever")
    one_error_line(llmdeck("monitoring", "retention", "--", "-5"), "DAYS:")
    one_error_line(llmdeck("monitoring", "retention", "4000"), "DAYS:")
    one_error_line(llmdeck("monitoring", "retention", "7", "--forever"), "not both")
    assert retention() == "default keeps spans 30 days."
    assert retention("--forever") == "default keeps spans forever."
