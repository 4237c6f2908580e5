"""Dataset files: CSV and JSONL read into items, imported as a new version, and written out.

A file is checked whole before any of it is used: a file with bad lines is refused with each
one named, so that it can be fixed in one go; rows already in the dataset are not added twice.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest, sentence
from llmdeck.evals import datasets
from llmdeck.evals.models import DatasetItem
from llmdeck.evals.schemas import ItemCreate

RESERVED = ("expected", "metadata", "input")
MAX_PROBLEMS = 20  # bad lines named in one refusal; any more are counted


class Problem(NamedTuple):
    """A bad line of an imported file."""

    line: int
    text: str  # what is wrong, as a sentence that names the line
    hint: str = ""  # how to fix lines like it, said once after the list


Problems = list[Problem]
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


def _jsonl_rows(text: str, problems: Problems) -> list[tuple[int, dict[str, Any]]]:
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


def _csv_rows(text: str, problems: Problems) -> list[tuple[int, dict[str, Any]]]:
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


def _content_key(variables: Any, expected: Any, metadata: Any) -> str:
    """An item's input, expected output and metadata as canonical JSON (key order does not
    count): two items with the same key are the same item to an import."""
    doc = [variables or {}, expected, metadata or {}]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def import_items(
    session: Session, *, project_id: str, name: str, text: str, fmt: str
) -> datasets.Added:
    """Add a CSV or JSONL file's items as a new version of `name`, made first if missing
    (the API, CLI and console import).

    Rows equal to an item of the current version are skipped, so importing the same file
    twice adds nothing (and makes no version); rows repeated within the file are kept as
    written."""
    new = parse(text, fmt)
    if not new:
        raise InvalidRequest("The file has no items.", param="file")
    dataset = datasets.get_by_name(session, project_id=project_id, name=name)
    if dataset is None:
        dataset = datasets.create(session, project_id=project_id, name=datasets.usable_name(name))
    stored = {
        _content_key(i.input, i.expected, i.meta) for i in datasets.items(session, dataset=dataset)
    }
    fresh = [i for i in new if _content_key(i.input, i.expected, i.metadata) not in stored]
    if fresh:
        datasets.change(session, dataset=dataset, add=fresh)
    return datasets.Added(dataset=dataset, added=len(fresh), already=len(new) - len(fresh))


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
