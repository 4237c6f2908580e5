"""Imports every domain's tables so that metadata (and Alembic) sees them all."""


def import_all_models() -> None:
    from llmdeck.catalog import models as _catalog  # noqa: F401
    from llmdeck.core import jobs as _jobs  # noqa: F401
    from llmdeck.evals import models as _evals  # noqa: F401
    from llmdeck.gateway import models as _gateway  # noqa: F401
    from llmdeck.identity import models as _identity  # noqa: F401
    from llmdeck.knowledge import models as _knowledge  # noqa: F401
    from llmdeck.monitoring import models as _monitoring  # noqa: F401
    from llmdeck.prompts import models as _prompts  # noqa: F401
    from llmdeck.tracing import models as _tracing  # noqa: F401
