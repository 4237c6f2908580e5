"""Request and response shapes of the prompt registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(max_length=100_000)


class PromptVersionCreate(BaseModel):
    """A new version of a prompt (created with its first version)."""

    messages: list[Message] = Field(default_factory=list)
    steps: list[dict[str, Any]] | None = Field(
        default=None, description="Chain steps (a chain instead of messages)."
    )
    model: str | None = Field(default=None, max_length=200, description="Model it is meant for.")
    params: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, ...")
    commit_message: str = Field(default="", max_length=5000)
    labels: list[str] = Field(default_factory=list, description="Labels to point at it.")
    description: str | None = Field(default=None, max_length=2000)


class LabelMove(BaseModel):
    version: int = Field(ge=1)


class RenderRequest(BaseModel):
    variables: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    version: int | None = None


class PromptVersionPublic(BaseModel):
    name: str
    kind: str
    version: int
    messages: list[dict[str, Any]]
    steps: list[dict[str, Any]] | None = None
    model: str | None
    params: dict[str, Any]
    variables: list[str]
    commit_message: str
    labels: list[str]
    created_by: str | None
    created_at: datetime


class PromptVersionPushed(PromptVersionPublic):
    """A push's answer: the new version, or the latest one when the content was the same."""

    created: bool = Field(
        description="False when the content equals the latest version's: no version was "
        "added, and the labels asked for point at that latest version."
    )


class PromptPublic(BaseModel):
    id: str
    name: str
    kind: str
    description: str
    latest_version: int
    labels: dict[str, int]
    created_at: datetime


class PromptPage(BaseModel):
    data: list[PromptPublic]
    next_cursor: str | None = None


class RenderedPrompt(BaseModel):
    name: str
    version: int
    label: str | None
    model: str | None
    params: dict[str, Any]
    messages: list[dict[str, Any]]


class PromptDiff(BaseModel):
    name: str
    from_version: int
    to_version: int
    diff: str
