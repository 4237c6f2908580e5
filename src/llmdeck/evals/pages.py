"""Console pages of evaluation: experiments (live progress, side-by-side comparison),
datasets, and review queues where experts score with the keyboard."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.core.registry import plugins
from llmdeck.evals import dataset_files, datasets, review, service
from llmdeck.evals.router import start_in_background
from llmdeck.evals.schemas import (
    DatasetCreate,
    ExperimentCreate,
    ItemCreate,
    QueueCreate,
    ReviewSubmit,
)
from llmdeck.tracing.pages import render_requests

pages = PageSet("evals", __file__)
pages.nav("Experiments", "/experiments", section="Build", order=40, icon="chart")
pages.nav("Datasets", "/datasets", section="Build", order=41, icon="box")
pages.nav("Review", "/review", section="Build", min_role="reviewer", order=42, icon="check")
SHORTCUTS = Path(__file__).parent / "static" / "review.js"
DETERMINISTIC = (
    "exact_match",
    "contains",
    "regex",
    "json_valid",
    "numeric",
    "rouge_l",
    "bleu",
    "chrf",
)


def _db(request: Request):
    return request.app.state.runtime.db


@pages.router.get("/experiments")
def experiments_page(request: Request, error: str = "", viewer: Viewer = Depends(signed_in)):
    return _experiments(request, viewer, error)


def _experiments(request: Request, viewer: Viewer, error: str = ""):
    with _db(request).session() as session:
        rows = [
            service.to_public(session, e)
            for e in service.list(session, project_id=viewer.project.id)
        ]
        names = [d.name for d in datasets.list(session, project_id=viewer.project.id)]
    context = {
        "experiments": rows,
        "datasets": names,
        "metrics": plugins().evaluators.names(),
        "deterministic": DETERMINISTIC,
        "can_run": viewer.can("builder"),
        "running": any(e.status in ("running", "queued") for e in rows),
        "error": error,
    }
    return console_of(request).render(request, "evals/experiments.html", context)


@pages.router.post("/experiments", dependencies=[Depends(csrf_protected)])
async def start_experiment(
    request: Request,
    dataset: str = Form(...),
    target_type: str = Form("model"),
    ref: str = Form(...),
    metrics: list[str] = Form(default=[]),
    concurrency: int = Form(8),
    max_tokens: int = Form(128),
    name: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Create and start an experiment; its page shows live progress."""
    viewer.require("builder", "run experiments")
    field = {"model": "model", "prompt": "prompt", "chain": "chain", "rag": "knowledge_base"}
    try:
        data = ExperimentCreate(
            name=name,
            dataset=dataset,
            target={
                "type": target_type,
                field.get(target_type, "model"): ref,
                "params": {"max_tokens": max_tokens},
            },
            metrics=metrics,
            concurrency=concurrency,
        )
        with _db(request).session() as session:
            experiment = service.create(session, project_id=viewer.project.id, data=data)
    except (LLMDeckError, ValueError) as exc:
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        return RedirectResponse(f"/experiments?error={quote(message)}", status_code=303)
    start_in_background(request.app.state.runtime, viewer.principal, experiment.id)
    return RedirectResponse(f"/experiments/{experiment.id}", status_code=303)


@pages.router.get("/experiments/compare")
def compare_page(
    request: Request, ids: list[str] = Query(default=[]), viewer: Viewer = Depends(signed_in)
):
    flat = [i for value in ids for i in value.split(",") if i]
    if not flat:  # "Compare selected" with nothing ticked: say so on the list itself
        return _experiments(
            request, viewer, "Tick the experiments to compare, then press Compare selected again."
        )
    with _db(request).session() as session:
        result = service.compare(session, project_id=viewer.project.id, experiment_ids=flat)
    return console_of(request).render(request, "evals/compare.html", {"c": result})


@pages.router.get("/experiments/{experiment_id}")
def experiment_page(request: Request, experiment_id: str, viewer: Viewer = Depends(signed_in)):
    with _db(request).session() as session:
        experiment = service.get_or_raise(
            session, project_id=viewer.project.id, experiment_id=experiment_id
        )
        public = service.to_public(session, experiment)
        rows = service.results(session, experiment=experiment)
        items = service.items_by_id(session, {r.item_id for r in rows})
        results = [service.result_public(r, items.get(r.item_id)) for r in rows]
    context = {
        "e": public,
        "results": results,
        "fragment": request.headers.get("hx-request") == "true",
    }
    template = "evals/_progress.html" if context["fragment"] else "evals/experiment.html"
    return console_of(request).render(request, template, context)


@pages.router.get("/datasets")
def datasets_page(request: Request, viewer: Viewer = Depends(signed_in)):
    return _datasets_page(request, viewer)


@pages.router.get("/datasets/{name}")
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
        "imported": _imported_note(public.version, kw.get("added", 0), kw.get("already", 0)),
        "can_edit": viewer.can("builder"),
        "form": form or {},
        "errors": errors or {},
    }
    return console_of(request).render(request, "evals/dataset.html", context)


def _imported_note(version: int, added: int, already: int) -> str:
    """What an import did, said on the page it redirects to."""
    if not added and not already:
        return ""
    summary = dataset_files.import_summary(added, already)
    if added:
        return f"Imported the file as version {version}: {summary}."
    return f"{summary[0].upper()}{summary[1:]} (still version {version})."


