"""QA fixes in evaluations and prompts: the judge's question, experiment id prefixes,
review queues made with their experiment, chains checked when pushed, prompt authors."""

from __future__ import annotations

import asyncio
import json

from llmdeck.evals import service
from llmdeck.evals.metrics import Sample
from llmdeck.evals.runner import run_experiment
from llmdeck.evals.schemas import ExperimentCreate
from tests.test_evals_experiments import _principal
from tests.test_evals_support import add_model
from tests.test_gateway_support import running


def _judge_asks(upstream) -> list[str]:
    return [
        r["messages"][-1]["content"]
        for r in upstream.requests
        if "Rubric:" in str(r.get("messages", [{}])[-1].get("content"))
    ]


def test_judge_of_a_prompt_target_sees_the_rendered_prompt(upstream) -> None:
    upstream.default = {"kind": "ok", "text": "Score: 4\nReasoning: fine."}

    async def scenario():
        async with running() as gw:
            await add_model(gw.client, "scripted", upstream.url)
            r = await gw.client.post(
                "/api/prompts/greeter/versions",
                json={
                    "messages": [
                        {"role": "system", "content": "You are polite."},
                        {"role": "user", "content": "Greet {{name}} from {{city}}."},
                    ],
                    "model": "scripted",
                    "labels": ["production"],
                },
            )
            assert r.status_code == 201, r.text
            items = [{"input": {"name": "Cy, Jr", "city": "Paris"}, "expected": "Hello Cy"}]
            r = await gw.client.post("/api/datasets", json={"name": "greet", "items": items})
            assert r.status_code == 201, r.text
            principal = _principal(gw.runtime.db)
            with gw.runtime.db.session() as session:
                experiment = service.create(
                    session,
                    project_id=principal.project_id,
                    data=ExperimentCreate(
                        dataset="greet",
                        target={
                            "type": "prompt",
                            "prompt": "greeter@production",
                            "params": {"max_tokens": 8},
                        },
                        metrics=[{"name": "llm_judge", "model": "scripted", "max_tokens": 8}],
                    ),
                )
            done = await run_experiment(gw.runtime, principal, experiment.id)
            assert done.status == "done", done.error
            with gw.runtime.db.session() as session:
                (row,) = service.results(session, experiment=done)
            assert row.scores["llm_judge"]["score"] == 0.75
            (asked,) = _judge_asks(upstream)
            assert "Question: Greet Cy, Jr from Paris." in asked
            assert "Cy, Jr Paris" not in asked
            assert "Reference answer: Hello Cy" in asked

    asyncio.run(scenario())


def test_question_is_what_was_asked() -> None:
    rendered = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is {{x}}?"},
    ]
    # A prompt target's rendered messages win over the variables.
    s = Sample(input={"question": "var"}, output="", messages=rendered)
    assert s.question == "Where is {{x}}?" and s.conversation is None
    # A model target: the item's messages, else its question variable, as before.
    chat = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "Where is Paris?"}]},
    ]
    s = Sample(input={"messages": chat}, output="")
    assert s.question == "Where is Paris?"
    assert s.conversation == "user: Hi\nassistant: Hello\nuser: Where is Paris?"
    assert Sample(input={"question": "Why?", "n": 1}, output="").question == "Why?"


def llmdeck(*args: str):
    from typer.testing import CliRunner

    from llmdeck.cli.main import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "100"})


def _experiments_with_ids(db, ids: list[str]) -> None:
    """Experiments on a one-item dataset, given these ids (to make prefixes collide)."""
    from sqlalchemy import update

    from llmdeck.evals import datasets
    from llmdeck.evals.models import Experiment
    from llmdeck.identity import service as identity

    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default")
        datasets.create(
            session,
            project_id=project.id,
            name="qa",
            items=[{"input": {"question": "q"}}],
        )
        for i, eid in enumerate(ids):
            e = service.create(
                session,
                project_id=project.id,
                data=ExperimentCreate(
                    dataset="qa",
                    name=f"run{i}",
                    target={"type": "model", "model": "echo"},
                    metrics=["exact_match"],
                ),
            )
            session.execute(update(Experiment).where(Experiment.id == e.id).values(id=eid))


IDS = ["01M91YD8ZAAAAAAAAAAAAAAAAA", "01M91YD8ZBBBBBBBBBBBBBBBBB", "01M91ZZZZCCCCCCCCCCCCCCCCC"]


