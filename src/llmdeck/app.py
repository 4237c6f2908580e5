"""The app factory: wires every domain's routers onto one FastAPI app."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmdeck import __version__, console
from llmdeck.catalog.pages import pages as catalog_pages
from llmdeck.catalog.router import router as catalog_router
from llmdeck.core.errors import LLMDeckError, invalid_fields
from llmdeck.core.settings import Settings, get_settings
from llmdeck.evals.pages import pages as evals_pages
from llmdeck.evals.router import router as evals_router
from llmdeck.gateway import fastpath
from llmdeck.gateway.api import router as gateway_config_router
from llmdeck.gateway.pages import pages as gateway_pages
from llmdeck.gateway.router import router as gateway_router
from llmdeck.identity.pages import pages as identity_pages
from llmdeck.identity.router import router as identity_router
from llmdeck.knowledge.pages import pages as knowledge_pages
from llmdeck.knowledge.router import router as knowledge_router
from llmdeck.monitoring.pages import pages as monitoring_pages
from llmdeck.monitoring.router import feedback_router
from llmdeck.monitoring.router import router as monitoring_router
from llmdeck.prompts.pages import pages as prompts_pages
from llmdeck.prompts.router import chains_router
from llmdeck.prompts.router import router as prompts_router
from llmdeck.runtime import Runtime
from llmdeck.tracing.otlp_router import router as otlp_router
from llmdeck.tracing.pages import pages as tracing_pages
from llmdeck.tracing.router import router as tracing_router

_STATUS_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.runtime = Runtime.start(settings, background=True)
        try:
            # The lifespan's state reaches the server's protocol (gateway/protocol.py).
            yield {"runtime": app.state.runtime}
        finally:
            await app.state.runtime.stop()

    app = _App(
        title="llmdeck",
        version=__version__,
        description="LLMOps platform: REST API (/api) and OpenAI-compatible gateway (/v1).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    # The SDK's prompt fetch is the hottest /api route: matched first, it skips scanning
    # every other route (FastAPI matches in order).
    for router in (
        prompts_router,
        identity_router,
        catalog_router,
        tracing_router,
        otlp_router,
        monitoring_router,
        feedback_router,
        gateway_router,
        knowledge_router,
        gateway_config_router,
        chains_router,
        evals_router,
    ):
        app.include_router(router)

    @app.get("/api/health", operation_id="get_health", tags=["platform"])
    def health() -> dict[str, str]:
        """Liveness: answers as soon as the server can serve."""
        return {"status": "ok", "version": __version__}

    # The web console at `/`; each domain contributes its pages.
    console.mount(
        app,
        [
            gateway_pages,
            prompts_pages,
            evals_pages,
            knowledge_pages,
            catalog_pages,
            tracing_pages,
            monitoring_pages,
            identity_pages,
        ],
    )
    _add_error_handlers(app)
    return app


class _App(FastAPI):
    """The app, with the gateway's hot endpoints served in front of the framework."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and fastpath.serves(scope):
            await fastpath.serve(self.state.runtime, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LLMDeckError)
    async def llmdeck_error(request: Request, exc: LLMDeckError) -> Response:
        if console.wants_html(request):
            return await console.error_page(request, exc.status_code, exc.message)
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        error = invalid_fields(exc.errors())
        if console.wants_html(request):
            return await console.error_page(request, 400, error.message)
        return JSONResponse(error.to_dict(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if console.wants_html(request):
            message = (
                "There is nothing at this address." if exc.status_code == 404 else str(exc.detail)
            )
            return await console.error_page(request, exc.status_code, message)
        body = {
            "error": {
                "message": str(exc.detail),
                "type": _STATUS_TYPES.get(exc.status_code, "api_error"),
                "param": None,
                "code": None,
            }
        }
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