@pages.router.post("/datasets/{name}/traces", dependencies=[Depends(csrf_protected)])
def add_traces(
    request: Request,
    name: str,
    trace_ids: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Add requests picked in the explorer (their trace ids) as a new dataset version."""
    viewer.require("builder", "change datasets")
    ids = [t for t in trace_ids.replace(",", " ").split() if t]
    try:
        with _db(request).session() as session:
            datasets.add_traces(session, project_id=viewer.project.id, name=name, trace_ids=ids)
    except LLMDeckError as exc:
        return RedirectResponse(
            f"/datasets/{quote(name)}?error={quote(exc.message)}", status_code=303
        )
    return RedirectResponse(f"/datasets/{quote(name)}", status_code=303)


@pages.router.post("/datasets/from-requests", dependencies=[Depends(csrf_protected)])
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
    of the dataset picked (or of a new one, named in the form). A refusal shows the explorer
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
            _, added = datasets.add_traces(
                session,
                project_id=viewer.project.id,
                name=name,
                trace_ids=trace_ids,
                create_missing=bool(new_name) and not existing,
            )
    except LLMDeckError as exc:
        return again(exc.message)
    return RedirectResponse(f"/datasets/{quote(name)}?added={added}", status_code=303)


@pages.router.get("/review")
def review_page(request: Request, viewer: Viewer = Depends(signed_in)):
    viewer.require("reviewer", "review")
    return _review_page(request, viewer)


def _review_page(request: Request, viewer: Viewer, *, form=None, errors=None):
    with _db(request).session() as session:
        queues = review.list_queues(session, project_id=viewer.project.id)
        experiments = [
            {"id": e.id, "name": e.name or e.id, "status": e.status}
            for e in service.list(session, project_id=viewer.project.id)
        ]
    context = {
        "queues": queues,
        "experiments": experiments,
        "can_create": viewer.can("builder"),
        "form": form or {},
        "errors": errors or {},
    }
    return console_of(request).render(request, "evals/review_queues.html", context)


@pages.router.post("/review", dependencies=[Depends(csrf_protected)])
def create_review_queue(
    request: Request,
    name: str = Form(""),
    experiment_id: str = Form(""),
    instructions: str = Form(""),
    labels: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """A queue holding an experiment's results, as POST /api/review-queues then .../tasks."""
    viewer.require("builder", "create review queues")
    form = {"name": name.strip(), "experiment_id": experiment_id}
    form |= {"instructions": instructions, "labels": labels}
    try:
        data = QueueCreate(
            name=form["name"],
            instructions=instructions,
            labels=[x.strip() for x in labels.split(",") if x.strip()],
        )
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0])
        message = NAME_RULE if field == "name" else exc.errors()[0]["msg"]
        return _review_page(request, viewer, form=form, errors={field: message})
    if not experiment_id:
        errors = {"experiment_id": "Pick the experiment whose results to review."}
        return _review_page(request, viewer, form=form, errors=errors)
    try:
        with _db(request).session() as session:
            queue = review.create_queue(session, project_id=viewer.project.id, data=data)
            review.add_experiment(
                session, project_id=viewer.project.id, queue=queue, experiment_id=experiment_id
            )
    except LLMDeckError as exc:
        field = "name" if exc.param == "name" else "experiment_id"
        return _review_page(request, viewer, form=form, errors={field: exc.message})
    return RedirectResponse(f"/review/{quote(data.name)}", status_code=303)


@pages.router.get("/review/shortcuts.js")
def review_shortcuts() -> Response:
    """Keyboard shortcuts of the review page (served from 'self' for the CSP)."""
    return Response(SHORTCUTS.read_text(), media_type="text/javascript")


@pages.router.get("/review/{name}")
def review_queue_page(request: Request, name: str, viewer: Viewer = Depends(signed_in)):
    viewer.require("reviewer", "review")
    with _db(request).session() as session:
        queue = review.get_queue_or_raise(session, project_id=viewer.project.id, name=name)
        pending = review.tasks(session, queue=queue, pending_only=True)
        total = len(review.tasks(session, queue=queue))
        task = review.task_public(pending[0]) if pending else None
        agreement = review.agreement(session, queue=queue)
    context = {
        "queue": queue,
        "task": task,
        "remaining": len(pending),
        "total": total,
        "agreement": agreement,
    }
    return console_of(request).render(request, "evals/review.html", context)


@pages.router.post("/review/{name}/{task_id}", dependencies=[Depends(csrf_protected)])
def submit_review(
    request: Request,
    name: str,
    task_id: str,
    score: str = Form(""),
    label: str = Form(""),
    comment: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Record a verdict (score 1-5 shown, stored as 0-1) and go to the next task."""
    viewer.require("reviewer", "review")
    with _db(request).session() as session:
        queue = review.get_queue_or_raise(session, project_id=viewer.project.id, name=name)
        task = review.get_task_or_raise(session, queue=queue, task_id=task_id)
        value = (int(score) - 1) / 4 if score.strip().isdigit() and 1 <= int(score) <= 5 else None
        review.submit(
            session,
            queue=queue,
            task=task,
            data=ReviewSubmit(score=value, label=label or None, comment=comment),
            reviewer=viewer.email,
        )
    return RedirectResponse(f"/review/{name}", status_code=303)


# Making datasets in the console: new, import a file, add an item ---------------------------

NAME_RULE = "Start with a letter or digit, then letters, digits, '.', '_' or '-'."


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


@pages.router.post("/datasets", dependencies=[Depends(csrf_protected)])
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
    already = f"&already={imported.already}" if imported.already else ""
    return None, f"/datasets/{quote(name)}?added={imported.added}{already}&via=file"


@pages.router.post("/datasets/import", dependencies=[Depends(csrf_protected)])
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


@pages.router.post("/datasets/{name}/import", dependencies=[Depends(csrf_protected)])
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


@pages.router.post("/datasets/{name}/items", dependencies=[Depends(csrf_protected)])
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
