"""Console pages of datasets: the list, a dataset's items by version, and the ways to make
one: a new empty dataset, a CSV or JSONL file imported, an item typed in, or requests picked
in the explorer."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.evals import dataset_files, datasets
from llmdeck.evals.schemas import DatasetCreate, ItemCreate
from llmdeck.tracing.pages import render_requests

router = APIRouter(include_in_schema=False)
# Dataset names and review queue names follow the same rule (schemas.NAME).
NAME_RULE = "Start with a letter or digit, then letters, digits, '.', '_' or '-'."


def _db(request: Request):
    return request.app.state.runtime.db


@router.get("/datasets")
def datasets_page(request: Request, viewer: Viewer = Depends(signed_in)):
    return _datasets_page(request, viewer)


@router.get("/datasets/{name}")
def dataset_page(
    request: Request,
    name: str,
    version: int | None = None,
    error: str = "",
    added: int = 0,
    already: int = 0,
    via: str = "",
    viewer: Viewer = Depends(signed_in),
):
    return _dataset_page(
        request, viewer, name, version, error=error, added=added, already=already, via=via
    )


def _dataset_page(
    request: Request, viewer: Viewer, name: str, version=None, *, form=None, errors=None, **kw
):
    with _db(request).session() as session:
        dataset = datasets.get_by_name_or_raise(session, project_id=viewer.project.id, name=name)
        public = datasets.to_public(session, dataset)
        items = [
            datasets.item_public(i)
            for i in datasets.items(session, dataset=dataset, version=version)
        ]
    context = {
        "d": public,
        "items": items,
        "version": version or public.version,
        "error": kw.get("error", ""),
        "added": kw.get("added", 0),
        "via": kw.get("via", ""),
        "imported": _added_note(
            public.version, kw.get("added", 0), kw.get("already", 0), kw.get("via", "")
        ),
        "can_edit": viewer.can("builder"),
        "form": form or {},
        "errors": errors or {},
    }
    return console_of(request).render(request, "evals/dataset.html", context)


def _added_note(version: int, added: int, already: int, via: str) -> str:
    """What importing a file (`via` file) or adding requests (no `via`) did, said on the
    page it redirects to; an item typed in (`via` form) says so in the template."""
    if via == "form" or (not added and not already):
        return ""
    summary = datasets.added_summary(added, already)
    if added:
        what = "Imported the file" if via == "file" else "Added the requests"
        return f"{what} as version {version}: {summary}."
    return f"{summary[0].upper()}{summary[1:]} (still version {version})."


def _added_query(result: datasets.Added) -> str:
    """`added=N`, and `already=M` when some were there, for the page's note."""
    already = f"&already={result.already}" if result.already else ""
    return f"added={result.added}{already}"


