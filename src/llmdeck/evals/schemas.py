"""Request and response shapes of evaluation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ItemCreate(BaseModel):
    input: dict[str, Any] = Field(default_factory=dict, description="Variables of the target.")
    expected: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    source_trace_id: str | None = None


class DatasetCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NAME)
    description: str = Field(default="", max_length=2000)
    items: list[ItemCreate] = Field(default_factory=list)


class ItemsAdd(BaseModel):
    items: list[ItemCreate] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list, description="Item ids to drop.")


class TracesAdd(BaseModel):
    trace_ids: list[str] = Field(min_length=1, max_length=1000)
    use_output_as_expected: bool = True
    create_dataset: bool = Field(
        default=False, description="Make the dataset first when no dataset has this name."
    )


class ItemPublic(BaseModel):
    id: str
    input: dict[str, Any]
    expected: Any
    metadata: dict[str, Any]
    source_trace_id: str | None


class DatasetPublic(BaseModel):
    id: str
    name: str
    description: str
    version: int
    item_count: int
    created_at: datetime


class DatasetImported(DatasetPublic):
    """The dataset after an import, and what the import added."""

    added: int = Field(description="Items added, as one new version (none when 0).")
    already_present: int = Field(
        description="Rows of the file skipped as already in the dataset's current version."
    )


class DatasetTracesAdded(DatasetPublic):
    """The dataset after recorded requests were added, and what was added."""

    added: int = Field(description="Requests added as items, as one new version (none when 0).")
    already_present: int = Field(
        description="Requests skipped as already items of the dataset's current version."
    )


class DatasetPage(BaseModel):
    data: list[DatasetPublic]
    next_cursor: str | None = None


class Target(BaseModel):
    """What an experiment runs: a prompt version, a chain, a model, or a RAG configuration."""

    type: Literal["prompt", "chain", "model", "rag"]
    prompt: str | None = Field(default=None, description="NAME@LABEL or NAME@VERSION.")
    chain: str | None = None
    model: str | None = None
    messages: list[dict[str, Any]] | None = Field(
        default=None, description="Templated messages for a model target."
    )
    knowledge_base: str | None = None
    top_k: int = Field(default=4, ge=1, le=50)
    params: dict[str, Any] = Field(default_factory=dict, description="max_tokens, temperature…")


class ExperimentCreate(BaseModel):
    name: str = Field(default="", max_length=200)
    dataset: str = Field(min_length=1)
    dataset_version: int | None = None
    target: Target
    metrics: list[Any] = Field(default_factory=list)
    concurrency: int = Field(default=8, ge=1, le=256)
    run: bool = Field(default=True, description="Start it now (in the background).")


class ExperimentPublic(BaseModel):
    id: str
    name: str
    dataset: str
    dataset_version: int
    target: dict[str, Any]
    metrics: list[Any]
    concurrency: int
    status: str
    total: int
    completed: int
    summary: dict[str, Any]
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ResultPublic(BaseModel):
    id: str
    item_id: str
    input: dict[str, Any] = Field(default_factory=dict)
    expected: Any = None
    output: str | None
    latency_ms: float | None
    cost: float | None
    scores: dict[str, Any]
    error: str | None
    trace_id: str | None


class Comparison(BaseModel):
    experiments: list[ExperimentPublic]
    metrics: list[str]
    summary: dict[str, dict[str, float | None]]  # metric -> experiment id -> mean
    items: list[dict[str, Any]]


class QueueCreate(BaseModel):
    # Unknown fields are refused, not dropped: a queue made without the experiment its
    # caller meant to review is empty and looks fine.
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NAME)
    instructions: str = Field(default="", max_length=5000)
    labels: list[str] = Field(default_factory=list)
    experiment_id: str | None = Field(
        default=None,
        description="An experiment (id or unique prefix) whose results become the queue's tasks.",
    )


class QueueAdd(BaseModel):
    experiment_id: str | None = None
    trace_ids: list[str] = Field(default_factory=list)


class ReviewSubmit(BaseModel):
    score: float | None = Field(default=None, ge=0, le=1)
    label: str | None = Field(default=None, max_length=100)
    comment: str = Field(default="", max_length=5000)
