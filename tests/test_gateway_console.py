"""The gateway's configuration page in-process, on SQLite and PostgreSQL: routes with their
deployments and health, limits and budgets, the response cache, YAML export and apply, and
who may change what."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
import yaml
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.settings import get_settings
from llmdeck.gateway import config as service
from tests.test_console import add_user, csrf_of, sign_in

UPSTREAM = "http://127.0.0.1:9/v1"  # never called: these tests only configure


@pytest.fixture
def app(database_url):
    return create_app(get_settings())


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as client:
        add_user(app, "root@example.com", "admin", is_superuser=True)
        add_user(app, "ada@example.com", "admin")
        add_user(app, "vic@example.com", "viewer")
        yield client


def text_of(response) -> str:
    return html.unescape(response.text)


def words(response) -> str:
    """The page's text as a person reads it: no tags, single spaces."""
    return " ".join(re.sub(r"<[^>]+>", " ", text_of(response)).split()).replace(" .", ".")


def route_form(alias: str = "team-chat", **extra) -> dict:
    return {
        "alias": alias,
        "kind": "chat",
        "strategy": "weighted",
        "fallbacks": "",
        "retries": "2",
        "attempt_timeout": "",
        "deadline": "",
        "context_window": "8192",
        "input_price_per_mtok": "0.15",
        "output_price_per_mtok": "0.6",
        "d-0-name": "primary",
        "d-0-provider": "openai",
        "d-0-upstream": "gpt-4o-mini",
        "d-0-base_url": UPSTREAM,
        "d-0-api_key": "sk-first-secret",
        "d-0-weight": "3",
        "d-1-name": "",
        "d-1-provider": "openai",
        "d-1-upstream": "",
        "d-1-base_url": "",
        "d-1-api_key": "",
        "d-1-weight": "1",
        **extra,
    }


def post(client: TestClient, path: str, data: dict, page: str = "/gateway", **kw):
    return client.post(path, data={"csrf_token": csrf_of(client.get(page).text), **data}, **kw)


def stored(app, alias: str):
    with app.state.runtime.db.session() as session:
        route = service.get_route_by_alias(session, alias=alias)
        return None if route is None else service.route_public(session, route)


def test_an_admin_adds_edits_and_deletes_a_route(app, client) -> None:
    sign_in(client, "ada@example.com")
    page = client.get("/gateway")
    assert page.status_code == 200 and "No routes yet" in page.text
    r = post(client, "/gateway/routes", route_form(), page="/gateway/routes/new")
    assert r.status_code == 303 and r.headers["location"] == "/gateway"
    page = client.get("/gateway")
    assert "Added route team-chat." in page.text
    assert "sk-first-secret" not in page.text and "stored" in page.text
    assert "gpt-4o-mini" in page.text and UPSTREAM in page.text and "healthy" in page.text
    assert "Added route" not in client.get("/gateway").text  # shown once
    route = stored(app, "team-chat")
    assert route.project == "default" and route.retries == 2
    assert route.deployments[0].weight == 3 and route.deployments[0].has_api_key

    # The edit form shows the route; no key is shown, and an empty key field keeps it.
    edit = client.get("/gateway/routes/edit?alias=team-chat")
    assert "gpt-4o-mini" in edit.text and "sk-first-secret" not in edit.text
    assert "A key is stored; leave empty to keep it." in edit.text
    changed = route_form(
        fallbacks="small-chat",
        editing="1",
        **{
            "d-0-api_key": "",
            "d-1-name": "backup",
            "d-1-upstream": "llama3",
            "d-1-base_url": "http://127.0.0.1:10/v1",
        },
    )
    r = post(client, "/gateway/routes", changed, page="/gateway/routes/edit?alias=team-chat")
    assert r.status_code == 303
    route = stored(app, "team-chat")
    assert route.fallbacks == ["small-chat"]
    assert {(d.name, d.has_api_key) for d in route.deployments} == {
        ("primary", True),
        ("backup", False),
    }
    with app.state.runtime.db.session() as session:
        row = service.get_route_by_alias(session, alias="team-chat")
        from llmdeck.core import secrets

        key = next(d for d in row.deployments if d.name == "primary").api_key_encrypted
        assert secrets.decrypt(app.state.runtime.settings, key) == "sk-first-secret"

    # Adding a route under a taken alias says so instead of replacing it.
    r = post(client, "/gateway/routes", route_form(), page="/gateway/routes/new")
    assert r.status_code == 200 and "exists already" in text_of(r)

    r = post(client, "/gateway/routes/delete", {"alias": "team-chat"})
    assert r.status_code == 303 and stored(app, "team-chat") is None
    assert "Deleted route team-chat." in client.get("/gateway").text


