"""REST API of evaluation: /api/datasets, /api/experiments, /api/review-queues."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from llmdeck.evals import background, dataset_files, datasets, review, service
from llmdeck.evals.schemas import (
    Comparison,
    DatasetCreate,
    DatasetImported,
    DatasetPage,
    DatasetPublic,
    DatasetTracesAdded,
    ExperimentCreate,
    ExperimentPublic,
    ItemPublic,
    ItemsAdd,
    QueueAdd,
    QueueCreate,
    ResultPublic,
    ReviewSubmit,
    TracesAdd,
)
from llmdeck.identity.deps import get_principal, get_runtime, get_session, requires
from llmdeck.identity.schemas import Principal
from llmdeck.runtime import Runtime

router = APIRouter(tags=["evals"])
builder = requires("builder", "change datasets and run experiments")
reviewer = requires("reviewer", "review")


@router.get("/api/datasets", operation_id="list_datasets", response_model=DatasetPage)
def list_datasets(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    """The project's datasets."""
    rows = datasets.list(session, project_id=principal.project_id)
    return {"data": [datasets.to_public(session, d) for d in rows], "next_cursor": None}


@router.post(
    "/api/datasets", operation_id="create_dataset", response_model=DatasetPublic, status_code=201
)
def create_dataset(
    body: DatasetCreate,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
):
    """Create a dataset (optionally with its first items, as version 1)."""
    dataset = datasets.create(
        session,
        project_id=principal.project_id,
        name=body.name,
        description=body.description,
        items=body.items,
    )
    return datasets.to_public(session, dataset)


