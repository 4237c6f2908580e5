"""Prompt registry logic: versions, labels, rendering, diffs."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmdeck.core.db import utcnow
from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.identity.roles import require
from llmdeck.prompts import authors
from llmdeck.prompts.models import Prompt, PromptChanges, PromptLabel, PromptVersion
from llmdeck.prompts.rendering import messages_variables, render_messages
from llmdeck.prompts.schemas import (
    LABEL,
    PromptPublic,
    PromptVersionCreate,
    PromptVersionPublic,
    RenderedPrompt,
)

PRODUCTION = "production"
LATEST = "latest"
# Set on a session that changed prompts: after its commit, caches of fetched versions drop
# what they hold (prompts/cache.py); other processes see the bumped `prompt_changes` counter.
CHANGED_FLAG = "llmdeck_prompts_changed"


def fetch(
    session: Session,
    *,
    project_id: str,
    name: str,
    label: str | None = None,
    version: int | None = None,
) -> PromptVersionPublic:
    """A version as the API and SDK show it, by label or number (the server's route caches
    this: see prompts/cache.py)."""
    prompt, row = resolve(session, project_id=project_id, name=name, label=label, version=version)
    return version_public(
        prompt, row, labels(session, prompt=prompt), authors.names(session, [row.created_by])
    )


generation = 0  # bumped on every change, so in-process caches (the gateway stage) can tell


def _changed(session: Session, project_id: str) -> None:
    """Count a change of the project's prompts, in the transaction that makes it."""
    global generation
    generation += 1
    session.info[CHANGED_FLAG] = True
    bump = (
        update(PromptChanges)
        .where(PromptChanges.project_id == project_id)
        .values(counter=PromptChanges.counter + 1)
    )
    if session.execute(bump).rowcount:
        return
    try:
        with session.begin_nested():
            session.add(PromptChanges(project_id=project_id, counter=1))
    except IntegrityError:  # another transaction made the row first
        session.execute(bump)


def get_by_name(session: Session, *, project_id: str, name: str) -> Prompt | None:
    return session.scalar(
        select(Prompt).where(Prompt.project_id == project_id, Prompt.name == name)
    )


def get_by_name_or_raise(session: Session, *, project_id: str, name: str) -> Prompt:
    prompt = get_by_name(session, project_id=project_id, name=name)
    if prompt is None:
        raise NotFound(
            f"No prompt named {name!r} in this project. `llmdeck prompts list` shows them.",
            param="name",
        )
    return prompt


def list(session: Session, *, project_id: str, kind: str | None = None) -> list[Prompt]:  # noqa: A001
    query = select(Prompt).where(Prompt.project_id == project_id).order_by(Prompt.name)
    if kind:
        query = query.where(Prompt.kind == kind)
    return [*session.scalars(query)]


def versions(session: Session, *, prompt: Prompt) -> list[PromptVersion]:
    return [
        *session.scalars(
            select(PromptVersion)
            .where(PromptVersion.prompt_id == prompt.id)
            .order_by(PromptVersion.version.desc())
        )
    ]


def labels(session: Session, *, prompt: Prompt) -> dict[str, int]:
    """Label name -> version number."""
    rows = session.execute(
        select(PromptLabel.name, PromptVersion.version)
        .join(PromptVersion, PromptVersion.id == PromptLabel.version_id)
        .where(PromptLabel.prompt_id == prompt.id)
    )
    return {name: version for name, version in rows}


