"""Console pages of prompts: the list, and an editor with version history, diff, labels and
"try it" across models (through the gateway, like the playground); chains are created from
the same YAML the API and CLI push, and run from their page.

The pages live in modules named for what they do: list_pages (the list, New prompt, New
chain), editor_pages (a prompt's or chain's page), version_pages (saving versions, moving
labels) and run_pages (trying a prompt on models, running a chain); this one puts their
routes and navigation entry on the console.
"""

from __future__ import annotations

from llmdeck.console.shell import PageSet
from llmdeck.prompts import editor_pages, list_pages, run_pages, version_pages

pages = PageSet("prompts", __file__)
pages.nav("Prompts", "/prompts", section="Build", order=15, icon="file")
for section in (list_pages, editor_pages, version_pages, run_pages):
    pages.router.include_router(section.router)
