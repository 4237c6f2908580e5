"""The People page: who is in the project, adding people, changing roles, removing them;
and the service rule behind it that a project always keeps an admin."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.errors import Conflict, NotFound
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ProjectCreate, UserCreate
from tests.test_console import add_user, csrf_of, sign_in


@pytest.fixture
def app(database_url):
    return create_app(get_settings())


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as client:
        yield client


def _user_id(app, email: str) -> str:
    with app.state.runtime.db.session() as session:
        return identity.get_user_by_email(session, email=email).id


def _role(app, email: str, project: str = "default") -> str | None:
    with app.state.runtime.db.session() as session:
        user = identity.get_user_by_email(session, email=email)
        target = identity.get_project_by_name_or_raise(session, name=project)
        return identity.role_of(session, user=user, project=target)


def test_the_last_admin_cannot_be_demoted_or_removed(db: Database) -> None:
    with db.session() as session:
        project = identity.create_project(session, data=ProjectCreate(name="acme"))
        ada = identity.create_user(session, data=UserCreate(email="a@x.io", password="password1"))
        bob = identity.create_user(session, data=UserCreate(email="b@x.io", password="password1"))
        identity.add_member(session, user=ada, project=project, role="admin")
        identity.add_member(session, user=bob, project=project, role="viewer")
        with pytest.raises(Conflict, match="last admin of acme"):
            identity.add_member(session, user=ada, project=project, role="builder")
        with pytest.raises(Conflict, match="last admin"):
            identity.remove_member(session, user=ada, project=project)
        identity.add_member(session, user=bob, project=project, role="admin")
        identity.add_member(session, user=ada, project=project, role="builder")
        assert [(u.email, r) for u, r in identity.list_members(session, project=project)] == [
            ("a@x.io", "builder"),
            ("b@x.io", "admin"),
        ]
        identity.remove_member(session, user=ada, project=project)
        assert identity.role_of(session, user=ada, project=project) is None
        with pytest.raises(NotFound, match="not a member"):
            identity.remove_member(session, user=ada, project=project)


def test_an_admin_adds_changes_and_removes_people(app, client) -> None:
    add_user(app, "ada@example.com", "admin", name="Ada")
    add_user(app, "bob@example.com", None)  # an account, in no project yet
    sign_in(client, "ada@example.com")
    page = client.get("/people")
    assert page.status_code == 200 and "Ada" in page.text and 'href="/people"' in page.text
    assert 'name="name"' not in page.text  # only superusers create accounts
    token = csrf_of(page.text)
    added = client.post(
        "/people", data={"csrf_token": token, "email": " Bob@Example.com ", "role": "reviewer"}
    )
    assert added.status_code == 303 and added.headers["location"] == "/people"
    assert _role(app, "bob@example.com") == "reviewer"
    shown = client.get("/people").text
    assert "bob@example.com</strong> is now reviewer" in shown
    assert "is now reviewer" not in client.get("/people").text  # the message shows once
    bob = _user_id(app, "bob@example.com")
    changed = client.post(f"/people/{bob}/role", data={"csrf_token": token, "role": "builder"})
    assert changed.status_code == 303 and _role(app, "bob@example.com") == "builder"
    removed = client.post(f"/people/{bob}/remove", data={"csrf_token": token})
    assert removed.status_code == 303 and _role(app, "bob@example.com") is None
    assert "Removed <strong>bob@example.com</strong>" in client.get("/people").text


def test_bad_input_is_kept_with_one_message_per_field(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    sign_in(client, "ada@example.com")
    token = csrf_of(client.get("/people").text)
    # Someone without an account: a project admin cannot create one (as in the API).
    page = client.post(
        "/people", data={"csrf_token": token, "email": "new@example.com", "role": "viewer"}
    )
    assert page.status_code == 200 and "No one has an account with this email" in page.text
    assert 'value="new@example.com"' in page.text
    assert re.search(r'<option value="viewer" selected>', page.text)
    assert page.text.count('class="field-error"') == 1
    add_user(app, "bob@example.com", None)
    page = client.post(
        "/people", data={"csrf_token": token, "email": "bob@example.com", "role": "owner"}
    )
    assert "Unknown role" in page.text and 'id="person-role-error"' in page.text
    assert 'value="bob@example.com"' in page.text and _role(app, "bob@example.com") is None
    # The last admin is refused in the row, and keeps the role.
    ada = _user_id(app, "ada@example.com")
    page = client.post(f"/people/{ada}/role", data={"csrf_token": token, "role": "viewer"})
    assert page.status_code == 200 and "last admin" in page.text
    assert _role(app, "ada@example.com") == "admin"
    page = client.post(f"/people/{ada}/remove", data={"csrf_token": token})
    assert "last admin" in page.text and _role(app, "ada@example.com") == "admin"


def test_a_superuser_creates_an_account_and_sees_its_password_once(app, client) -> None:
    add_user(app, "root@example.com", "admin", is_superuser=True)
    sign_in(client, "root@example.com")
    page = client.get("/people")
    assert 'name="name"' in page.text
    token = csrf_of(page.text)
    bad = client.post(
        "/people", data={"csrf_token": token, "email": "not-an-email", "name": "Cy", "role": "x"}
    )
    assert "Enter an email address" in bad.text and 'value="Cy"' in bad.text
    assert bad.text.count('class="field-error"') == 1
    made = client.post(
        "/people",
        data={"csrf_token": token, "email": "cy@example.com", "name": "Cy", "role": "builder"},
    )
    assert made.status_code == 303
    shown = client.get("/people")
    assert shown.headers["cache-control"] == "no-store"
    password = re.search(r'id="new-password" type="text" readonly value="([^"]+)"', shown.text)
    assert password and "Copy the password now" in shown.text
    assert password.group(1) not in client.get("/people").text  # shown once
    client.post("/sign-out", data={"csrf_token": token})
    assert sign_in(client, "cy@example.com", password.group(1)).status_code == 303
    assert _role(app, "cy@example.com") == "builder"
    assert client.get("/people").status_code == 200


@pytest.mark.parametrize("role", ["viewer", "builder"])
def test_only_admins_manage_people(app, client, role) -> None:
    add_user(app, "ada@example.com", "admin")
    add_user(app, "someone@example.com", role)
    sign_in(client, "someone@example.com")
    page = client.get("/people")
    assert page.status_code == 200 and "ada@example.com" in page.text  # members are visible
    assert 'action="/people"' not in page.text and "/remove" not in page.text
    token = csrf_of(page.text)
    ada = _user_id(app, "ada@example.com")
    for path, data in [
        ("/people", {"email": "ada@example.com", "role": "viewer"}),
        (f"/people/{ada}/role", {"role": "viewer"}),
        (f"/people/{ada}/remove", {}),
    ]:
        response = client.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 403 and "needs admin" in response.text
    assert _role(app, "ada@example.com") == "admin"
