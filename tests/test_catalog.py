"""The model catalog on both databases."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llmdeck.app import create_app
from llmdeck.catalog import service
from llmdeck.catalog.models import Model
from llmdeck.catalog.schemas import MAX_CONTEXT_WINDOW, ModelCreate, ModelUpdate
from llmdeck.core.db import Database
from llmdeck.core.errors import Conflict, InvalidRequest, NotFound
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ProjectCreate


def test_bundled_models_are_present_from_the_start(db: Database) -> None:
    with db.session() as session:
        models = {m.alias: m for m in service.list_models(session)}
    assert models["smollm2-135m"].kind == "chat"
    assert models["smollm2-135m"].context_window == 8192
    assert models["minilm-l6"].kind == "embedding"
    assert {m.provider for m in models.values()} == {"local"}


def test_added_model_key_is_stored_encrypted(db: Database) -> None:
    with db.session() as session:
        model = service.create(
            session,
            settings=db.settings,
            data=ModelCreate(
                alias="gpt-x",
                upstream_name="gpt-x-2026",
                base_url="http://127.0.0.1:9/v1",
                api_key="sk-very-secret",
                input_price_per_mtok=2.5,
                output_price_per_mtok=10,
            ),
        )
        public = service.to_public(model)
    assert public.has_api_key and "api_key" not in public.model_dump()
    with db.session() as session:
        row = session.scalar(select(Model).where(Model.alias == "gpt-x"))
        assert "sk-very-secret" not in row.api_key_encrypted
        assert service.connection(row, db.settings).api_key == "sk-very-secret"
        assert service.cost(row, 1_000_000, 500_000) == pytest.approx(7.5)


def test_bad_models_are_refused_with_the_field_to_fix(db: Database) -> None:
    with db.session() as session:
        with pytest.raises(Conflict):
            service.create(
                session,
                settings=db.settings,
                data=ModelCreate(alias="smollm2-135m", upstream_name="x", base_url="http://h/v1"),
            )
        with pytest.raises(InvalidRequest) as missing:
            service.create(
                session, settings=db.settings, data=ModelCreate(alias="m", upstream_name="x")
            )
        assert missing.value.param == "base_url"
        with pytest.raises(InvalidRequest) as provider:
            service.create(
                session,
                settings=db.settings,
                data=ModelCreate(
                    alias="m", provider="nope", upstream_name="x", base_url="http://h"
                ),
            )
        assert provider.value.param == "provider"


def test_project_scoped_and_disabled_models_are_hidden(db: Database) -> None:
    with db.session() as session:
        acme = identity.create_project(session, data=ProjectCreate(name="acme"))
        other = identity.create_project(session, data=ProjectCreate(name="other"))
        service.create(
            session,
            settings=db.settings,
            data=ModelCreate(
                alias="private", upstream_name="p", base_url="http://h/v1", project="acme"
            ),
        )
        assert "private" in [m.alias for m in service.list_models(session, project_id=acme.id)]
        assert "private" not in [m.alias for m in service.list_models(session, project_id=other.id)]
        with pytest.raises(NotFound):
            service.get_for_project_or_raise(session, alias="private", project_id=other.id)
        bundled = service.get_by_alias_or_raise(session, alias="smollm2-135m")
        service.update(session, model=bundled, data=ModelUpdate(status="disabled"))
        with pytest.raises(NotFound, match="'smollm2-135m' is disabled; an admin can enable"):
            service.get_for_project_or_raise(session, alias="smollm2-135m", project_id=acme.id)
        with pytest.raises(NotFound, match="does not exist"):
            service.get_for_project_or_raise(session, alias="no-such-model", project_id=acme.id)
        with pytest.raises(InvalidRequest, match="embedding model"):
            service.get_for_project_or_raise(
                session, alias="minilm-l6", project_id=acme.id, kind="chat"
            )


def test_the_api_refuses_huge_context_windows_and_endless_prices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-master-test")
    get_settings.cache_clear()
    model = {"alias": "m", "upstream_name": "m", "base_url": "http://127.0.0.1:9/v1"}
    with TestClient(create_app(get_settings())) as http:
        http.headers["Authorization"] = "Bearer ldk-master-test"
        for bad in [
            {"context_window": 99999999999999999999},  # past SQLite's INTEGER: was a 500
            {"context_window": MAX_CONTEXT_WINDOW + 1},
            {"input_price_per_mtok": "inf"},
            {"output_price_per_mtok": "nan"},
        ]:
            refused = http.post("/api/models", json={**model, **bad})
            assert refused.status_code == 400, (bad, refused.text)
            assert next(iter(bad)) in refused.text
        assert http.post("/api/models", json=model).status_code == 201
        for bad in [{"context_window": MAX_CONTEXT_WINDOW + 1}, {"input_price_per_mtok": "inf"}]:
            assert http.patch("/api/models/m", json=bad).status_code == 400
