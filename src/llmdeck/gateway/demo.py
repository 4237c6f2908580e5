"""The gateway configuration of the demo project: a route and its project's limits."""

from __future__ import annotations

from sqlalchemy.orm import Session

from llmdeck.core.settings import Settings
from llmdeck.gateway import config
from llmdeck.gateway.schemas import DeploymentSpec, LimitSpec, RouteSpec

DEMO_ROUTE = "demo-assistant"


def seed(session: Session, settings: Settings, project: str) -> None:
    """A route to the bundled chat model and rate limits on the project, so the Gateway
    page and `llmdeck gateway export` show a working configuration from the first start."""
    config.put_route(
        session,
        settings=settings,
        spec=RouteSpec(
            alias=DEMO_ROUTE,
            project=project,
            retries=1,
            deployments=[
                DeploymentSpec(name="local", provider="local", upstream="smollm2-135m-instruct")
            ],
        ),
    )
    config.set_limit(session, spec=LimitSpec(project=project, rpm=600, tpm=200_000))
