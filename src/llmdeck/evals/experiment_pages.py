"""Console pages of experiments: the list with the form that starts one, an experiment's
page with live progress, and a side-by-side comparison of several."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.core.registry import plugins
from llmdeck.evals import datasets, service
from llmdeck.evals.router import start_in_background
from llmdeck.evals.schemas import ExperimentCreate

router = APIRouter(include_in_schema=False)
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


@router.get("/experiments")
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


@router.post("/experiments", dependencies=[Depends(csrf_protected)])
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


@router.get("/experiments/compare")
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


@router.get("/experiments/{experiment_id}")
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
