"""Identity logic: projects, users, memberships and API keys."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmdeck.core import secrets
from llmdeck.core.db import Database, utcnow
from llmdeck.core.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from llmdeck.identity.models import ApiKey, Membership, Project, User
from llmdeck.identity.roles import check_role
from llmdeck.identity.schemas import ApiKeyCreate, Principal, ProjectCreate, UserCreate

DEFAULT_PROJECT = "default"
# Writing last-used on every request would make each call a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


# Projects


def create_project(session: Session, *, data: ProjectCreate) -> Project:
    if get_project_by_name(session, name=data.name) is not None:
        raise Conflict(f"A project named {data.name!r} already exists.", param="name")
    project = Project(name=data.name, description=data.description)
    session.add(project)
    session.flush()
    return project


def get_project_by_name(session: Session, *, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def get_project_by_name_or_raise(session: Session, *, name: str) -> Project:
    project = get_project_by_name(session, name=name)
    if project is None:
        raise NotFound(
            f"No project named {name!r}. See `llmdeck projects list` or create it with "
            f"`llmdeck projects create {name}`.",
            param="project",
        )
    return project


def ensure_project(session: Session, *, name: str, description: str = "") -> Project:
    """The project with this name, created if missing."""
    project = get_project_by_name(session, name=name)
    if project is None:
        project = create_project(session, data=ProjectCreate(name=name, description=description))
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.name)))


# Users


def create_user(session: Session, *, data: UserCreate) -> User:
    email = data.email.strip().lower()
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise Conflict(f"A user with email {email!r} already exists.", param="email")
    user = User(
        email=email,
        name=data.name,
        password_hash=secrets.hash_password(data.password),
        is_superuser=data.is_superuser,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, *, user_id: str) -> User | None:
    return session.get(User, user_id)


def get_user_by_email(session: Session, *, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def set_password(session: Session, *, user: User, password: str) -> None:
    if len(password) < 8:
        raise InvalidRequest("A password needs at least 8 characters.", param="password")
    user.password_hash = secrets.hash_password(password)
    end_sessions(session, user=user)


def end_sessions(session: Session, *, user: User) -> None:
    """Void every console session the user has now, in any browser."""
    user.sessions_valid_from = utcnow()


def session_is_current(user: User, issued_at: float) -> bool:
    """Whether a console session issued at `issued_at` (epoch seconds) is still the user's."""
    return user.sessions_valid_from is None or issued_at >= user.sessions_valid_from.timestamp()


def authenticate_password(session: Session, *, email: str, password: str) -> User:
    user = get_user_by_email(session, email=email)
    # Verify against a dummy hash for unknown emails so timing does not reveal who exists.
    ok = secrets.verify_password(user.password_hash if user else _dummy_hash(), password)
    if user is None or not ok:
        raise AuthenticationFailed("Wrong email or password.")
    return user


@functools.cache
def _dummy_hash() -> str:
    # Computed on first use: hashing costs ~0.25 s, too much to spend at import.
    return secrets.hash_password("not-a-real-password")


def add_member(session: Session, *, user: User, project: Project, role: str) -> Membership:
    """Give `user` a role in `project` (or change the role they have)."""
    check_role(role)
    membership = session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.project_id == project.id)
    )
    if membership is None:
        membership = Membership(user_id=user.id, project_id=project.id, role=role)
        session.add(membership)
    else:
        if membership.role == "admin" and role != "admin":
            _keep_an_admin(session, user=user, project=project, change="change the role of")
        membership.role = role
    session.flush()
    return membership


def list_members(session: Session, *, project: Project) -> list[tuple[User, str]]:
    """The project's members with their role, by email."""
    rows = session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.project_id == project.id)
        .order_by(User.email)
    )
    return [(u, r) for u, r in rows]


def remove_member(session: Session, *, user: User, project: Project) -> None:
    """Take `user` out of `project` (their account stays)."""
    membership = session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.project_id == project.id)
    )
    if membership is None:
        raise NotFound(f"{user.email} is not a member of {project.name}.", param="email")
    if membership.role == "admin":
        _keep_an_admin(session, user=user, project=project, change="remove")
    session.delete(membership)
    session.flush()


def _keep_an_admin(session: Session, *, user: User, project: Project, change: str) -> None:
    # Without an admin member nobody but a superuser could manage the project again.
    others = session.scalar(
        select(func.count(Membership.id)).where(
            Membership.project_id == project.id,
            Membership.role == "admin",
            Membership.user_id != user.id,
        )
    )
    if not others:
        raise Conflict(
            f"Cannot {change} {user.email}: they are the last admin of {project.name}. "
            "Make someone else admin first.",
            param="role",
        )


