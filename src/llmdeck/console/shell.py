"""The console shell: page sets contributed by domains, the navigation, templates, static files.

Each domain with console pages builds a `PageSet` in its `pages.py`; `mount` puts them on
the app, so adding a domain's pages never means editing the shell:

    pages = PageSet("catalog", __file__)
    pages.nav("Models", "/models", section="Build", order=20)

    @pages.router.get("/models")
    def models_page(request: Request, viewer: Viewer = Depends(signed_in)): ...

Templates live in `<domain>/templates/<domain>/...` and are named with that prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, FileSystemLoader, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from starlette.responses import HTMLResponse

from llmdeck import __version__
from llmdeck.console.session import CSRF_FIELD, CSRF_HEADER, SessionSigner
from llmdeck.core import secrets
from llmdeck.identity.roles import at_least

HERE = Path(__file__).parent
STATIC_URL = "/static"
# Sections in the order the sidebar shows them; a domain may add its own (shown after these).
# Everything the console loads comes from this server: no CDN, no inline scripts, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
SECTIONS = ("Build", "Evaluate", "Observe", "Govern", "Settings")


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    section: str
    min_role: str = "viewer"
    order: int = 100
    icon: str = "dot"


@dataclass
class PageSet:
    """A domain's console pages: their router, navigation entries and template folder."""

    name: str
    module_file: str
    router: APIRouter = field(default_factory=lambda: APIRouter(include_in_schema=False))
    items: list[NavItem] = field(default_factory=list)

    @property
    def templates(self) -> Path:
        return Path(self.module_file).parent / "templates"

    def nav(self, label: str, path: str, *, section: str, min_role: str = "viewer", **kw):
        self.items.append(NavItem(label, path, section, min_role, **kw))


class Console:
    """What every page renders with; one per app, at `app.state.console`."""

    def __init__(self, app: FastAPI, page_sets: list[PageSet]):
        self.app = app
        self.nav_items = sorted(
            (item for ps in page_sets for item in ps.items), key=lambda i: (i.order, i.label)
        )
        folders = [HERE / "templates"] + [ps.templates for ps in page_sets]
        # The console's own templates, but they render user data (prompts, outputs): the
        # sandbox keeps a template mistake from reaching Python internals through that data.
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader([FileSystemLoader(str(f)) for f in folders if f.is_dir()]),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            ms=format_ms, money=format_money, count=format_count, iso=_iso, clock=_clock
        )
        self.env.globals.update(
            static=STATIC_URL, version=__version__, csrf_field=CSRF_FIELD, csrf_header=CSRF_HEADER
        )
        self._signer: SessionSigner | None = None

    @property
    def signer(self) -> SessionSigner:
        # Derived on first use: the local secret file lives in the home directory.
        if self._signer is None:
            settings = self.app.state.runtime.settings
            self._signer = SessionSigner(secrets.derived_key(settings, "console-session"))
        return self._signer

    def nav_for(self, role: str | None) -> list[tuple[str, list[NavItem]]]:
        """The navigation a role sees, grouped by section (known sections first, in order)."""
        visible = [i for i in self.nav_items if role and at_least(role, i.min_role)]
        sections = [s for s in SECTIONS if any(i.section == s for i in visible)]
        sections += list(dict.fromkeys(i.section for i in visible if i.section not in SECTIONS))
        return [(s, [i for i in visible if i.section == s]) for s in sections]

    def render(
        self, request: Request, name: str, context: dict[str, Any] | None = None, *, status=200
    ) -> HTMLResponse:
        viewer = getattr(request.state, "viewer", None)
        ctx = {
            "request": request,
            "viewer": viewer,
            "nav": self.nav_for(viewer.role if viewer else None),
            "csrf": getattr(request.state, "csrf", ""),
            "path": request.url.path,
            **(context or {}),
        }
        html = self.env.get_template(name).render(ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def console_of(request: Request) -> Console:
    return request.app.state.console


def mount(app: FastAPI, page_sets: list[PageSet]) -> Console:
    """Serve the console at `/`: its static files and every domain's pages."""
    app.mount(STATIC_URL, StaticFiles(directory=HERE / "static"), name="static")
    for page_set in page_sets:
        app.include_router(page_set.router)
    app.state.console_page_sets = page_sets
    app.state.console = Console(app, page_sets)
    return app.state.console


def is_console_path(path: str) -> bool:
    """Whether a path belongs to the console (HTML) rather than the API or the gateway."""
    return not path.startswith(
        ("/api/", "/v1/", "/openapi.json", STATIC_URL + "/")
    ) and path not in (
        "/api",
        "/v1",
    )


def format_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


def format_money(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.4f}"


def format_count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _clock(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
