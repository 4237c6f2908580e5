"""The OTLP/HTTP receiver: POST /v1/traces, in protobuf or JSON, authenticated by API key."""

from __future__ import annotations

import gzip
import zlib

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from llmdeck.core.errors import InvalidRequest
from llmdeck.identity.deps import requires
from llmdeck.identity.schemas import Principal
from llmdeck.tracing import ingest, otlp

router = APIRouter(prefix="/v1", tags=["tracing"])
send_traces = requires("builder", "send traces")
PROTOBUF = "application/x-protobuf"


def gate_of(request: Request) -> ingest.IngestGate:
    """The app's ingestion gate, made on first use."""
    gate = getattr(request.app.state, "otlp_gate", None)
    if gate is None:
        gate = request.app.state.otlp_gate = ingest.IngestGate()
    return gate


def _decompress(body: bytes, encoding: str) -> bytes:
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError):
        raise InvalidRequest(f"The body is not valid {encoding}.", param="body") from None
    if encoding in ("", "identity"):
        return body
    raise InvalidRequest(f"Content-Encoding {encoding!r} is not supported; use gzip.")


@router.post(
    "/traces",
    operation_id="export_traces",
    responses={
        200: {"content": {PROTOBUF: {}, "application/json": {}}},
        503: {"description": "Too many batches in flight; retry after Retry-After seconds."},
    },
)
async def export_traces(request: Request, principal: Principal = Depends(send_traces)) -> Response:
    """Receive OpenTelemetry spans (OTLP/HTTP); answered once they are stored."""
    body = await request.body()
    if len(body) > ingest.MAX_BODY_BYTES:
        raise InvalidRequest("The batch is larger than 32 MiB; send smaller batches.")
    body = _decompress(body, request.headers.get("content-encoding", "").lower().strip())
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json"
    if not is_json and content_type not in (PROTOBUF, "application/protobuf", ""):
        raise InvalidRequest(
            f"Content-Type {content_type!r} is not OTLP; send {PROTOBUF} or application/json."
        )
    gate = gate_of(request)
    if not gate.try_acquire() and not await run_in_threadpool(gate.acquire):
        return JSONResponse(
            {
                "error": {
                    "message": "The trace receiver is busy; retry after the given seconds.",
                    "type": "overloaded_error",
                    "param": None,
                    "code": "ingestion_busy",
                }
            },
            status_code=503,
            headers={"Retry-After": str(ingest.RETRY_AFTER)},
        )
    try:
        count = await run_in_threadpool(
            _store, request.app.state.runtime.db, body, is_json, principal
        )
    finally:
        gate.release()
    del count
    if is_json:
        return JSONResponse({})
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)


def _store(db, body: bytes, is_json: bool, principal: Principal) -> int:
    raw = otlp.parse_json(body) if is_json else otlp.parse_protobuf(body)
    records = [
        otlp.to_record(span, project_id=principal.project_id, api_key_id=principal.api_key_id)
        for span in raw
        if span.trace_id and span.span_id
    ]
    return ingest.write_spans(db, records)
