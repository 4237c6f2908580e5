"""CLI of the identity domain: `llmdeck projects|users|keys ...`."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from sqlalchemy.orm import Session

from llmdeck.cli.output import console, db_session, emit, validated
from llmdeck.core.errors import NotFound
from llmdeck.identity import service
from llmdeck.identity.models import User
from llmdeck.identity.schemas import ApiKeyCreate, ApiKeyPublic, ProjectCreate, UserCreate

projects = typer.Typer(help="Create and list projects.", no_args_is_help=True)
users = typer.Typer(
    help="Users who sign in to the console, and their roles in projects.", no_args_is_help=True
)
keys = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@projects.command("create")
def projects_create(
    name: str, description: str = typer.Option("", help="What the project is for.")
) -> None:
    """Create a project."""
    with db_session() as session:
        project = service.create_project(
            session, data=validated(ProjectCreate, name=name, description=description)
        )
    console.print(f"Created project [bold]{project.name}[/bold].")


@projects.command("list")
def projects_list(as_json: bool = JSON) -> None:
    """List projects."""
    with db_session() as session:
        rows = [
            {"name": p.name, "description": p.description, "created_at": p.created_at}
            for p in service.list_projects(session)
        ]
    emit(rows, ["name", "description", "created_at"], as_json=as_json)


@users.command("create")
def users_create(
    email: str,
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
    ),
    name: str = typer.Option("", help="Display name."),
    project: str | None = typer.Option(None, help="Give the user a role in this project."),
    role: str = typer.Option("builder", help="admin, builder, reviewer or viewer."),
    superuser: bool = typer.Option(False, help="Administer every project."),
) -> None:
    """Create a user (and optionally give them a role in a project)."""
    with db_session() as session:
        user = service.create_user(
            session,
            data=validated(
                UserCreate, email=email, password=password, name=name, is_superuser=superuser
            ),
        )
        if project:
            target = service.get_project_by_name_or_raise(session, name=project)
            service.add_member(session, user=user, project=target, role=role)
    where = f" as {role} in {project}" if project else ""
    console.print(f"Created user [bold]{user.email}[/bold]{where}.")


MEMBER_PROJECT = typer.Option(..., "--project", help="Project of the members.")


def _user_or_raise(session: Session, email: str) -> User:
    user = service.get_user_by_email(session, email=email)
    if user is None:
        raise NotFound(
            f"No user with email {email!r}. `llmdeck users create {email}` adds one.",
            param="email",
        )
    return user


@users.command("list")
def users_list(project: str = MEMBER_PROJECT, as_json: bool = JSON) -> None:
    """List a project's members and their roles."""
    with db_session() as session:
        target = service.get_project_by_name_or_raise(session, name=project)
        rows = [
            {"email": u.email, "name": u.name, "role": role, "superuser": u.is_superuser}
            for u, role in service.list_members(session, project=target)
        ]
    emit(rows, ["email", "name", "role", "superuser"], as_json=as_json)


@users.command("role")
def users_role(
    email: str,
    role: str = typer.Argument(help="admin, builder, reviewer or viewer."),
    project: str = MEMBER_PROJECT,
) -> None:
    """Give a user a role in a project, or change it (a project always keeps an admin)."""
    with db_session() as session:
        user = _user_or_raise(session, email)
        target = service.get_project_by_name_or_raise(session, name=project)
        service.add_member(session, user=user, project=target, role=role)
        shown = user.email
    console.print(f"{shown} is now {role} in {project}.")


@users.command("remove")
def users_remove(email: str, project: str = MEMBER_PROJECT) -> None:
    """Take a user out of a project; their account and other projects stay."""
    with db_session() as session:
        user = _user_or_raise(session, email)
        target = service.get_project_by_name_or_raise(session, name=project)
        service.remove_member(session, user=user, project=target)
        shown = user.email
    console.print(f"Removed {shown} from {project}.")


@keys.command("create")
def keys_create(
    project: str = typer.Option(..., help="Project the key acts in."),
    name: str = typer.Option("default", help="A name to recognise the key by."),
    role: str = typer.Option("builder", help="admin, builder, reviewer or viewer."),
    expires: datetime | None = typer.Option(None, help="Expiry (ISO 8601, UTC)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, including the key."),
) -> None:
    """Create an API key. The key is shown once: store it now."""
    with db_session() as session:
        target = service.get_project_by_name_or_raise(session, name=project)
        key, secret = service.create_key(
            session,
            project=target,
            data=validated(ApiKeyCreate, name=name, role=role, expires_at=expires),
        )
        public = ApiKeyPublic.model_validate(key).model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps({**public, "project": project, "key": secret}, indent=2))
        return
    console.print(f"Created key [bold]{name}[/bold] ({role}) for project [bold]{project}[/bold]:")
    console.print(f"\n    {secret}\n", highlight=False)
    console.print("Store it now: it is not shown again.")


@keys.command("list")
def keys_list(
    project: str = typer.Option(..., help="Project whose keys to list."), as_json: bool = JSON
) -> None:
    """List a project's keys (prefixes only)."""
    with db_session() as session:
        target = service.get_project_by_name_or_raise(session, name=project)
        rows = [
            ApiKeyPublic.model_validate(k).model_dump()
            for k in service.list_keys(session, project=target)
        ]
    for row in rows:
        row["status"] = "revoked" if row["revoked_at"] else "active"
    emit(
        rows,
        ["id", "prefix", "name", "role", "status", "created_at", "last_used_at", "expires_at"],
        as_json=as_json,
    )


@keys.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="Key id or prefix."),
    project: str | None = typer.Option(None, help="Project the key belongs to."),
) -> None:
    """Revoke a key: it stops working at once."""
    with db_session() as session:
        target = service.get_project_by_name_or_raise(session, name=project) if project else None
        key = service.get_key_or_raise(session, key_id=key_id, project=target)
        service.revoke_key(session, key=key)
    console.print(f"Revoked key [bold]{key.prefix}[/bold] ({key.name}).")
