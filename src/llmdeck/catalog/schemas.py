"""Request and response shapes of the catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Far above any model today, and it fits PostgreSQL's 32-bit INTEGER column.
MAX_CONTEXT_WINDOW = 100_000_000


class ModelCreate(BaseModel):
    """An OpenAI-compatible model reached by base URL (or another registered provider)."""

    alias: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
    provider: str = "openai"
    upstream_name: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=500)
    api_key: SecretStr | None = None
    kind: Literal["chat", "embedding"] = "chat"
    context_window: int = Field(default=8192, gt=0, le=MAX_CONTEXT_WINDOW)
    input_price_per_mtok: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    output_price_per_mtok: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    project: str | None = Field(default=None, description="Only this project may use it.")
    description: str = Field(default="", max_length=2000)


class ModelUpdate(BaseModel):
    status: Literal["active", "disabled"] | None = None
    input_price_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    output_price_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    context_window: int | None = Field(default=None, gt=0, le=MAX_CONTEXT_WINDOW)
    description: str | None = Field(default=None, max_length=2000)


class ModelPublic(BaseModel):
    """A catalog model as shown to users; its key never leaves the server."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    alias: str
    provider: str
    upstream_name: str
    kind: str
    base_url: str | None
    has_api_key: bool
    context_window: int
    input_price_per_mtok: float
    output_price_per_mtok: float
    status: str
    project_id: str | None
    description: str
    created_at: datetime
