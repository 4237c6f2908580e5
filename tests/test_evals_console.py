"""Console pages of prompts and evaluation, in-process: the prompt editor (versions, diff,
labels, try it across models), experiments with live progress and comparison, datasets, and
the review queue with its keyboard shortcuts and agreement table."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.settings import get_settings
from tests.test_console import add_user, csrf_of, sign_in
from tests.test_evals_support import echo_upstream


@pytest.fixture
def echo():
    yield from echo_upstream()


def _project_id(session) -> str:
    from llmdeck.identity import service as identity

    return identity.get_project_by_name_or_raise(session, name="default").id


def test_prompt_editor_experiments_and_review_pages(echo) -> None:
    app = create_app(get_settings())
    with TestClient(app, follow_redirects=False) as c:
        add_user(app, "b@example.com", "builder")
        add_user(app, "r@example.com", "reviewer")
        assert sign_in(c, "b@example.com").status_code == 303
        from llmdeck.catalog import service as catalog
        from llmdeck.catalog.schemas import ModelCreate

        with app.state.runtime.db.session() as session:
            catalog.create(
                session,
                settings=app.state.runtime.settings,
                data=ModelCreate(alias="echo", upstream_name="m", base_url=echo.url),
            )
        # Create a prompt, then a second version labelled production, in the editor.
        token = csrf_of(c.get("/prompts").text)
        r = c.post(
            "/prompts",
            data={"csrf_token": token, "name": "hello", "user": "Hi {{ name }}", "model": "echo"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/prompts/hello?v=1"
        page = c.get("/prompts/hello").text
        r = c.post(
            "/prompts/hello/versions",
            data={
                "csrf_token": csrf_of(page),
                "user": "Hello {{ name }}!",
                "model": "echo",
                "commit_message": "warmer",
                "label": "production",
            },
        )
        assert r.headers["location"] == "/prompts/hello?v=2"
        page = c.get("/prompts/hello?v=2&diff_from=1").text
        assert "warmer" in page and "production" in page
        assert "-  content: Hi {{ name }}" in page.replace("&#39;", "'").replace("&#34;", '"')
        # Try it on two models side by side (the second fails clearly: not in the catalog).
        tried = c.post(
            "/prompts/hello/try",
            data={
                "csrf_token": csrf_of(page),
                "version": "2",
                "variables": '{"name": "Ada"}',
                "models": ["echo", "nope"],
            },
        )
        assert tried.status_code == 200 and "Hello Ada!" in tried.text and "nope" in tried.text
        # Chains are edited in the same editor, as YAML steps.
        from llmdeck.prompts import chains as chain_logic
        from llmdeck.prompts import service as prompt_service

        with app.state.runtime.db.session() as session:
            project_id = prompt_service.get_by_name_or_raise(
                session, project_id=_project_id(session), name="hello"
            ).project_id
            name, data = chain_logic.load_yaml(
                "name: tidy\nsteps:\n  - {type: transform, template: '{{ x }}', op: upper}\n"
            )
            prompt_service.create_version(
                session, project_id=project_id, name=name, data=data, role="admin"
            )
        page = c.get("/prompts/tidy").text
        assert 'id="chain-editor"' in page and "op: upper" in page
        r = c.post(
            "/prompts/tidy/chain-versions",
            data={
                "csrf_token": csrf_of(page),
                "steps": "- {type: transform, template: '{{ x }}!', op: lower}",
                "commit_message": "quieter",
            },
        )
        assert r.headers["location"] == "/prompts/tidy?v=2"
        assert "quieter" in c.get("/prompts/tidy?v=2").text
        bad = c.post(
            "/prompts/tidy/chain-versions",
            data={"csrf_token": csrf_of(page), "steps": "- {type: shell}", "commit_message": "x"},
        )
        # Refused in place: the steps as typed, the reason under them.
        assert bad.status_code == 200 and 'id="ch-steps-error"' in bad.text
        assert "- {type: shell}</textarea>" in bad.text and 'value="x"' in bad.text
        # Start an experiment from the console and watch it finish.
        from llmdeck.evals import datasets

        with app.state.runtime.db.session() as session:
            from llmdeck.identity import service as identity

            project = identity.get_project_by_name_or_raise(session, name="default")
            datasets.create(
                session,
                project_id=project.id,
                name="names",
                items=[{"input": {"name": n}, "expected": f"Hello {n}!"} for n in ("Ada", "Bo")],
            )
        page = c.get("/experiments").text
        r = c.post(
            "/experiments",
            data={
                "csrf_token": csrf_of(page),
                "dataset": "names",
                "target_type": "prompt",
                "ref": "hello@production",
                "metrics": ["exact_match", "rouge_l"],
            },
        )
        assert r.status_code == 303, r.text
        location = r.headers["location"]
        for _ in range(100):
            fragment = c.get(location, headers={"HX-Request": "true"}).text
            if "done · 2 / 2" in fragment:
                break
            time.sleep(0.05)
        assert "done · 2 / 2" in fragment and "hx-trigger" not in fragment
        exp_id = location.rsplit("/", 1)[1]
        detail = c.get(location).text
        assert "Hello Ada!" in detail and "exact_match 1.00" in detail
        compare = c.get(f"/experiments/compare?ids={exp_id}").text
        assert 'id="per-metric"' in compare and "exact_match" in compare
        # Nothing ticked: the list again, saying what to do, not a dead-end 400.
        none = c.get("/experiments/compare")
        assert none.status_code == 200 and 'role="alert"' in none.text
        assert "Tick the experiments to compare" in none.text and exp_id in none.text
        assert "names" in c.get("/datasets").text
        page = c.get("/datasets/names").text
        assert "Hello Bo!" in page
        # Requests picked in the explorer become items of a new version.
        app.state.runtime.writer.flush()
        trace_id = re.search(r'href="/requests/([0-9a-f]{32})"', detail).group(1)
        r = c.post(
            "/datasets/names/traces", data={"csrf_token": csrf_of(page), "trace_ids": trace_id}
        )
        assert r.status_code == 303 and r.headers["location"] == "/datasets/names?added=1"
        page = c.get("/datasets/names").text
        assert "v2" in page and f'href="/requests/{trace_id}"' in page
        # Review: queue the results, score one with the form the shortcuts submit.
        queue = {"csrf_token": csrf_of(page), "name": "bad name", "labels": "good, bad"}
        bad = c.post("/review", data=queue)
        assert "Start with a letter or digit" in bad.text and 'value="good, bad"' in bad.text
        assert bad.text.count('class="field-error"') == 1
        missing = c.post("/review", data={**queue, "name": "experts"})
        assert "Pick the experiment" in missing.text and 'value="experts"' in missing.text
        made = c.post("/review", data={**queue, "name": "experts", "experiment_id": exp_id})
        assert made.status_code == 303 and made.headers["location"] == "/review/experts"
        assert "0 / 2" in c.get("/review").text
        c.post("/sign-out", data={"csrf_token": csrf_of(c.get("/review").text)})
        assert sign_in(c, "r@example.com").status_code == 303
        page = c.get("/review/experts").text
        assert "0 of 2 reviewed" in page and "/review/shortcuts.js" in page
        assert "requestSubmit" in c.get("/review/shortcuts.js").text
        action = re.search(r'action="(/review/experts/[^"]+)"', page).group(1)
        r = c.post(action, data={"csrf_token": csrf_of(page), "score": "5", "label": "good"})
        assert r.status_code == 303
        page = c.get("/review/experts").text
        assert "1 of 2 reviewed" in page and 'id="agreement"' in page
        # A reviewer reviews but cannot create queues.
        assert 'id="new-queue"' not in c.get("/review").text
        refused = c.post("/review", data={"csrf_token": csrf_of(page), "name": "mine"})
        assert refused.status_code == 403


def test_explorer_rows_are_added_to_a_dataset(database_url, echo, monkeypatch) -> None:
    """Tick requests in the explorer, add them to a new or an existing dataset; the same
    service serves the API and `llmdeck datasets add-traces`. Builders only, with CSRF."""
    import subprocess
    import sys

    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-master-explorer-test")
    get_settings.cache_clear()
    app = create_app(get_settings())
    master = {"Authorization": "Bearer ldk-master-explorer-test"}
    with TestClient(app, follow_redirects=False) as c:
        add_user(app, "b@example.com", "builder")
        add_user(app, "v@example.com", "viewer")
        model = {"alias": "echo", "upstream_name": "m", "base_url": echo.url}
        assert c.post("/api/models", json=model, headers=master).status_code == 201
        trace_ids = []
        for question in ("What is 2+2?", "Capital of France?", "Largest planet?"):
            body = {"model": "echo", "messages": [{"role": "user", "content": question}]}
            r = c.post("/v1/chat/completions", json=body, headers=master)
            assert r.status_code == 200, r.text
            trace_ids.append(r.headers["x-llmdeck-trace-id"])
        app.state.runtime.writer.flush()

        assert sign_in(c, "b@example.com").status_code == 303
        page = c.get("/requests").text
        assert 'id="select-all"' in page and 'id="to-dataset"' in page
        for trace_id in trace_ids:
            assert f'name="trace_ids" value="{trace_id}" form="to-dataset"' in page
        token = csrf_of(page)
        # Two ticked rows into a new dataset.
        r = c.post(
            "/datasets/from-requests",
            data={"csrf_token": token, "trace_ids": trace_ids[:2], "new_dataset": "picked"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/datasets/picked?added=2"
        shown = c.get(r.headers["location"]).text
        assert "Added the requests as version 1: 2 added" in shown and "Version 1 of 1" in shown
        assert "What is 2+2?" in shown and "Capital of France?" in shown
        assert "Largest planet?" not in shown
        with app.state.runtime.db.session() as session:
            from llmdeck.evals import datasets

            ds = datasets.get_by_name_or_raise(
                session, project_id=_project_id(session), name="picked"
            )
            items = datasets.items(session, dataset=ds)
            assert [i.expected for i in items] == ["What is 2+2?", "Capital of France?"]  # echo
            assert [i.meta["trace_id"] for i in items] == trace_ids[:2]
            assert {i.meta["model"] for i in items} == {"echo"}
            assert items[0].input["messages"] == [{"role": "user", "content": "What is 2+2?"}]
        # The dataset is offered in the explorer now; a third row goes into it.
        page = c.get("/requests").text
        assert '<option value="picked">picked</option>' in page
        r = c.post(
            "/datasets/from-requests",
            data={"csrf_token": token, "trace_ids": [trace_ids[2]], "dataset": "picked"},
        )
        assert r.headers["location"] == "/datasets/picked?added=1"
        assert "Version 2 of 2" in c.get("/datasets/picked").text
        # Clear errors, on the explorer shown again (not a redirect with the error in the URL).
        r = c.post("/datasets/from-requests", data={"csrf_token": token, "dataset": "picked"})
        assert r.status_code == 200 and "Pick at least one request" in r.text
        r = c.post(
            "/datasets/from-requests",
            data={"csrf_token": token, "trace_ids": trace_ids[:1], "new_dataset": "no way!"},
        )
        assert r.status_code == 200 and "usable" in r.text
        r = c.post(
            "/datasets/from-requests",
            data={"csrf_token": token, "trace_ids": trace_ids[:1], "dataset": "missing"},
        )
        assert r.status_code == 200 and 'role="alert"' in r.text
        # No CSRF token, no change.
        r = c.post("/datasets/from-requests", data={"trace_ids": trace_ids, "dataset": "picked"})
        assert r.status_code == 403
        # Viewers see no checkboxes and cannot add.
        c.post("/sign-out", data={"csrf_token": token})
        assert sign_in(c, "v@example.com").status_code == 303
        page = c.get("/requests").text
        assert 'name="trace_ids"' not in page and 'id="to-dataset"' not in page
        r = c.post(
            "/datasets/from-requests",
            data={"csrf_token": csrf_of(page), "trace_ids": trace_ids, "dataset": "picked"},
        )
        assert r.status_code == 403
        # The API endpoint and the CLI use the same service.
        r = c.post(
            "/api/datasets/via-api/traces",
            json={"trace_ids": trace_ids, "create_dataset": True},
            headers=master,
        )
        assert r.status_code == 200 and r.json()["item_count"] == 3, r.text
        missing = c.post("/api/datasets/nope/traces", json={"trace_ids": trace_ids}, headers=master)
        assert missing.status_code == 404
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmdeck",
            "datasets",
            "add-traces",
            "via-cli",
            *trace_ids[1:],
            "--create",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert "version 1: 2 added, 0 already in the dataset." in cli.stdout
    again = subprocess.run(
        [sys.executable, "-m", "llmdeck", "datasets", "add-traces", "nope", trace_ids[0]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 1 and "No dataset named 'nope'" in again.stderr


def test_playground_tries_a_registered_prompt_on_several_models(upstream) -> None:
    """The prompt page links to the playground pre-filled with the prompt; each model picked
    streams `prompt:NAME@LABEL` rendered with the variables, on that model."""
    import json

    from llmdeck.catalog import service as catalog
    from llmdeck.catalog.schemas import ModelCreate
    from llmdeck.prompts import service as prompt_service
    from llmdeck.prompts.schemas import Message, PromptVersionCreate
    from tests.test_console import page_csrf

    upstream.default = {"kind": "ok", "text": "Streamed answer."}
    app = create_app(get_settings())
    with TestClient(app, follow_redirects=False) as c:
        add_user(app, "b@example.com", "builder")
        with app.state.runtime.db.session() as session:
            for alias in ("up-a", "up-b"):
                catalog.create(
                    session,
                    settings=app.state.runtime.settings,
                    data=ModelCreate(alias=alias, upstream_name=alias, base_url=upstream.url),
                )
            prompt_service.create_version(
                session,
                project_id=_project_id(session),
                name="greet",
                data=PromptVersionCreate(
                    messages=[
                        Message(role="system", content="Be {{ tone }}."),
                        Message(role="user", content="Hello {{ name }}!"),
                    ],
                    model="up-a",
                    params={"max_tokens": 33},
                    labels=["production"],
                ),
                role="admin",
            )
        assert sign_in(c, "b@example.com").status_code == 303
        editor = c.get("/prompts/greet").text
        assert 'href="/playground?prompt=greet%40production"' in editor
        page = c.get(
            "/playground", params={"prompt": "greet@production", "variables": '{"name": "Ada"}'}
        ).text
        assert 'data-prompt="greet@production"' in page
        assert (
            'data-variable="name" value="Ada"' in page and 'data-variable="tone" value=""' in page
        )
        assert 'value="up-a" checked' in page  # the prompt's own model is picked
        max_tokens = re.search(r'<input[^>]*id="max-tokens"[^>]*>', page).group(0)
        assert 'value="33"' in max_tokens  # the prompt's params
        token = page_csrf(c, "/playground")

        def stream(model: str, variables: dict) -> list[tuple[str, dict]]:
            body = {
                "model": model,
                "prompt": "greet@production",
                "variables": variables,
                "messages": [],
                "temperature": 0,
                "max_tokens": 20,
            }
            r = c.post("/playground/stream", json=body, headers={"X-CSRF-Token": token})
            assert r.status_code == 200, r.text
            events = []
            for block in r.text.strip().split("\n\n"):
                lines = dict(line.split(": ", 1) for line in block.split("\n"))
                events.append((lines["event"], json.loads(lines["data"])))
            return events

        for model in ("up-a", "up-b"):
            events = stream(model, {"name": "Ada", "tone": "brief"})
            assert events[-1][0] == "done", events
            text = "".join(d["text"] for e, d in events if e == "delta")
            assert text == "Streamed answer."
            sent = upstream.requests[-1]
            assert sent["model"] == model  # this prompt, on the model picked
            assert sent["messages"] == [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello Ada!"},
            ]
        app.state.runtime.writer.flush()
        trace = c.get(f"/requests/{events[0][1]['trace_id']}").text
        assert "up-b" in trace and "Hello Ada!" in trace
        # A missing variable is a clear error in the answer card.
        events = stream("up-a", {"name": "Ada"})
        assert events[-1][0] == "error" and "tone" in events[-1][1]["message"]
        # Bad references say what is wrong.
        assert "no label" in c.get("/playground", params={"prompt": "greet@nope"}).text
        bad = c.get("/playground", params={"prompt": "greet", "variables": "[1]"}).text
        assert "Could not read the variables" in bad
        r = c.post("/playground/stream", json={"model": "up-a"}, headers={"X-CSRF-Token": token})
        assert r.status_code == 400 and "pick a prompt" in r.text


def test_datasets_are_made_imported_and_added_to_in_the_console(database_url) -> None:
    app = create_app(get_settings())
    with TestClient(app, follow_redirects=False) as c:
        add_user(app, "b@example.com", "builder")
        add_user(app, "v@example.com", "viewer")
        sign_in(c, "b@example.com")
        token = csrf_of(c.get("/datasets").text)
        # A bad name is refused with one message, and what was typed stays.
        bad = c.post(
            "/datasets", data={"csrf_token": token, "name": "no spaces", "description": "kept"}
        )
        assert "Start with a letter or digit" in bad.text
        assert 'value="no spaces"' in bad.text and 'value="kept"' in bad.text
        assert bad.text.count('class="field-error"') == 1
        made = c.post("/datasets", data={"csrf_token": token, "name": "faq", "description": "Q"})
        assert made.status_code == 303 and made.headers["location"] == "/datasets/faq"
        again = c.post("/datasets", data={"csrf_token": token, "name": "faq"})
        assert "already exists" in again.text
        # Add one item by hand, then import a CSV file into it.
        item = {"csrf_token": token, "input": "What is 2+2?", "expected": "4"}
        added = c.post("/datasets/faq/items", data=item)
        assert added.headers["location"] == "/datasets/faq?added=1&via=form"
        empty = c.post("/datasets/faq/items", data={"csrf_token": token, "expected": "kept"})
        assert "Write the input" in empty.text and ">kept</textarea>" in empty.text
        csv_file = ("qa.csv", b"question,expected\nCapital of France?,Paris\nOf Italy?,Rome\n")
        imported = c.post(
            "/datasets/faq/import", data={"csrf_token": token}, files={"file": csv_file}
        )
        assert imported.headers["location"] == "/datasets/faq?added=2&via=file"
        page = c.get(imported.headers["location"]).text
        assert "Imported the file as version 2: 2 added, 0 already in the dataset." in page
        assert "Capital of France?" in page and "What is 2+2?" in page
        # A bad file says which line is wrong; a new name imports as a new dataset.
        broken = ("bad.jsonl", b'{"input": {"q": "ok"}}\nnot json\n')
        page = c.post(
            "/datasets/import", data={"csrf_token": token, "name": "more"}, files={"file": broken}
        )
        assert "Line 2 is not JSON" in page.text and 'value="more"' in page.text
        good = ("ok.jsonl", b'{"input": {"q": "hi"}, "expected": "hello"}\n')
        r = c.post(
            "/datasets/import", data={"csrf_token": token, "name": "more"}, files={"file": good}
        )
        assert r.headers["location"] == "/datasets/more?added=1&via=file"
        with app.state.runtime.db.session() as session:
            from llmdeck.evals import datasets

            faq = datasets.get_by_name(session, project_id=_project_id(session), name="faq")
            assert (faq.version, datasets.count(session, dataset=faq)) == (2, 3)
        # A viewer sees the datasets but cannot change them.
        c.cookies.clear()
        sign_in(c, "v@example.com")
        page = c.get("/datasets/faq").text
        assert 'id="add-item"' not in page and 'id="new-dataset"' not in c.get("/datasets").text
        token = csrf_of(page)
        assert c.post("/datasets", data={"csrf_token": token, "name": "x"}).status_code == 403
        refused = c.post("/datasets/faq/items", data={"csrf_token": token, "input": "x"})
        assert refused.status_code == 403
