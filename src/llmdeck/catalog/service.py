"""Catalog logic: the models the platform can call, and what each costs."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from llmdeck.catalog.models import Model
from llmdeck.catalog.schemas import ModelCreate, ModelPublic, ModelUpdate
from llmdeck.core import secrets
from llmdeck.core.errors import Conflict, InvalidRequest, NotFound
from llmdeck.core.registry import plugins
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.providers import local_models
from llmdeck.providers.base import Connection

BUILTIN_MODELS = (
    dict(
        alias="smollm2-135m",
        provider="local",
        upstream_name="smollm2-135m-instruct",
        kind="chat",
        context_window=local_models.CHAT_CONTEXT_WINDOW,
        description="SmolLM2-135M-Instruct, bundled; runs on this machine's CPU.",
    ),
    dict(
        alias="minilm-l6",
        provider="local",
        upstream_name="all-minilm-l6-v2",
        kind="embedding",
        context_window=256,
        description="all-MiniLM-L6-v2 sentence embeddings (384 dimensions), bundled.",
    ),
)


def ensure_builtin_models(session: Session) -> None:
    """Add the bundled models to the catalog if they are missing."""
    for spec in BUILTIN_MODELS:
        if get_by_alias(session, alias=spec["alias"]) is None:
            session.add(Model(**spec))
    session.flush()


def get_by_alias(session: Session, *, alias: str) -> Model | None:
    return session.scalar(select(Model).where(Model.alias == alias))


def get_for_project_or_raise(
    session: Session, *, alias: str, project_id: str, kind: str | None = None
) -> Model:
    """The active model this project may use under `alias`."""
    model = get_by_alias(session, alias=alias)
    if model is None or (model.project_id is not None and model.project_id != project_id):
        raise NotFound(
            f"The model {alias!r} does not exist or is not available to this project. "
            "GET /v1/models lists the ones you may use.",
            param="model",
            code="model_not_found",
        )
    if model.status != "active":
        # Still a 404 (`llmdeck models disable` promises it), but one that says why.
        raise NotFound(
            f"The model {alias!r} is disabled; an admin can enable it "
            f"(`llmdeck models enable {alias}` or the Models page).",
            param="model",
            code="model_disabled",
        )
    if kind is not None and model.kind != kind:
        raise wrong_kind(alias, model.kind, kind)
    return model


def wrong_kind(alias: str, has: str, wants: str) -> InvalidRequest:
    """The error for a model of one kind (chat, embedding) used where the other is needed."""
    return InvalidRequest(
        f"The model {alias!r} is {_a(has)} {has} model; this endpoint needs {_a(wants)} "
        f"{wants} model.",
        param="model",
    )


def _a(word: str) -> str:
    """The indefinite article before `word` ("an embedding", "a chat")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def list_models(session: Session, *, project_id: str | None = None) -> list[Model]:
    """Every model, or those a project may use when `project_id` is given."""
    query = select(Model).order_by(Model.kind, Model.alias)
    if project_id is not None:
        query = query.where(
            Model.status == "active",
            or_(Model.project_id.is_(None), Model.project_id == project_id),
        )
    return list(session.scalars(query))


def create(session: Session, *, settings: Settings, data: ModelCreate) -> Model:
    if get_by_alias(session, alias=data.alias) is not None:
        raise Conflict(f"A model with alias {data.alias!r} already exists.", param="alias")
    if data.provider not in plugins().providers:
        known = ", ".join(plugins().providers.names())
        raise InvalidRequest(
            f"Unknown provider {data.provider!r}; known: {known}.", param="provider"
        )
    provider = plugins().providers.get(data.provider)
    if provider.needs_base_url and not data.base_url:
        raise InvalidRequest(
            "This provider needs a base URL, e.g. http://localhost:8080/v1.", param="base_url"
        )
    if data.base_url and not data.base_url.startswith(("http://", "https://")):
        raise InvalidRequest("The base URL must start with http:// or https://.", param="base_url")
    project_id = None
    if data.project:
        project_id = identity.get_project_by_name_or_raise(session, name=data.project).id
    model = Model(
        alias=data.alias,
        provider=data.provider,
        upstream_name=data.upstream_name,
        kind=data.kind,
        base_url=data.base_url,
        api_key_encrypted=(
            secrets.encrypt(settings, data.api_key.get_secret_value()) if data.api_key else None
        ),
        context_window=data.context_window,
        input_price_per_mtok=data.input_price_per_mtok,
        output_price_per_mtok=data.output_price_per_mtok,
        project_id=project_id,
        description=data.description,
    )
    session.add(model)
    session.flush()
    return model


def get_by_alias_or_raise(session: Session, *, alias: str) -> Model:
    model = get_by_alias(session, alias=alias)
    if model is None:
        raise NotFound(f"No model with alias {alias!r}. See `llmdeck models list`.", param="alias")
    return model


def update(session: Session, *, model: Model, data: ModelUpdate) -> Model:
    for name, value in data.model_dump(exclude_none=True).items():
        setattr(model, name, value)
    session.flush()
    return model


def delete(session: Session, *, model: Model) -> None:
    if model.provider == "local" and any(m["alias"] == model.alias for m in BUILTIN_MODELS):
        raise InvalidRequest("A bundled model cannot be deleted; disable it instead.")
    session.delete(model)
    session.flush()


def to_public(model: Model) -> ModelPublic:
    return ModelPublic.model_validate(
        {
            **{c: getattr(model, c) for c in ModelPublic.model_fields if c != "has_api_key"},
            "has_api_key": model.api_key_encrypted is not None,
        }
    )


def connection(model: Model, settings: Settings) -> Connection:
    """The connection that serves `model`, with its key decrypted for the call."""
    key = secrets.decrypt(settings, model.api_key_encrypted) if model.api_key_encrypted else None
    return Connection(base_url=model.base_url, api_key=key)


def cost(model: Model, input_tokens: int, output_tokens: int) -> float:
    """What a call cost in dollars at the catalog's per-million-token prices."""
    return (
        input_tokens * model.input_price_per_mtok + output_tokens * model.output_price_per_mtok
    ) / 1_000_000
