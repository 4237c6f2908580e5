"""The demo project `llmdeck up --demo` (and so `make run`) seeds for a first-time user."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from llmdeck.core.settings import Settings
from llmdeck.evals import demo as evals_demo
from llmdeck.gateway import demo as gateway_demo
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate, UserCreate
from llmdeck.knowledge import demo as knowledge_demo

DEMO_PROJECT = "demo"
ADMIN_EMAIL = "admin@llmdeck.local"
DEMO_KEY_NAME = "demo (make run)"


@dataclass
class DemoAccess:
    project: str
    email: str
    password: str | None
    api_key: str


def seed(session: Session, settings: Settings) -> DemoAccess:
    """Make sure the demo project and its admin exist; mint a fresh demo API key."""
    project = identity.ensure_project(
        session, name=DEMO_PROJECT, description="A demo project seeded by `llmdeck up --demo`."
    )
    password_file = Path(settings.home) / "initial-admin-password"
    password = None
    if identity.get_user_by_email(session, email=ADMIN_EMAIL) is None:
        # Like Jenkins' initialAdminPassword: random, readable only by this user, on this disk.
        password = secrets.token_urlsafe(12)
        admin = identity.create_user(
            session,
            data=UserCreate(email=ADMIN_EMAIL, password=password, name="Admin", is_superuser=True),
        )
        identity.add_member(session, user=admin, project=project, role="admin")
        password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    elif password_file.exists():
        password = password_file.read_text().strip()
    # A key's secret cannot be shown twice, so each start mints one and retires the last.
    for key in identity.list_keys(session, project=project):
        if key.name == DEMO_KEY_NAME and key.revoked_at is None:
            identity.revoke_key(session, key=key)
    _, secret = identity.create_key(
        session, project=project, data=ApiKeyCreate(name=DEMO_KEY_NAME, role="admin")
    )
    evals_demo.seed(session, project)
    gateway_demo.seed(session, settings, project.name)
    knowledge_demo.seed(session, settings, project)
    return DemoAccess(project=DEMO_PROJECT, email=ADMIN_EMAIL, password=password, api_key=secret)
