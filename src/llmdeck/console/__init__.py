"""The web console: the shell (layout, sessions, CSRF, navigation) that domains add pages to."""

from __future__ import annotations

from fastapi import FastAPI

from llmdeck.console import shell
from llmdeck.console.auth import SignInRequired
from llmdeck.console.errors import error_page, sign_in_required, wants_html
from llmdeck.console.router import pages as shell_pages
from llmdeck.console.shell import PageSet

__all__ = ["PageSet", "error_page", "mount", "wants_html"]


def mount(app: FastAPI, page_sets: list[PageSet]) -> None:
    """Serve the console at `/` with the shell's pages and each domain's `page_sets`."""
    shell.mount(app, [shell_pages, *page_sets])
    app.add_exception_handler(SignInRequired, sign_in_required)
