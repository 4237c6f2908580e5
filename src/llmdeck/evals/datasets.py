"""Datasets: versioned item collections, CSV/JSONL import and export, items from traces.

Every change creates a new version; an item belongs to versions [added_in, removed_in), so
versions share the rows they have in common and old versions stay reproducible.
"""

from __future__ import annotations

import builtins
import csv
import io
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from llmdeck.core.errors import Conflict, InvalidRequest, NotFound, sentence
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


# Import and export ------------------------------------------------------------------------

RESERVED = ("expected", "metadata", "input")
MAX_PROBLEMS = 20  # bad lines named in one refusal; any more are counted


class Problem(NamedTuple):
    """A bad line of an imported file."""

    line: int
    text: str  # what is wrong, as a sentence that names the line
    hint: str = ""  # how to fix lines like it, said once after the list


Problems = builtins.list[Problem]
COMMAS = "quote values that contain commas"


def parse(text: str, fmt: str) -> list[ItemCreate]:
    """Items from CSV (columns are input variables; `expected`, `metadata` are special) or
    JSONL (objects with `input`, `expected`, `metadata`; other keys count as input).

    Every line is checked before any is used: a file with bad lines is refused with each
    one named (up to MAX_PROBLEMS), so that it can be fixed in one go."""
    problems: Problems = []
    if fmt == "jsonl":
        rows = _jsonl_rows(text, problems)
    elif fmt == "csv":
        rows = _csv_rows(text, problems)
    else:
        raise InvalidRequest("Format must be csv or jsonl.", param="format")
    out = []
    for number, row in rows:
        variables = row.get("input") if isinstance(row.get("input"), dict) else None
        if variables is None:
            variables = {k: v for k, v in row.items() if k not in RESERVED}
            if "input" in row and not isinstance(row["input"], dict):
                variables["input"] = row["input"]
        try:
            item = ItemCreate(
                input=variables, expected=row.get("expected"), metadata=row.get("metadata") or {}
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            problems.append(Problem(number, f"Line {number}: {where}: {sentence(problem['msg'])}"))
            continue
        out.append(item)
    if problems:
        raise _refusal(problems)
    return out


def _refusal(problems: Problems) -> InvalidRequest:
    """One error naming every bad line (the first MAX_PROBLEMS), in the file's order."""
    problems = sorted(problems)
    hints = "; ".join(dict.fromkeys(p.hint for p in problems if p.hint))
    fix = f" ({hints})" if hints else ""
    if len(problems) == 1:
        message = f"{problems[0].text} Fix that line{fix} and import the file again."
    else:
        shown = " ".join(p.text for p in problems[:MAX_PROBLEMS])
        more = len(problems) - MAX_PROBLEMS
        if more > 0:
            shown += f" {more} more line{'s are' if more > 1 else ' is'} wrong too."
        message = (
            f"{len(problems)} lines of the file are wrong, so nothing was imported. {shown} "
            f"Fix them{fix} and import the file again."
        )
    return InvalidRequest(message, param="file")


def _jsonl_rows(text: str, problems: Problems) -> builtins.list[tuple[int, dict[str, Any]]]:
    """Each JSON object with its line number; other lines go to `problems`."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(number, f"Line {number} is not JSON: {exc.msg}."))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(number, f"Line {number} is not a JSON object."))
            continue
        rows.append((number, value))
    return rows


def _csv_rows(text: str, problems: Problems) -> builtins.list[tuple[int, dict[str, Any]]]:
    """CSV rows as dicts with their line numbers; a row with more or fewer values than the
    header goes to `problems` (as a bad JSONL line does), rather than quietly dropping or
    blanking values."""
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            extra, got = row.pop(None, None), len([v for v in row.values() if v is not None])
            if extra is not None or got < len(row):
                values = got + len(extra or [])
                header = ", ".join(reader.fieldnames or [])
                problems.append(
                    Problem(
                        reader.line_num,
                        f"Line {reader.line_num} has {values} value{'' if values == 1 else 's'} "
                        f"but the header has {len(row)} columns ({header}).",
                        COMMAS,
                    )
                )
                continue
            rows.append((reader.line_num, _csv_fields(row)))
    except csv.Error as exc:
        # The reader cannot be trusted past this point: report what was found up to here.
        where = reader.line_num
        problems.append(Problem(where, f"Line {where} is not valid CSV: {sentence(exc)}"))
    return rows


def _csv_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row's `metadata` as JSON (or a note), and an empty `expected` as none."""
    if isinstance(row.get("metadata"), str) and row["metadata"].strip():
        try:
            row["metadata"] = json.loads(row["metadata"])
        except json.JSONDecodeError:
            row["metadata"] = {"note": row["metadata"]}
    elif "metadata" in row:
        row["metadata"] = {}
    if row.get("expected") == "":
        row["expected"] = None
    return row


@dataclass(frozen=True)
class Imported:
    """What an import did: `added` items as one new version (none when 0), and how many of
    the file's rows were `already` items of the dataset's current version."""

    dataset: Dataset
    added: int
    already: int

    @property
    def summary(self) -> str:
        return import_summary(self.added, self.already)


def import_summary(added: int, already: int) -> str:
    """'2 added, 1 already in the dataset', or when nothing was new, 'all 3 items already in
    the dataset; nothing added' (the words every surface reports an import with)."""
    if added:
        return f"{added} added, {already} already in the dataset"
    if already == 1:
        return "its one item is already in the dataset; nothing added"
    return f"all {already} items already in the dataset; nothing added"


def _content_key(variables: Any, expected: Any, metadata: Any) -> str:
    """An item's input, expected output and metadata as canonical JSON (key order does not
    count): two items with the same key are the same item to an import."""
    doc = [variables or {}, expected, metadata or {}]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def import_items(session: Session, *, project_id: str, name: str, text: str, fmt: str) -> Imported:
    """Add a CSV or JSONL file's items as a new version of `name`, made first if missing
    (the API, CLI and console import).

    Rows equal to an item of the current version are skipped, so importing the same file
    twice adds nothing (and makes no version); rows repeated within the file are kept as
    written."""
    new = parse(text, fmt)
    if not new:
        raise InvalidRequest("The file has no items.", param="file")
    dataset = get_by_name(session, project_id=project_id, name=name)
    if dataset is None:
        dataset = create(session, project_id=project_id, name=_usable_name(name))
    stored = {_content_key(i.input, i.expected, i.meta) for i in items(session, dataset=dataset)}
    fresh = [i for i in new if _content_key(i.input, i.expected, i.metadata) not in stored]
    if fresh:
        change(session, dataset=dataset, add=fresh)
    return Imported(dataset=dataset, added=len(fresh), already=len(new) - len(fresh))


def _usable_name(name: str) -> str:
    try:
        DatasetCreate(name=name)  # the same rules as POST /api/datasets
    except ValidationError:
        raise InvalidRequest(
            f"{name!r} is not a usable dataset name: start with a letter or digit, then "
            "letters, digits, '.', '_' or '-'.",
            param="name",
        ) from None
    return name


def dump(rows: list[DatasetItem], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(
            json.dumps(
                {"id": r.id, "input": r.input, "expected": r.expected, "metadata": r.meta or {}},
                ensure_ascii=False,
            )
            + "\n"
            for r in rows
        )
    if fmt != "csv":
        raise InvalidRequest("Format must be csv or jsonl.", param="format")
    variables = sorted({k for r in rows for k in r.input})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*variables, "expected", "metadata"])
    for r in rows:
        expected = (
            r.expected
            if isinstance(r.expected, str) or r.expected is None
            else json.dumps(r.expected)
        )
        writer.writerow(
            [*[_cell(r.input.get(v)) for v in variables], expected or "", json.dumps(r.meta or {})]
        )
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


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


def add_traces(
    session: Session,
    *,
    project_id: str,
    name: str,
    trace_ids: builtins.list[str],
    use_output_as_expected: bool = True,
    create_missing: bool = False,
) -> tuple[Dataset, int]:
    """Add recorded requests as items of a new version of `name` (made first when
    `create_missing`); returns the dataset and how many items were added.

    What the explorer's "Add to dataset", the API and `llmdeck datasets add-traces` share.
    """
    ids = builtins.list(dict.fromkeys(t.strip() for t in trace_ids if t.strip()))
    if not ids:
        raise InvalidRequest("Pick at least one request to add.", param="trace_ids")
    dataset = get_by_name(session, project_id=project_id, name=name)
    if dataset is None and not create_missing:
        get_by_name_or_raise(session, project_id=project_id, name=name)
    new = from_traces(
        session, project_id=project_id, trace_ids=ids, use_output_as_expected=use_output_as_expected
    )
    if dataset is None:
        dataset = create(session, project_id=project_id, name=_usable_name(name))
    change(session, dataset=dataset, add=new)
    return dataset, len(new)
