"""Console pages of evaluation: experiments (live progress, side-by-side comparison),
datasets, and review queues where experts score with the keyboard.

Each has a module of its own (experiment_pages, dataset_pages, review_pages); this one puts
their routes and navigation entries on the console.
"""

from __future__ import annotations

from llmdeck.console.shell import PageSet
from llmdeck.evals import dataset_pages, experiment_pages, review_pages

pages = PageSet("evals", __file__)
pages.nav("Experiments", "/experiments", section="Build", order=40, icon="chart")
pages.nav("Datasets", "/datasets", section="Build", order=41, icon="box")
pages.nav("Review", "/review", section="Build", min_role="reviewer", order=42, icon="check")
for section in (experiment_pages, dataset_pages, review_pages):
    pages.router.include_router(section.router)