def role_of(session: Session, *, user: User, project: Project) -> str | None:
    if user.is_superuser:
        return "admin"
    return session.scalar(
        select(Membership.role).where(
            Membership.user_id == user.id, Membership.project_id == project.id
        )
    )


def projects_of(session: Session, *, user: User) -> list[tuple[Project, str]]:
    """The projects a user may open, with their role in each."""
    if user.is_superuser:
        # Their own projects first, so signing in opens one they work in.
        member_of = set(
            session.scalars(select(Membership.project_id).where(Membership.user_id == user.id))
        )
        projects = sorted(list_projects(session), key=lambda p: (p.id not in member_of, p.name))
        return [(p, "admin") for p in projects]
    rows = session.execute(
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == user.id)
        .order_by(Project.name)
    )
    return [(p, r) for p, r in rows]


# API keys


def create_key(session: Session, *, project: Project, data: ApiKeyCreate) -> tuple[ApiKey, str]:
    """A new key for `project`; returns the row and the secret, which is never stored."""
    check_role(data.role)
    if data.expires_at is not None and _aware(data.expires_at) <= utcnow():
        raise InvalidRequest("The expiry must be in the future.", param="expires_at")
    secret = secrets.new_api_key()
    key = ApiKey(
        project_id=project.id,
        name=data.name,
        prefix=secret[:12],
        key_hash=secrets.hash_api_key(secret),
        role=data.role,
        expires_at=data.expires_at,
    )
    session.add(key)
    session.flush()
    return key, secret


def list_keys(session: Session, *, project: Project) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.project_id == project.id).order_by(ApiKey.id.desc())
        )
    )


def get_key_or_raise(session: Session, *, key_id: str, project: Project | None = None) -> ApiKey:
    """A key by id or by its visible prefix."""
    query = select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id))
    if project is not None:
        query = query.where(ApiKey.project_id == project.id)
    keys = list(session.scalars(query))
    if not keys:
        raise NotFound(f"No API key {key_id!r}. See `llmdeck keys list`.", param="key_id")
    return keys[0]


def revoke_key(session: Session, *, key: ApiKey) -> ApiKey:
    """Revoke a key; revoking it again is a Conflict, so a repeat never reads as success."""
    if key.revoked_at is not None:
        when = key.revoked_at.strftime("%Y-%m-%d %H:%M UTC")
        raise Conflict(
            f"API key {key.prefix} ({key.name}) was already revoked on {when}; nothing changed.",
            param="key_id",
            code="already_revoked",
        )
    key.revoked_at = utcnow()
    session.flush()
    return key


def ensure_master_key(session: Session, *, secret: str) -> ApiKey:
    """Store the master key's hash once; it is admin in every project."""
    key_hash = secrets.hash_api_key(secret)
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if key is None:
        key = ApiKey(
            project_id=None,
            name="master",
            prefix=secret[:4] + "…",
            key_hash=key_hash,
            role="admin",
        )
        session.add(key)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:  # another server process stored it first
            key = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    return key


def authenticate_header(db: Database, authorization: str | None, project: str | None) -> Principal:
    """The caller behind an `Authorization: Bearer <key>` header value."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthenticationFailed(
            "Missing API key: send `Authorization: Bearer <key>`. "
            "Create a key with `llmdeck keys create --project NAME`.",
            code="missing_api_key",
        )
    secret = authorization[7:].strip()
    with db.session() as session:
        return authenticate_key(session, secret=secret, project_name=project)


def authenticate_key(
    session: Session, *, secret: str, project_name: str | None = None
) -> Principal:
    """The principal behind a bearer key; the master key acts in `project_name` (or default)."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == secrets.hash_api_key(secret)))
    now = utcnow()
    if key is None:
        raise AuthenticationFailed(
            "Invalid API key. Create one with `llmdeck keys create --project NAME`.",
            code="invalid_api_key",
        )
    if key.revoked_at is not None:
        raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
    if key.expires_at is not None and _aware(key.expires_at) <= now:
        raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
    if key.last_used_at is None or now - _aware(key.last_used_at) > LAST_USED_RESOLUTION:
        key.last_used_at = now
    if key.project_id is None:
        project = get_project_by_name_or_raise(session, name=project_name or DEFAULT_PROJECT)
    else:
        project = session.get(Project, key.project_id)
        if project_name and project_name != project.name:
            raise AuthenticationFailed(
                f"This API key belongs to project {project.name!r}, not {project_name!r}."
            )
    return Principal(
        project_id=project.id,
        project_name=project.name,
        role=key.role,
        api_key_id=key.id,
        all_projects=key.project_id is None,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