def test_a_bad_route_form_keeps_what_was_typed_with_one_message_per_field(app, client) -> None:
    sign_in(client, "ada@example.com")
    bad = route_form(
        alias="bad alias!",
        retries="99",
        **{"d-0-upstream": "", "d-0-weight": "0", "d-0-api_key": "sk-typed"},
    )
    r = post(client, "/gateway/routes", bad, page="/gateway/routes/new")
    page = text_of(r)
    assert r.status_code == 200
    assert 'value="bad alias!"' in page and 'value="99"' in page and 'value="primary"' in page
    assert "Use letters, digits and . _ : / - only" in page
    assert "Must be at most 10." in page
    assert page.count("Required.") == 1 and "Must be above zero." in page
    assert "sk-typed" not in page  # keys are never echoed back
    assert 'name="csrf_token"' in page
    # A base URL the service refuses is shown by the deployments, with its name.
    r = post(
        client,
        "/gateway/routes",
        route_form(**{"d-0-base_url": "ftp://x"}),
        page="/gateway/routes/new",
    )
    assert r.status_code == 200 and "must start with http://" in text_of(r)
    assert stored(app, "team-chat") is None
    # "Another deployment" adds an empty row and saves nothing.
    r = post(client, "/gateway/routes", route_form(action="more"), page="/gateway/routes/new")
    assert r.status_code == 200 and 'name="d-2-name"' in r.text and stored(app, "team-chat") is None


def test_limits_are_set_and_removed_per_project_and_per_key(app, client) -> None:
    sign_in(client, "ada@example.com")
    with app.state.runtime.db.session() as session:
        from llmdeck.identity import service as identity
        from llmdeck.identity.schemas import ApiKeyCreate

        project = identity.get_project_by_name_or_raise(session, name="default")
        key, _ = identity.create_key(session, project=project, data=ApiKeyCreate(name="ci"))
        key_id = key.id
    r = post(client, "/gateway/limits", {"scope": "project", "rpm": "60", "budget": "5"})
    assert r.status_code == 303
    r = post(client, "/gateway/limits", {"scope": "key", "key": key_id, "tpm": "1000"})
    assert r.status_code == 303
    page = text_of(client.get("/gateway"))
    assert "Saved the limits of key" in page and "ci (" in page and "$5 per month" in page
    with app.state.runtime.db.session() as session:
        specs = [service.limit_spec(session, x) for x in service.list_limits(session)]
    assert {(s.project, s.key, s.rpm, s.tpm, s.budget) for s in specs} == {
        ("default", None, 60, None, 5.0),
        (None, key_id, None, 1000, None),
    }
    # Errors stay on the form, with what was typed (200, as every console form).
    r = post(client, "/gateway/limits", {"scope": "project", "rpm": "-1", "tpm": "lots"})
    page = text_of(r)
    assert r.status_code == 200 and "Must not be negative." in page
    assert "Enter a whole number." in page and 'value="lots"' in page
    r = post(client, "/gateway/limits", {"scope": "key", "key": ""})
    assert r.status_code == 200 and "Pick the API key to limit." in r.text
    r = post(client, "/gateway/limits/delete", {"scope": "key", "key": key_id})
    assert r.status_code == 303
    r = post(client, "/gateway/limits/delete", {"scope": "project"})
    assert r.status_code == 303
    assert "No limits: every call is allowed." in client.get("/gateway").text


def test_the_cache_policy_is_set_refused_and_removed(app, client) -> None:
    sign_in(client, "ada@example.com")
    r = post(client, "/gateway/cache", {"ttl_seconds": "600", "exact": "1"})
    assert r.status_code == 303
    page = text_of(client.get("/gateway"))
    assert "answers kept 600 s" in page and "semantic matching off" in page
    # A semantic cache with a chat model to embed with is refused, saying what to use.
    r = post(
        client,
        "/gateway/cache",
        {"ttl_seconds": "60", "semantic_threshold": "0.9", "embedding_model": "smollm2-135m"},
    )
    page = text_of(r)
    assert r.status_code == 200 and "needs an embedding model" in page
    assert 'value="0.9"' in page and 'value="60"' in page
    r = post(client, "/gateway/cache", {"ttl_seconds": "0", "semantic_threshold": "2"})
    assert r.status_code == 200 and "Must be above zero." in r.text
    assert "Must be at most 1." in r.text
    with app.state.runtime.db.session() as session:
        (policy,) = service.list_cache_policies(session)
        assert policy.ttl_seconds == 600
    r = post(client, "/gateway/cache/delete", {})
    assert r.status_code == 303
    assert "Off: every call goes to the model." in client.get("/gateway").text