def get_version_or_raise(session: Session, *, prompt: Prompt, version: int) -> PromptVersion:
    row = session.scalar(
        select(PromptVersion).where(
            PromptVersion.prompt_id == prompt.id, PromptVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"Prompt {prompt.name!r} has no version {version}.", param="version")
    return row


def resolve(
    session: Session,
    *,
    project_id: str,
    name: str,
    label: str | None = None,
    version: int | None = None,
) -> tuple[Prompt, PromptVersion]:
    """The version a name points at: an explicit version, a label, or (neither) the latest."""
    prompt = get_by_name_or_raise(session, project_id=project_id, name=name)
    if version is not None:
        return prompt, get_version_or_raise(session, prompt=prompt, version=version)
    if label and label != LATEST:
        row = session.scalar(
            select(PromptVersion)
            .join(PromptLabel, PromptLabel.version_id == PromptVersion.id)
            .where(PromptLabel.prompt_id == prompt.id, PromptLabel.name == label)
        )
        if row is None:
            raise NotFound(f"Prompt {name!r} has no label {label!r}.", param="label")
        return prompt, row
    row = session.scalar(
        select(PromptVersion)
        .where(PromptVersion.prompt_id == prompt.id)
        .order_by(PromptVersion.version.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"Prompt {name!r} has no versions yet.", param="name")
    return prompt, row


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """`NAME`, `NAME@LABEL` or `NAME@3` -> (name, label, version)."""
    name, _, tail = ref.partition("@")
    if not name:
        raise InvalidRequest(f"Not a prompt reference: {ref!r}; use NAME@LABEL.", param="model")
    if tail.isdigit():
        return name, None, int(tail)
    return name, tail or None, None


def _check_steps(steps: list[dict[str, Any]]) -> list[str]:
    from llmdeck.prompts.chains import check_steps

    return check_steps(steps)


def _check_step_prompts(session: Session, *, project_id: str, steps: list[dict[str, Any]]) -> None:
    """Each prompt step's prompt (and label or version, when named) exists in the project and
    is a prompt: a chain saved pointing nowhere would only fail when run."""
    for i, step in enumerate(steps):
        if step.get("type") != "prompt":
            continue
        ref = str(step["prompt"])
        name, label, version = parse_ref(ref)
        if get_by_name(session, project_id=project_id, name=name) is None:
            raise InvalidRequest(
                f"Step {i + 1} (prompt {ref}): no prompt named {name!r} in this project; "
                "push it first, or fix the name.",
                param="steps",
            )
        try:
            prompt, _ = resolve(
                session, project_id=project_id, name=name, label=label, version=version
            )
        except NotFound as exc:
            raise InvalidRequest(
                f"Step {i + 1} (prompt {ref}): {exc.message}", param="steps"
            ) from None
        if prompt.kind != "prompt":
            raise InvalidRequest(
                f"Step {i + 1} (prompt {ref}): {name!r} is a chain; a step runs a prompt.",
                param="steps",
            )


@dataclass(frozen=True)
class Pushed:
    """What pushing content did: `row` is the latest version, new only when `created`."""

    prompt: Prompt
    row: PromptVersion
    created: bool


def _same_content(
    row: PromptVersion, messages: list[dict[str, Any]], data: PromptVersionCreate
) -> bool:
    """Whether `data` does what `row` does: the same messages (or steps), model and params,
    compared as canonical JSON so that key order (as in YAML) does not count. The commit
    message, description and labels are not content."""

    def canonical(messages: Any, steps: Any, model: str | None, params: Any) -> str:
        doc = {"messages": messages or [], "steps": steps, "model": model, "params": params or {}}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    return canonical(messages, data.steps, data.model, data.params) == canonical(
        row.messages, row.steps, row.model, row.params
    )


def push_version(
    session: Session,
    *,
    project_id: str,
    name: str,
    data: PromptVersionCreate,
    role: str,
    author: str | None = None,
    kind: str = "prompt",
) -> Pushed:
    """Add an immutable version (creating the prompt on its first one), unless its content
    equals the latest version's: then no version is added, and the labels asked for point at
    that latest one (so pushing the same file from CI on every commit adds nothing)."""
    if not data.messages and not data.steps:
        raise InvalidRequest("A version needs messages (or, for a chain, steps).", param="messages")
    messages = [m.model_dump() for m in data.messages]
    if data.steps is not None:
        kind = "chain"
        variables = _check_steps(data.steps)
        _check_step_prompts(session, project_id=project_id, steps=data.steps)
    else:
        variables = messages_variables(messages)  # also rejects syntax errors now
    prompt = get_by_name(session, project_id=project_id, name=name)
    if prompt is None:
        prompt = Prompt(project_id=project_id, name=name, kind=kind)
        session.add(prompt)
        session.flush()
    elif prompt.kind != kind:
        raise InvalidRequest(f"{name!r} is a {prompt.kind}, not a {kind}.", param="name")
    if data.description is not None:
        prompt.description = data.description
    latest = session.scalar(
        select(PromptVersion)
        .where(PromptVersion.prompt_id == prompt.id)
        .order_by(PromptVersion.version.desc())
        .limit(1)
    )
    if latest is not None and _same_content(latest, messages, data):
        row, created = latest, False
    else:
        row, created = _add_version(session, prompt, data, messages, variables, author), True
    for label in data.labels:
        set_label(
            session, prompt=prompt, label=label, version=row.version, role=role, author=author
        )
    return Pushed(prompt=prompt, row=row, created=created)


def _add_version(
    session: Session,
    prompt: Prompt,
    data: PromptVersionCreate,
    messages: list[dict[str, Any]],
    variables: list[str],
    author: str | None,
) -> PromptVersion:
    number = (
        session.scalar(
            select(func.max(PromptVersion.version)).where(PromptVersion.prompt_id == prompt.id)
        )
        or 0
    ) + 1
    row = PromptVersion(
        prompt_id=prompt.id,
        version=number,
        messages=messages,
        steps=data.steps,
        model=data.model,
        params=data.params,
        variables=variables,
        commit_message=data.commit_message,
        created_by=author,
    )
    session.add(row)
    session.flush()
    _changed(session, prompt.project_id)
    return row


def create_version(
    session: Session,
    *,
    project_id: str,
    name: str,
    data: PromptVersionCreate,
    role: str,
    author: str | None = None,
    kind: str = "prompt",
) -> PromptVersion:
    """`push_version`'s version, for callers that need not know whether it is new."""
    return push_version(
        session,
        project_id=project_id,
        name=name,
        data=data,
        role=role,
        author=author,
        kind=kind,
    ).row


LABEL_RULE = (
    "Use letters, digits, '.', '_' or '-', starting with a letter or digit, and not only "
    "digits (prompt:NAME@3 means version 3), so that prompt:NAME@LABEL can name it."
)


def label_problem(label: str) -> str | None:
    """Why `label` cannot be used in prompt:NAME@LABEL (parse_ref), if it cannot."""
    if not re.fullmatch(LABEL, label) or label.isdigit() or len(label) > 100:
        return LABEL_RULE
    return None


def set_label(
    session: Session,
    *,
    prompt: Prompt,
    label: str,
    version: int,
    role: str,
    author: str | None = None,
) -> PromptLabel:
    """Point a label at a version (rollback is moving it back); production needs builder."""
    if label == LATEST:
        raise InvalidRequest("`latest` always means the newest version; it cannot be moved.")
    if problem := label_problem(label):
        raise InvalidRequest(f"Label {label!r}: {problem}", param="label")
    require(role, "builder" if label == PRODUCTION else "reviewer", f"move the {label!r} label")
    target = get_version_or_raise(session, prompt=prompt, version=version)
    row = session.get(PromptLabel, (prompt.id, label))
    if row is None:
        row = PromptLabel(prompt_id=prompt.id, name=label, version_id=target.id)
        session.add(row)
    row.version_id, row.updated_by = target.id, author
    row.updated_at = utcnow()
    session.flush()
    _changed(session, prompt.project_id)
    return row


def delete_label(session: Session, *, prompt: Prompt, label: str, role: str) -> None:
    require(role, "builder" if label == PRODUCTION else "reviewer", f"remove the {label!r} label")
    row = session.get(PromptLabel, (prompt.id, label))
    if row is None:
        raise NotFound(f"Prompt {prompt.name!r} has no label {label!r}.", param="label")
    session.delete(row)
    session.flush()
    _changed(session, prompt.project_id)


def render(
    prompt: Prompt, version: PromptVersion, variables: dict[str, Any], label: str | None = None
) -> RenderedPrompt:
    return RenderedPrompt(
        name=prompt.name,
        version=version.version,
        label=label,
        model=version.model,
        params=version.params or {},
        messages=render_messages(version.messages, variables),
    )


def _as_text(version: PromptVersion) -> list[str]:
    doc = {
        "model": version.model,
        "params": version.params,
        "messages": version.messages,
    }
    if version.steps is not None:
        doc["steps"] = version.steps
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100).splitlines(True)


def diff(prompt: Prompt, a: PromptVersion, b: PromptVersion) -> str:
    """A unified diff of two versions (model, parameters and messages as YAML)."""
    return "".join(
        difflib.unified_diff(
            _as_text(a),
            _as_text(b),
            fromfile=f"{prompt.name}@{a.version}",
            tofile=f"{prompt.name}@{b.version}",
        )
    )


def version_public(
    prompt: Prompt,
    version: PromptVersion,
    label_map: dict[str, int],
    authors: dict[str, str] | None = None,
) -> PromptVersionPublic:
    """A version as the API shows it; `authors` (authors.names) makes stored ids readable."""
    return PromptVersionPublic(
        name=prompt.name,
        kind=prompt.kind,
        version=version.version,
        messages=version.messages,
        steps=version.steps,
        model=version.model,
        params=version.params or {},
        variables=version.variables or [],
        commit_message=version.commit_message,
        labels=sorted(n for n, v in label_map.items() if v == version.version),
        created_by=(authors or {}).get(version.created_by or "", version.created_by),
        created_at=version.created_at,
    )


def to_public(session: Session, prompt: Prompt) -> PromptPublic:
    latest = session.scalar(
        select(func.max(PromptVersion.version)).where(PromptVersion.prompt_id == prompt.id)
    )
    return PromptPublic(
        id=prompt.id,
        name=prompt.name,
        kind=prompt.kind,
        description=prompt.description,
        latest_version=latest or 0,
        labels=labels(session, prompt=prompt),
        created_at=prompt.created_at,
    )