def test_experiment_ids_shown_in_full_and_taken_by_unique_prefix(db) -> None:
    _experiments_with_ids(db, IDS)
    listed = llmdeck("eval", "list")
    assert listed.exit_code == 0, listed.output
    for eid in IDS:
        assert eid in listed.stdout  # never cut to "01M91YD8Z…"

    both = llmdeck("eval", "compare", "01M91YD8ZA", "01m91zzz", "--json")
    assert both.exit_code == 0, both.output
    got = [e["id"] for e in json.loads(both.stdout)[0]["experiments"]]
    assert got == [IDS[0], IDS[2]]

    ambiguous = llmdeck("eval", "compare", "01M91YD8Z", "01M91ZZZ")
    assert ambiguous.exit_code == 1
    assert "matches several experiments" in ambiguous.output
    assert IDS[0] in ambiguous.output and IDS[1] in ambiguous.output
    short = llmdeck("eval", "compare", "01M91", "01M91ZZZ")
    assert short.exit_code == 1 and "at least 6 characters" in short.output


def test_api_takes_an_experiment_id_prefix() -> None:
    async def scenario():
        async with running() as gw:
            _experiments_with_ids(gw.runtime.db, IDS)
            r = await gw.client.get("/api/experiments/01M91ZZZ")
            assert r.status_code == 200, r.text
            assert r.json()["id"] == IDS[2]
            r = await gw.client.get(
                "/api/experiments/compare", params={"ids": "01M91YD8ZB,01M91ZZ"}
            )
            assert r.status_code == 200, r.text
            r = await gw.client.get("/api/experiments/01M91YD8Z/results")
            assert r.status_code == 400 and "matches several" in r.text

    asyncio.run(scenario())


def _answer_all(db, experiment_id: str) -> None:
    """Store an answer for each of the experiment's items (as a finished run would)."""
    from llmdeck.evals import datasets
    from llmdeck.evals.models import Experiment as E
    from llmdeck.evals.models import ExperimentResult

    with db.session() as session:
        e = session.get(E, experiment_id)
        d = session.get(datasets.Dataset, e.dataset_id)
        for item in datasets.items(session, dataset=d, version=e.dataset_version):
            session.add(
                ExperimentResult(experiment_id=e.id, item_id=item.id, output="Hello Cy", scores={})
            )


def test_review_queue_created_with_its_experiment_through_the_api() -> None:
    async def scenario():
        async with running() as gw:
            _experiments_with_ids(gw.runtime.db, IDS)
            _answer_all(gw.runtime.db, IDS[2])
            body = {"name": "greet-review", "experiment": IDS[2], "labels": ["good", "bad"]}
            r = await gw.client.post("/api/review-queues", json=body)
            assert r.status_code == 400, r.text
            assert "experiment" in r.json()["error"]["message"], r.text
            assert (await gw.client.get("/api/review-queues")).json() == []  # nothing made

            body = {"name": "greet-review", "experiment_id": IDS[2], "labels": ["good", "bad"]}
            r = await gw.client.post("/api/review-queues", json=body)
            assert r.status_code == 201, r.text
            assert r.json()["total"] == 1
            tasks = (await gw.client.get("/api/review-queues/greet-review/tasks")).json()
            assert [t["payload"]["output"] for t in tasks] == ["Hello Cy"]

    asyncio.run(scenario())


def test_review_cli_lists_creates_and_shows_queues(db) -> None:
    _experiments_with_ids(db, IDS)
    _answer_all(db, IDS[0])
    made = llmdeck(
        "eval", "review", "create", "greet", "--experiment", "01M91YD8ZA", "--label", "good"
    )
    assert made.exit_code == 0, made.output
    assert "Created review queue greet with 1 tasks." in made.stdout
    empty = llmdeck("eval", "review", "create", "later")
    assert empty.exit_code == 0, empty.output
    again = llmdeck("eval", "review", "create", "greet")
    assert again.exit_code == 1 and "already exists" in again.output

    listed = json.loads(llmdeck("eval", "review", "list", "--json").stdout)
    assert [(q["name"], q["total"], q["labels"]) for q in listed] == [
        ("greet", 1, "good"),
        ("later", 0, ""),
    ]
    shown = llmdeck("eval", "review", "show", "greet")
    assert shown.exit_code == 0, shown.output
    assert "greet: 0 of 1 reviewed" in shown.stdout and "Hello Cy" in shown.stdout
    missing = llmdeck("eval", "review", "show", "nosuch")
    assert missing.exit_code == 1 and "No review queue named 'nosuch'" in missing.output


