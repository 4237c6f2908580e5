"""Projects, users, roles and API keys on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from llmdeck.core.db import Database
from llmdeck.core.errors import AuthenticationFailed, Conflict, InvalidRequest
from llmdeck.identity import service
from llmdeck.identity.models import ApiKey, User
from llmdeck.identity.schemas import ApiKeyCreate, ProjectCreate, UserCreate


def test_projects_are_unique_by_name(db: Database) -> None:
    with db.session() as session:
        service.create_project(session, data=ProjectCreate(name="acme"))
        with pytest.raises(Conflict, match="already exists"):
            service.create_project(session, data=ProjectCreate(name="acme"))
        names = [p.name for p in service.list_projects(session)]
    assert names == ["acme", "default"]


def test_passwords_are_hashed_and_verified(db: Database) -> None:
    with db.session() as session:
        service.create_user(
            session, data=UserCreate(email="Ada@Example.com", password="correct horse")
        )
    with db.session() as session:
        stored = session.scalar(select(User))
        assert stored.email == "ada@example.com"
        assert "correct horse" not in stored.password_hash
        assert stored.password_hash.startswith("$argon2")
        user = service.authenticate_password(
            session, email="ada@example.com", password="correct horse"
        )
        assert user.id == stored.id
        with pytest.raises(AuthenticationFailed, match="Wrong email or password"):
            service.authenticate_password(session, email="ada@example.com", password="wrong")
        with pytest.raises(AuthenticationFailed):
            service.authenticate_password(session, email="nobody@example.com", password="whatever1")


def test_roles_per_project(db: Database) -> None:
    with db.session() as session:
        a = service.create_project(session, data=ProjectCreate(name="a"))
        b = service.create_project(session, data=ProjectCreate(name="b"))
        user = service.create_user(session, data=UserCreate(email="r@x.io", password="password1"))
        service.add_member(session, user=user, project=a, role="reviewer")
        assert service.role_of(session, user=user, project=a) == "reviewer"
        assert service.role_of(session, user=user, project=b) is None
        service.add_member(session, user=user, project=a, role="builder")
        assert [(p.name, r) for p, r in service.projects_of(session, user=user)] == [
            ("a", "builder")
        ]
        with pytest.raises(InvalidRequest, match="Unknown role"):
            service.add_member(session, user=user, project=b, role="owner")


def test_api_key_is_shown_once_and_stored_as_hash(db: Database) -> None:
    with db.session() as session:
        project = service.create_project(session, data=ProjectCreate(name="acme"))
        key, secret = service.create_key(session, project=project, data=ApiKeyCreate(name="ci"))
    with db.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.id == key.id))
        assert secret.startswith(row.prefix) and len(row.prefix) == 12
        assert secret not in (row.key_hash, row.prefix)
        assert row.last_used_at is None
        principal = service.authenticate_key(session, secret=secret)
        assert (principal.project_name, principal.role, principal.api_key_id) == (
            "acme",
            "builder",
            key.id,
        )
    with db.session() as session:
        assert session.get(ApiKey, key.id).last_used_at is not None


def test_revoked_expired_and_unknown_keys_are_refused(db: Database) -> None:
    with db.session() as session:
        project = service.create_project(session, data=ProjectCreate(name="acme"))
        key, secret = service.create_key(session, project=project, data=ApiKeyCreate())
        short, short_secret = service.create_key(
            session,
            project=project,
            data=ApiKeyCreate(expires_at=datetime.now(UTC) + timedelta(seconds=30)),
        )
        short.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        service.revoke_key(session, key=service.get_key_or_raise(session, key_id=key.prefix))
    with db.session() as session:
        with pytest.raises(AuthenticationFailed, match="revoked"):
            service.authenticate_key(session, secret=secret)
        with pytest.raises(AuthenticationFailed, match="expired"):
            service.authenticate_key(session, secret=short_secret)
        with pytest.raises(AuthenticationFailed, match="Invalid API key"):
            service.authenticate_key(session, secret="ldk-made-up")
        with pytest.raises(InvalidRequest, match="future"):
            service.create_key(
                session,
                project=project,
                data=ApiKeyCreate(expires_at=datetime(2000, 1, 1, tzinfo=UTC)),
            )


def test_revoking_a_revoked_key_says_so(db: Database) -> None:
    with db.session() as session:
        project = service.create_project(session, data=ProjectCreate(name="acme"))
        key, _ = service.create_key(session, project=project, data=ApiKeyCreate(name="ci"))
        service.revoke_key(session, key=key)
    with db.session() as session:
        again = service.get_key_or_raise(session, key_id=key.prefix)
        with pytest.raises(Conflict, match=r"ci\) was already revoked on \d{4}-") as raised:
            service.revoke_key(session, key=again)
        assert raised.value.code == "already_revoked"


def test_master_key_is_admin_in_every_project_and_stored_once(db: Database) -> None:
    with db.session() as session:
        service.create_project(session, data=ProjectCreate(name="acme"))
        service.ensure_master_key(session, secret="ldk-master-secret")
        service.ensure_master_key(session, secret="ldk-master-secret")
    with db.session() as session:
        assert len(list(session.scalars(select(ApiKey).where(ApiKey.project_id.is_(None))))) == 1
        default = service.authenticate_key(session, secret="ldk-master-secret")
        acme = service.authenticate_key(session, secret="ldk-master-secret", project_name="acme")
    assert (default.project_name, default.role, default.all_projects) == ("default", "admin", True)
    assert acme.project_name == "acme"


def test_project_key_cannot_act_in_another_project(db: Database) -> None:
    with db.session() as session:
        acme = service.create_project(session, data=ProjectCreate(name="acme"))
        service.create_project(session, data=ProjectCreate(name="other"))
        _, secret = service.create_key(session, project=acme, data=ApiKeyCreate())
        with pytest.raises(AuthenticationFailed, match="belongs to project 'acme'"):
            service.authenticate_key(session, secret=secret, project_name="other")


def test_members_are_listed_changed_and_removed_over_the_api(
    database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from llmdeck.app import create_app
    from llmdeck.core.settings import get_settings

    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-master-members")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as http:
        http.headers["Authorization"] = "Bearer ldk-master-members"
        for email, role in (("ann@x.io", "admin"), ("bob@x.io", "viewer")):
            user = {"email": email, "password": "long enough pw"}
            assert http.post("/api/users", json=user).status_code == 201
            assert http.put("/api/members", json={"email": email, "role": role}).status_code == 200
        listed = http.get("/api/members").json()
        assert {(m["email"], m["role"]) for m in listed} >= {
            ("ann@x.io", "admin"),
            ("bob@x.io", "viewer"),
        }
        assert http.delete("/api/members/bob@x.io").status_code == 204
        assert "bob@x.io" not in {m["email"] for m in http.get("/api/members").json()}
        assert http.delete("/api/members/bob@x.io").status_code == 404
        assert http.delete("/api/members/nobody@x.io").status_code == 404
        # The project's last admin cannot go.
        refused = http.delete("/api/members/ann@x.io")
        assert refused.status_code in (400, 409) and "admin" in refused.json()["error"]["message"]