@router.get("/api/datasets/{name}", operation_id="get_dataset", response_model=DatasetPublic)
def get_dataset(
    name: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    dataset = datasets.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    return datasets.to_public(session, dataset)


@router.get(
    "/api/datasets/{name}/items", operation_id="list_dataset_items", response_model=list[ItemPublic]
)
def list_dataset_items(
    name: str,
    version: int | None = Query(default=None, ge=0),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """The items of a version (default: the current one)."""
    dataset = datasets.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    return [
        datasets.item_public(i) for i in datasets.items(session, dataset=dataset, version=version)
    ]


@router.post(
    "/api/datasets/{name}/items", operation_id="change_dataset_items", response_model=DatasetPublic
)
def change_dataset_items(
    name: str,
    body: ItemsAdd,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
):
    """Add and remove items; the change is a new version."""
    dataset = datasets.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    datasets.change(session, dataset=dataset, add=body.items, remove=body.remove)
    return datasets.to_public(session, dataset)


@router.post(
    "/api/datasets/{name}/traces",
    operation_id="add_traces_to_dataset",
    response_model=DatasetTracesAdded,
)
def add_traces_to_dataset(
    name: str,
    body: TracesAdd,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
):
    """Add recorded requests (by trace id, as the explorer lists them) as a new version's
    items: input from the request, expected output from its answer, the trace id and model
    in the metadata.

    Requests already in the dataset's current version are skipped (`already_present`); when
    none is new, no version is made."""
    result = datasets.add_traces(
        session,
        project_id=principal.project_id,
        name=name,
        trace_ids=body.trace_ids,
        use_output_as_expected=body.use_output_as_expected,
        create_missing=body.create_dataset,
    )
    public = datasets.to_public(session, result.dataset)
    return DatasetTracesAdded(
        **public.model_dump(), added=result.added, already_present=result.already
    )


@router.post(
    "/api/datasets/{name}/import",
    operation_id="import_dataset_items",
    response_model=DatasetImported,
)
async def import_dataset_items(
    name: str,
    request: Request,
    format: str = Query(default="jsonl", pattern="^(csv|jsonl)$"),
    principal: Principal = Depends(builder),
    runtime: Runtime = Depends(get_runtime),
):
    """Import items from a CSV or JSONL request body (creating the dataset if needed).

    Rows already in the dataset's current version are skipped (`already_present`); when
    none is new, no version is made. A file with bad lines is refused, naming each one."""
    text = (await request.body()).decode("utf-8-sig")
    with runtime.db.session() as session:
        imported = dataset_files.import_items(
            session, project_id=principal.project_id, name=name, text=text, fmt=format
        )
        public = datasets.to_public(session, imported.dataset)
        return DatasetImported(
            **public.model_dump(), added=imported.added, already_present=imported.already
        )


@router.get(
    "/api/datasets/{name}/export", operation_id="export_dataset", response_class=PlainTextResponse
)
def export_dataset(
    name: str,
    format: str = Query(default="jsonl", pattern="^(csv|jsonl)$"),
    version: int | None = Query(default=None, ge=0),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """The items of a version as CSV or JSONL."""
    dataset = datasets.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    body = dataset_files.dump(datasets.items(session, dataset=dataset, version=version), format)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return PlainTextResponse(body, media_type=media)


@router.get(
    "/api/experiments", operation_id="list_experiments", response_model=list[ExperimentPublic]
)
def list_experiments(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    return [
        service.to_public(session, e)
        for e in service.list(session, project_id=principal.project_id)
    ]


def start_in_background(runtime: Runtime, principal: Principal, experiment_id: str) -> None:
    """Queue the experiment as a durable job (it survives a restart) and wake the worker."""
    with runtime.db.session() as session:
        experiment = service.get_or_raise(
            session, project_id=principal.project_id, experiment_id=experiment_id
        )
        background.queue_run(session, experiment=experiment, principal=principal)
    runtime.wake_jobs()


@router.post(
    "/api/experiments",
    operation_id="create_experiment",
    response_model=ExperimentPublic,
    status_code=201,
)
async def create_experiment(
    body: ExperimentCreate,
    principal: Principal = Depends(builder),
    runtime: Runtime = Depends(get_runtime),
):
    """Create an experiment and (by default) queue it as a job; poll it for progress."""
    with runtime.db.session() as session:
        experiment = service.create(session, project_id=principal.project_id, data=body)
        if body.run:
            background.queue_run(session, experiment=experiment, principal=principal)
        public = service.to_public(session, experiment)
    runtime.wake_jobs()
    return public


@router.post(
    "/api/experiments/{experiment_id}/run",
    operation_id="run_experiment",
    response_model=ExperimentPublic,
)
async def resume_experiment(
    experiment_id: str,
    principal: Principal = Depends(builder),
    runtime: Runtime = Depends(get_runtime),
):
    """Run or resume an experiment as a background job (items already done are skipped)."""
    start_in_background(runtime, principal, experiment_id)
    with runtime.db.session() as session:
        return service.to_public(
            session,
            service.get_or_raise(
                session, project_id=principal.project_id, experiment_id=experiment_id
            ),
        )


@router.get(
    "/api/experiments/compare", operation_id="compare_experiments", response_model=Comparison
)
def compare_experiments(
    ids: str = Query(description="Comma-separated experiment ids."),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """Experiments side by side: per metric and per item."""
    return service.compare(
        session, project_id=principal.project_id, experiment_ids=[i for i in ids.split(",") if i]
    )


class PairwiseRequest(BaseModel):
    a: str
    b: str
    judge: str = "smollm2-135m"
    limit: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=24, ge=1, le=512)


@router.post("/api/experiments/pairwise", operation_id="pairwise_experiments", response_model=dict)
async def pairwise_experiments(
    body: PairwiseRequest,
    principal: Principal = Depends(builder),
    runtime: Runtime = Depends(get_runtime),
):
    """A/B two experiments with an LLM judge, each pair asked in both orders (ties on bias)."""
    from llmdeck.evals.judges import pairwise_experiments as run

    return await run(
        runtime,
        principal,
        body.a,
        body.b,
        model=body.judge,
        limit=body.limit,
        max_tokens=body.max_tokens,
    )


@router.get(
    "/api/experiments/{experiment_id}",
    operation_id="get_experiment",
    response_model=ExperimentPublic,
)
def get_experiment(
    experiment_id: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """An experiment with its progress and summary."""
    return service.to_public(
        session,
        service.get_or_raise(session, project_id=principal.project_id, experiment_id=experiment_id),
    )


@router.get(
    "/api/experiments/{experiment_id}/results",
    operation_id="list_experiment_results",
    response_model=list[ResultPublic],
)
def list_experiment_results(
    experiment_id: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """Per-item output, latency, cost and scores with their explanations."""
    experiment = service.get_or_raise(
        session, project_id=principal.project_id, experiment_id=experiment_id
    )
    rows = service.results(session, experiment=experiment)
    items = service.items_by_id(session, {r.item_id for r in rows})
    return [service.result_public(r, items.get(r.item_id)) for r in rows]


@router.get("/api/review-queues", operation_id="list_review_queues", response_model=list[dict])
def list_review_queues(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    return review.list_queues(session, project_id=principal.project_id)


@router.post(
    "/api/review-queues", operation_id="create_review_queue", response_model=dict, status_code=201
)
def create_review_queue(
    body: QueueCreate,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
):
    """A review queue; `experiment_id` fills it with that experiment's results at once."""
    queue = review.create_queue(session, project_id=principal.project_id, data=body)
    return review.queue_public(session, queue=queue)


@router.post(
    "/api/review-queues/{name}/tasks", operation_id="add_review_tasks", response_model=dict
)
def add_review_tasks(
    name: str,
    body: QueueAdd,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
):
    """Queue an experiment's results and/or traces for review."""
    queue = review.get_queue_or_raise(session, project_id=principal.project_id, name=name)
    added = 0
    if body.experiment_id:
        added += review.add_experiment(
            session, project_id=principal.project_id, queue=queue, experiment_id=body.experiment_id
        )
    if body.trace_ids:
        added += review.add_traces(
            session, project_id=principal.project_id, queue=queue, trace_ids=body.trace_ids
        )
    return {"added": added}


@router.get(
    "/api/review-queues/{name}/tasks", operation_id="list_review_tasks", response_model=list[dict]
)
def list_review_tasks(
    name: str,
    pending: bool = False,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    queue = review.get_queue_or_raise(session, project_id=principal.project_id, name=name)
    return [review.task_public(t) for t in review.tasks(session, queue=queue, pending_only=pending)]


@router.put(
    "/api/review-queues/{name}/tasks/{task_id}", operation_id="submit_review", response_model=dict
)
def submit_review(
    name: str,
    task_id: str,
    body: ReviewSubmit,
    principal: Principal = Depends(reviewer),
    session: Session = Depends(get_session),
):
    """Score (0 to 1), label and comment one task."""
    queue = review.get_queue_or_raise(session, project_id=principal.project_id, name=name)
    task = review.get_task_or_raise(session, queue=queue, task_id=task_id)
    review.submit(
        session,
        queue=queue,
        task=task,
        data=body,
        reviewer=principal.user_id or principal.api_key_id,
    )
    return review.task_public(task)


@router.get(
    "/api/review-queues/{name}/agreement", operation_id="get_review_agreement", response_model=dict
)
def get_review_agreement(
    name: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """Agreement of each automatic metric with the experts (Spearman, Cohen's kappa)."""
    queue = review.get_queue_or_raise(session, project_id=principal.project_id, name=name)
    return review.agreement(session, queue=queue)