def test_a_chain_step_must_name_a_prompt_that_exists_and_run_errors_name_the_step(
    upstream,
) -> None:
    async def scenario():
        async with running() as gw:
            await add_model(gw.client, "scripted", upstream.url)
            r = await gw.client.post(
                "/api/prompts/greeter/versions",
                json={
                    "messages": [{"role": "user", "content": "Greet {{name}}."}],
                    "model": "scripted",
                    "labels": ["production"],
                },
            )
            assert r.status_code == 201, r.text
            steps = [
                {"type": "transform", "template": "{{ name | upper }}", "output": "loud"},
                {"type": "prompt", "prompt": "nosuch@production"},
            ]
            r = await gw.client.post("/api/chains", json={"name": "greet", "steps": steps})
            assert r.status_code == 400, r.text
            message = r.json()["error"]["message"]
            assert "Step 2 (prompt nosuch@production)" in message and "'nosuch'" in message
            steps[1]["prompt"] = "greeter@staging"
            r = await gw.client.post("/api/chains", json={"name": "greet", "steps": steps})
            assert r.status_code == 400 and "no label 'staging'" in r.text, r.text
            assert (await gw.client.get("/api/prompts/greet")).status_code == 404  # not saved

            steps[1]["prompt"] = "greeter@production"
            r = await gw.client.post("/api/chains", json={"name": "greet", "steps": steps})
            assert r.status_code == 201, r.text
            ran = await gw.client.post("/api/chains/greet/runs", json={"variables": {"name": "cy"}})
            assert ran.status_code == 200, ran.text
            # The prompt's label goes after the chain was saved: the run says which step broke.
            r = await gw.client.delete("/api/prompts/greeter/labels/production")
            assert r.status_code == 204, r.text
            ran = await gw.client.post("/api/chains/greet/runs", json={"variables": {"name": "cy"}})
            assert ran.status_code == 404, ran.text
            assert ran.json()["error"]["message"].startswith(
                "Step 2 (prompt greeter@production) of chain 'greet': "
            ), ran.text

    asyncio.run(scenario())


def test_prompt_history_names_the_author_however_the_version_was_made(db, tmp_path) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import update

    from llmdeck.app import create_app
    from llmdeck.core.settings import get_settings
    from llmdeck.identity import service as identity
    from llmdeck.identity.models import User
    from llmdeck.identity.schemas import ApiKeyCreate
    from llmdeck.prompts.models import PromptVersion
    from tests.test_console import add_user, sign_in

    spec = tmp_path / "greet.yaml"
    spec.write_text("name: greet\nmessages:\n  - {role: user, content: 'Hi {{ name }}'}\n")
    pushed = llmdeck("prompts", "push", str(spec))
    assert pushed.exit_code == 0, pushed.output

    app = create_app(get_settings())
    with TestClient(app, follow_redirects=False) as client:
        with db.session() as session:
            project = identity.get_project_by_name_or_raise(session, name="default")
            _, secret = identity.create_key(
                session, project=project, data=ApiKeyCreate(name="ci-bot")
            )
        body = {"messages": [{"role": "user", "content": "Hello {{ name }}"}]}
        r = client.post(
            "/api/prompts/greet/versions", json=body, headers={"Authorization": f"Bearer {secret}"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["created_by"] == "API key ci-bot"

        add_user(app, "ana@example.com", "builder")
        body = {"messages": [{"role": "user", "content": "Hey {{ name }}"}]}
        r = client.post(
            "/api/prompts/greet/versions", json=body, headers={"Authorization": f"Bearer {secret}"}
        )
        with db.session() as session:
            ana = session.query(User).filter_by(email="ana@example.com").one()
            # A version stored before authors were readable holds the user's id.
            session.execute(
                update(PromptVersion).where(PromptVersion.version == 3).values(created_by=ana.id)
            )
        versions = client.get(
            "/api/prompts/greet/versions", headers={"Authorization": f"Bearer {secret}"}
        ).json()
        assert [v["created_by"] for v in versions] == ["ana@example.com", "API key ci-bot", "CLI"]

        sign_in(client, "ana@example.com")
        page = client.get("/prompts/greet").text
        for author in ("ana@example.com", "API key ci-bot", "CLI"):
            assert author in page
        assert ana.id not in page