def test_yaml_is_exported_and_applied_and_a_bad_file_changes_nothing(app, client) -> None:
    sign_in(client, "root@example.com")
    post(client, "/gateway/routes", route_form(), page="/gateway/routes/new")
    exported = client.get("/gateway/config.yaml")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    data = yaml.safe_load(exported.text)
    assert data["routes"][0]["alias"] == "team-chat" and "sk-first-secret" not in exported.text
    assert data["routes"][0]["deployments"][0]["api_key_env"].startswith("LLMDECK_KEY_")

    data["routes"][0]["retries"] = 5
    data["routes"].append(
        {
            "alias": "second",
            "deployments": [{"name": "a", "upstream": "m", "base_url": UPSTREAM}],
        }
    )
    data["limits"] = [{"project": "default", "rpm": 10}]
    r = post(client, "/gateway/config", {"text": yaml.safe_dump(data)})
    assert r.status_code == 303
    page = words(client.get("/gateway"))
    assert "Applied 2 routes, 1 limit and 0 cache policies." in page
    assert stored(app, "team-chat").retries == 5
    assert stored(app, "team-chat").deployments[0].has_api_key  # the stored key stays

    # A file upload with prune removes the routes it omits, and says which.
    one = {"routes": [data["routes"][1]]}
    files = {"file": ("gateway.yaml", yaml.safe_dump(one).encode(), "application/yaml")}
    r = post(client, "/gateway/config", {"prune": "1"}, files=files)
    assert r.status_code == 303
    assert "Removed route: team-chat." in words(client.get("/gateway"))
    assert stored(app, "team-chat") is None

    # Bad files: nothing changes, the text stays, the message says what to fix.
    broken = "routes:\n- alias: x\n  deployments: [\n"
    r = post(client, "/gateway/config", {"text": broken})
    page = text_of(r)
    assert r.status_code == 200 and "Nothing was changed. The file is not valid YAML" in page
    assert "deployments: [" in page
    r = post(client, "/gateway/config", {"text": "routes:\n- alias: x\n"})
    assert r.status_code == 200 and "routes.0.deployments: Field required" in text_of(r)
    half = {
        "routes": [{"alias": "third", "deployments": data["routes"][1]["deployments"]}],
        "limits": [{"project": "no-such-project", "rpm": 1}],
    }
    r = post(client, "/gateway/config", {"text": yaml.safe_dump(half)})
    assert r.status_code == 200 and "no-such-project" in text_of(r)
    assert stored(app, "third") is None  # the route before the error was rolled back too
    r = post(client, "/gateway/config", {"text": "  "})
    assert r.status_code == 200 and "Paste a YAML configuration" in r.text


def test_viewers_read_but_change_nothing_and_admins_stay_in_their_project(app, client) -> None:
    sign_in(client, "root@example.com")
    shared = route_form(alias="shared-chat", shared="1")
    assert post(client, "/gateway/routes", shared, page="/gateway/routes/new").status_code == 303
    assert post(client, "/gateway/cache", {"ttl_seconds": "60", "exact": "1"}).status_code == 303
    client.cookies.clear()

    sign_in(client, "vic@example.com")
    page = client.get("/gateway")
    assert page.status_code == 200 and "shared-chat" in page.text
    assert "answers kept 60 s" in page.text
    assert "Add route" not in page.text and "/gateway/limits" not in page.text
    assert "Download YAML" not in page.text
    assert client.get("/gateway/routes/new").status_code == 403
    assert client.get("/gateway/config.yaml").status_code == 403
    form_token = re.search(r'data-csrf="([^"]+)"', page.text).group(1)
    for path, data in [
        ("/gateway/routes", route_form()),
        ("/gateway/routes/delete", {"alias": "shared-chat"}),
        ("/gateway/limits", {"scope": "project", "rpm": "1"}),
        ("/gateway/limits/delete", {"scope": "project"}),
        ("/gateway/cache", {"ttl_seconds": "5"}),
        ("/gateway/cache/delete", {}),
        ("/gateway/config", {"text": "routes: []"}),
    ]:
        r = client.post(path, data={"csrf_token": form_token, **data})
        assert r.status_code == 403, path
    assert stored(app, "shared-chat") is not None and stored(app, "team-chat") is None
    client.cookies.clear()

    # A project admin may not change a shared route nor apply a whole configuration.
    sign_in(client, "ada@example.com")
    page = client.get("/gateway").text
    assert "Edit route shared-chat" not in page and "needs a superuser" in page
    assert client.get("/gateway/routes/edit?alias=shared-chat").status_code == 403
    r = post(client, "/gateway/routes/delete", {"alias": "shared-chat"})
    assert r.status_code == 403 and stored(app, "shared-chat") is not None
    r = post(client, "/gateway/config", {"text": "routes: []"})
    assert r.status_code == 403
    # Without a CSRF token nothing is changed either.
    r = client.post("/gateway/limits", data={"scope": "project", "rpm": "1"})
    assert r.status_code == 403
