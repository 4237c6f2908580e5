"""Datasets: versioned item collections, and items made from recorded requests.

Every change creates a new version; an item belongs to versions [added_in, removed_in), so
versions share the rows they have in common and old versions stay reproducible.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from llmdeck.core.errors import Conflict, InvalidRequest, NotFound
from llmdeck.evals.models import Dataset, DatasetItem
from llmdeck.evals.schemas import DatasetCreate, DatasetPublic, ItemCreate, ItemPublic
from llmdeck.tracing import service as tracing


def get_by_name(session: Session, *, project_id: str, name: str) -> Dataset | None:
    return session.scalar(
        select(Dataset).where(Dataset.project_id == project_id, Dataset.name == name)
    )


def get_by_name_or_raise(session: Session, *, project_id: str, name: str) -> Dataset:
    dataset = get_by_name(session, project_id=project_id, name=name)
    if dataset is None:
        raise NotFound(
            f"No dataset named {name!r} in this project. `llmdeck datasets list` shows them.",
            param="dataset",
        )
    return dataset


def list(session: Session, *, project_id: str) -> list[Dataset]:  # noqa: A001
    return [
        *session.scalars(
            select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.name)
        )
    ]


def create(
    session: Session, *, project_id: str, name: str, description: str = "", items=()
) -> Dataset:
    if get_by_name(session, project_id=project_id, name=name) is not None:
        raise Conflict(f"A dataset named {name!r} already exists.", param="name")
    dataset = Dataset(project_id=project_id, name=name, description=description, version=0)
    session.add(dataset)
    session.flush()
    if items:
        change(session, dataset=dataset, add=items)
    return dataset


def items(session: Session, *, dataset: Dataset, version: int | None = None) -> list[DatasetItem]:
    """The items of a version (default: the current one), in insertion order."""
    version = dataset.version if version is None else version
    if not 0 <= version <= dataset.version:
        raise NotFound(
            f"Dataset {dataset.name!r} has versions 1 to {dataset.version}.", param="version"
        )
    return [
        *session.scalars(
            select(DatasetItem)
            .where(
                DatasetItem.dataset_id == dataset.id,
                DatasetItem.added_in <= version,
                or_(DatasetItem.removed_in.is_(None), DatasetItem.removed_in > version),
            )
            .order_by(DatasetItem.position)
        )
    ]


def change(
    session: Session,
    *,
    dataset: Dataset,
    add: Any = (),
    remove: Any = (),
) -> int:
    """Add and remove items as one new version; returns that version."""
    if not add and not remove:
        raise InvalidRequest("Nothing to change: give items to add or ids to remove.")
    version = dataset.version + 1
    current = {i.id: i for i in items(session, dataset=dataset)}
    for item_id in remove:
        if item_id not in current:
            raise NotFound(f"Item {item_id!r} is not in {dataset.name!r}.", param="remove")
        current[item_id].removed_in = version
    position = session.scalar(
        select(func.max(DatasetItem.position)).where(DatasetItem.dataset_id == dataset.id)
    )
    position = -1 if position is None else position
    for data in add:
        data = data if isinstance(data, ItemCreate) else ItemCreate.model_validate(data)
        position += 1
        session.add(
            DatasetItem(
                dataset_id=dataset.id,
                added_in=version,
                position=position,
                input=data.input,
                expected=data.expected,
                meta=data.metadata,
                source_trace_id=data.source_trace_id,
            )
        )
    dataset.version = version
    session.flush()
    return version


def count(session: Session, *, dataset: Dataset) -> int:
    return session.scalar(
        select(func.count(DatasetItem.id)).where(
            DatasetItem.dataset_id == dataset.id,
            DatasetItem.added_in <= dataset.version,
            or_(DatasetItem.removed_in.is_(None), DatasetItem.removed_in > dataset.version),
        )
    )


def to_public(session: Session, dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        version=dataset.version,
        item_count=count(session, dataset=dataset),
        created_at=dataset.created_at,
    )


def item_public(item: DatasetItem) -> ItemPublic:
    return ItemPublic(
        id=item.id,
        input=item.input,
        expected=item.expected,
        metadata=item.meta or {},
        source_trace_id=item.source_trace_id,
    )


def usable_name(name: str) -> str:
    """`name`, or an error saying why a new dataset may not be called that."""
    try:
        DatasetCreate(name=name)  # the same rules as POST /api/datasets
    except ValidationError:
        raise InvalidRequest(
            f"{name!r} is not a usable dataset name: start with a letter or digit, then "
            "letters, digits, '.', '_' or '-'.",
            param="name",
        ) from None
    return name


def from_traces(
    session: Session, *, project_id: str, trace_ids: list[str], use_output_as_expected: bool
) -> list[ItemCreate]:
    """Items built from recorded requests: the last user message is the input (with the
    messages, and a prompt's variables when the request named a prompt), the answer the
    expected output, the trace id and model in the metadata."""
    out = []
    for trace_id in trace_ids:
        trace = tracing.get_trace_or_raise(session, project_id=project_id, trace_id=trace_id)
        span = next((s for s in trace.spans if s.kind == "llm"), trace.spans[0])
        messages = span.input if isinstance(span.input, builtins.list) else []
        user = [
            m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"
        ]
        variables: dict[str, Any] = {"input": user[-1] if user else str(span.input or "")}
        if messages:
            variables["messages"] = messages
        # A request made with `prompt:NAME@LABEL` keeps its prompt variables on the trace.
        prompt_variables = (span.attributes or {}).get("prompt_variables")
        if isinstance(prompt_variables, dict):
            variables.update(prompt_variables)
        prompt = (span.attributes or {}).get("prompt")
        meta = {"trace_id": trace_id, "model": span.model, **({"prompt": prompt} if prompt else {})}
        out.append(
            ItemCreate(
                input=variables,
                expected=span.output if use_output_as_expected else None,
                metadata=meta,
                source_trace_id=trace_id,
            )
        )
    return out


@dataclass(frozen=True)
class Added:
    """What adding items did: `added` items as one new version (none when 0), and how many
    of those given (a file's rows, picked requests) were `already` in the current version."""

    dataset: Dataset
    added: int
    already: int

    @property
    def summary(self) -> str:
        return added_summary(self.added, self.already)


def added_summary(added: int, already: int) -> str:
    """'2 added, 1 already in the dataset', or when nothing was new, 'all 3 items already in
    the dataset; nothing added' (the words every surface reports an import or an add with)."""
    if added:
        return f"{added} added, {already} already in the dataset"
    if already == 1:
        return "its one item is already in the dataset; nothing added"
    return f"all {already} items already in the dataset; nothing added"


def add_traces(
    session: Session,
    *,
    project_id: str,
    name: str,
    trace_ids: builtins.list[str],
    use_output_as_expected: bool = True,
    create_missing: bool = False,
) -> Added:
    """Add recorded requests as items of a new version of `name` (made first when
    `create_missing`).

    A request whose item is already in the current version (same source trace) is skipped,
    so adding the same requests twice adds nothing (and makes no version). What the
    explorer's "Add to dataset", the API and `llmdeck datasets add-traces` share.
    """
    ids = builtins.list(dict.fromkeys(t.strip() for t in trace_ids if t.strip()))
    if not ids:
        raise InvalidRequest("Pick at least one request to add.", param="trace_ids")
    dataset = get_by_name(session, project_id=project_id, name=name)
    if dataset is None and not create_missing:
        get_by_name_or_raise(session, project_id=project_id, name=name)
    present = {i.source_trace_id for i in items(session, dataset=dataset)} if dataset else set()
    fresh = [t for t in ids if t not in present]
    new = from_traces(
        session,
        project_id=project_id,
        trace_ids=fresh,
        use_output_as_expected=use_output_as_expected,
    )
    if dataset is None:
        dataset = create(session, project_id=project_id, name=usable_name(name))
    if new:
        change(session, dataset=dataset, add=new)
    return Added(dataset=dataset, added=len(new), already=len(ids) - len(new))
