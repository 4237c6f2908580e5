"""Console pages of tracing: the requests explorer and one request's detail."""

from __future__ import annotations

import hashlib

from fastapi import Depends, Request
from fastapi.responses import Response

from llmdeck.catalog import service as catalog
from llmdeck.console.auth import Viewer, signed_in
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import NotFound
from llmdeck.tracing import service
from llmdeck.tracing.schemas import TracePage, TracePublic

pages = PageSet("tracing", __file__)
pages.nav("Requests", "/requests", section="Observe", order=40, icon="activity")

PAGE_SIZE = 50
STATUSES = service.STATUSES


def _page(request: Request, viewer: Viewer, model: str, status: str, cursor: str) -> TracePage:
    with request.app.state.runtime.db.session() as session:
        return service.list_traces(
            session,
            project_id=viewer.project.id,
            model=model or None,
            status=status if status in STATUSES else None,
            cursor=cursor or None,
            limit=PAGE_SIZE,
        )


def _fingerprint(page: TracePage) -> str:
    """Changes when the rows shown change; lets polling skip identical refreshes.

    Starts with the newest trace id, so the page can tell which row is new.
    """
    ids = "".join(t.trace_id for t in page.data)
    digest = hashlib.sha256(ids.encode()).hexdigest()[:12]
    return f"{page.data[0].trace_id if page.data else ''}:{digest}"


def _dataset_names(session, viewer: Viewer) -> list[str] | None:
    """Datasets the explorer's "Add to dataset" offers; None when the viewer may not add."""
    if not viewer.can("builder"):
        return None
    from llmdeck.evals import datasets  # evals builds on tracing, not the other way round

    return [d.name for d in datasets.list(session, project_id=viewer.project.id)]


@pages.router.get("/requests")
def requests_page(
    request: Request,
    model: str = "",
    status: str = "",
    cursor: str = "",
    viewer: Viewer = Depends(signed_in),
):
    return render_requests(request, viewer, model=model, status=status, cursor=cursor)


def render_requests(
    request: Request,
    viewer: Viewer,
    *,
    model: str = "",
    status: str = "",
    cursor: str = "",
    selected: list[str] | None = None,
    form: dict | None = None,
    error: str = "",
    existing: str = "",
):
    """The explorer; "Add to dataset" shows it again with the ticks it was sent and a message
    (`existing` names a dataset to offer when a "new" one was named like it)."""
    page = _page(request, viewer, model, status, cursor)
    with request.app.state.runtime.db.session() as session:
        aliases = [m.alias for m in catalog.list_models(session, project_id=viewer.project.id)]
        dataset_names = _dataset_names(session, viewer)
    if model and model not in aliases:
        aliases.append(model)
    selected = selected or []
    shown = {t.trace_id for t in page.data}
    context = {
        "page": page,
        "fingerprint": _fingerprint(page),
        "filters": {"model": model, "status": status if status in STATUSES else ""},
        "cursor": cursor,
        "aliases": aliases,
        "statuses": STATUSES,
        "datasets": dataset_names,
        "can_select": dataset_names is not None,
        "selected": selected,
        "kept": [t for t in selected if t not in shown],  # ticked rows not on this page
        "form": form or {},
        "error": error,
        "existing": existing,
    }
    return console_of(request).render(request, "tracing/requests.html", context)


@pages.router.get("/requests/rows")
def request_rows(
    request: Request,
    model: str = "",
    status: str = "",
    known: str = "",
    viewer: Viewer = Depends(signed_in),
):
    """The table body, for filters and polling; 204 when nothing changed since `known`."""
    page = _page(request, viewer, model, status, "")
    fingerprint = _fingerprint(page)
    if known and known == fingerprint:
        return Response(status_code=204)
    context = {
        "page": page,
        "fingerprint": fingerprint,
        "filters": {"model": model, "status": status if status in STATUSES else ""},
        "previous": known,
        "can_select": viewer.can("builder"),
    }
    return console_of(request).render(request, "tracing/_rows.html", context)


@pages.router.get("/requests/{trace_id}")
def request_detail(request: Request, trace_id: str, viewer: Viewer = Depends(signed_in)):
    with request.app.state.runtime.db.session() as session:
        try:
            trace = service.get_trace_or_raise(
                session, project_id=viewer.project.id, trace_id=trace_id
            )
        except NotFound:
            # Spans are written a moment after the answer ends: say so, and look again shortly.
            context = {"trace_id": trace_id}
            return console_of(request).render(request, "tracing/pending.html", context)
    return console_of(request).render(request, "tracing/detail.html", _detail(trace))


def _detail(trace: TracePublic) -> dict:
    """What the request page shows: the trace as the list summarises it, then each model call
    (its messages, output and settings) and, when the root span is an app's span around
    them, that span's own input and output."""
    by_id = {s.span_id: s for s in trace.spans}
    root = next((s for s in trace.spans if s.parent_span_id is None), trace.spans[0])
    calls = [by_id[i] for i in trace.call_span_ids if i in by_id] or [root]
    return {
        "trace": trace,
        "summary": trace.summary,
        "root": root,
        "calls": [(c, c.input if isinstance(c.input, list) else None) for c in calls],
        # An SDK span over the gateway's span of one call is that call, not an app around it.
        "app_span": root if calls != [root] and root.kind not in service.REQUEST_KINDS else None,
        "failed": [s for s in trace.spans if s.status == "error"],
    }