@router.post("/datasets/{name}/traces", dependencies=[Depends(csrf_protected)])
def add_traces(
    request: Request,
    name: str,
    trace_ids: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Add requests picked in the explorer (their trace ids) as a new dataset version; those
    already in it are skipped."""
    viewer.require("builder", "change datasets")
    ids = [t for t in trace_ids.replace(",", " ").split() if t]
    try:
        with _db(request).session() as session:
            result = datasets.add_traces(
                session, project_id=viewer.project.id, name=name, trace_ids=ids
            )
    except LLMDeckError as exc:
        return RedirectResponse(
            f"/datasets/{quote(name)}?error={quote(exc.message)}", status_code=303
        )
    return RedirectResponse(f"/datasets/{quote(name)}?{_added_query(result)}", status_code=303)


@router.post("/datasets/from-requests", dependencies=[Depends(csrf_protected)])
def add_selected_requests(
    request: Request,
    trace_ids: list[str] = Form(default=[]),
    dataset: str = Form(""),
    new_dataset: str = Form(""),
    existing: str = Form(""),
    back: str = Form("/requests"),
    viewer: Viewer = Depends(signed_in),
):
    """The requests explorer's "Add to dataset": the rows ticked there become a new version
    of the dataset picked (or of a new one, named in the form), less those already in it. A
    refusal shows the explorer
    again with the ticks kept and the message said once (not left in the URL)."""
    viewer.require("builder", "change datasets")
    new_name = new_dataset.strip()
    name = existing.strip() or new_name or dataset.strip()

    def again(message: str, *, offer: str = ""):
        query = parse_qs(urlsplit(back).query)
        form = {"dataset": offer or dataset, "new_dataset": "" if offer else new_dataset}
        return render_requests(
            request,
            viewer,
            model=query.get("model", [""])[0],
            status=query.get("status", [""])[0],
            selected=trace_ids,
            form=form,
            error=message,
            existing=offer,
        )

    if not name:
        return again("Pick a dataset, or name a new one.")
    if new_name and not existing:
        # Naming an existing dataset as "new" would quietly add a version to it: ask first.
        with _db(request).session() as session:
            taken = datasets.get_by_name(session, project_id=viewer.project.id, name=new_name)
        if taken is not None:
            return again(f"A dataset named {new_name} already exists.", offer=new_name)
    try:
        with _db(request).session() as session:
            result = datasets.add_traces(
                session,
                project_id=viewer.project.id,
                name=name,
                trace_ids=trace_ids,
                create_missing=bool(new_name) and not existing,
            )
    except LLMDeckError as exc:
        return again(exc.message)
    return RedirectResponse(f"/datasets/{quote(name)}?{_added_query(result)}", status_code=303)


# Making datasets in the console: new, import a file, add an item ---------------------------


def _datasets_page(request: Request, viewer: Viewer, *, form=None, errors=None):
    with _db(request).session() as session:
        rows = [
            datasets.to_public(session, d)
            for d in datasets.list(session, project_id=viewer.project.id)
        ]
    context = {
        "datasets": rows,
        "can_edit": viewer.can("builder"),
        "form": form or {},
        "errors": errors or {},
    }
    return console_of(request).render(request, "evals/datasets.html", context)


@router.post("/datasets", dependencies=[Depends(csrf_protected)])
def create_dataset(
    request: Request,
    name: str = Form(""),
    description: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """An empty dataset; its page offers adding items and importing a file."""
    viewer.require("builder", "change datasets")
    form = {"name": name.strip(), "description": description}
    try:
        data = DatasetCreate(name=form["name"], description=description)
        with _db(request).session() as session:
            datasets.create(
                session, project_id=viewer.project.id, name=data.name, description=data.description
            )
    except ValidationError as exc:
        fields = {e["loc"][0] for e in exc.errors()}
        errors = {"name": NAME_RULE} if "name" in fields else {}
        if "description" in fields:
            errors["description"] = "Keep the description under 2,000 characters."
        return _datasets_page(request, viewer, form=form, errors=errors)
    except LLMDeckError as exc:
        return _datasets_page(request, viewer, form=form, errors={"name": exc.message})
    return RedirectResponse(f"/datasets/{quote(data.name)}", status_code=303)


async def _import(request: Request, viewer: Viewer, name: str, file: UploadFile | None):
    """Parse and add an uploaded file; an error message, or where the dataset's page says
    what was added and what was already there."""
    if file is None or not file.filename:
        return "Choose a .csv or .jsonl file.", ""
    fmt = "csv" if file.filename.lower().endswith(".csv") else "jsonl"
    try:
        text = (await file.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        return "The file is not UTF-8 text; save it as UTF-8 CSV or JSONL.", ""
    try:
        with _db(request).session() as session:
            imported = dataset_files.import_items(
                session, project_id=viewer.project.id, name=name, text=text, fmt=fmt
            )
    except LLMDeckError as exc:
        return exc.message, ""
    return None, f"/datasets/{quote(name)}?{_added_query(imported)}&via=file"


@router.post("/datasets/import", dependencies=[Depends(csrf_protected)])
async def import_new_dataset(
    request: Request,
    name: str = Form(""),
    file: UploadFile | None = File(None),
    viewer: Viewer = Depends(signed_in),
):
    """Import a file as a dataset (a new one, or a new version of one with this name)."""
    viewer.require("builder", "change datasets")
    form = {"import_name": name.strip()}
    if not form["import_name"]:
        errors = {"import_name": "Name the dataset to import into."}
        return _datasets_page(request, viewer, form=form, errors=errors)
    error, page = await _import(request, viewer, form["import_name"], file)
    if error:
        key = "import_name" if "dataset name" in error else "file"
        return _datasets_page(request, viewer, form=form, errors={key: error})
    return RedirectResponse(page, status_code=303)


@router.post("/datasets/{name}/import", dependencies=[Depends(csrf_protected)])
async def import_into_dataset(
    request: Request,
    name: str,
    file: UploadFile | None = File(None),
    viewer: Viewer = Depends(signed_in),
):
    viewer.require("builder", "change datasets")
    error, page = await _import(request, viewer, name, file)
    if error:
        return _dataset_page(request, viewer, name, errors={"file": error})
    return RedirectResponse(page, status_code=303)


@router.post("/datasets/{name}/items", dependencies=[Depends(csrf_protected)])
def add_item(
    request: Request,
    name: str,
    input: str = Form(""),  # noqa: A002 - the field's name in the API
    expected: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Add one item as a new version: a JSON object of variables, or text as `input`."""
    viewer.require("builder", "change datasets")
    form = {"input": input, "expected": expected}
    if not input.strip():
        errors = {"input": "Write the input (text, or a JSON object of variables)."}
        return _dataset_page(request, viewer, name, form=form, errors=errors)
    try:
        variables = json.loads(input) if input.lstrip().startswith("{") else None
    except json.JSONDecodeError:
        variables = None
    item = ItemCreate(
        input=variables if isinstance(variables, dict) else {"input": input},
        expected=expected if expected.strip() else None,
    )
    try:
        with _db(request).session() as session:
            dataset = datasets.get_by_name_or_raise(
                session, project_id=viewer.project.id, name=name
            )
            datasets.change(session, dataset=dataset, add=[item])
    except LLMDeckError as exc:
        return _dataset_page(request, viewer, name, form=form, errors={"input": exc.message})
    return RedirectResponse(f"/datasets/{quote(name)}?added=1&via=form", status_code=303)
