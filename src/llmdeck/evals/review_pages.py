"""Console pages of review queues: the list with the form that makes a queue of an
experiment's results, and a queue's page, where experts score one task after another with
the keyboard."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.evals import review, service
from llmdeck.evals.dataset_pages import NAME_RULE
from llmdeck.evals.schemas import QueueCreate, ReviewSubmit

router = APIRouter(include_in_schema=False)
SHORTCUTS = Path(__file__).parent / "static" / "review.js"


def _db(request: Request):
    return request.app.state.runtime.db


@router.get("/review")
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


@router.post("/review", dependencies=[Depends(csrf_protected)])
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
            experiment_id=experiment_id or None,
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
            review.create_queue(session, project_id=viewer.project.id, data=data)
    except LLMDeckError as exc:
        field = "name" if exc.param == "name" else "experiment_id"
        return _review_page(request, viewer, form=form, errors={field: exc.message})
    return RedirectResponse(f"/review/{quote(data.name)}", status_code=303)


@router.get("/review/shortcuts.js")
def review_shortcuts() -> Response:
    """Keyboard shortcuts of the review page (served from 'self' for the CSP)."""
    return Response(SHORTCUTS.read_text(), media_type="text/javascript")


@router.get("/review/{name}")
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


@router.post("/review/{name}/{task_id}", dependencies=[Depends(csrf_protected)])
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
