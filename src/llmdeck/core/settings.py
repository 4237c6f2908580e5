"""The one settings class: every field comes from an `LLMDECK_` environment variable."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmdeck" / "models"


class Settings(BaseSettings):
    """Platform settings; `llmdeck config show` prints them with these descriptions."""

    model_config = SettingsConfigDict(env_prefix="LLMDECK_", extra="ignore")

    home: Path = Field(
        default=Path(".llmdeck"),
        description="Directory holding the SQLite file, the file store and local secrets.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; postgresql://... switches to PostgreSQL. "
        "Default: a SQLite file in the home directory.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="When set, an admin API key valid for every project (created at start).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts stored provider keys. Default: generated once into "
        "the home directory (local mode only).",
    )
    host: str = Field(default="127.0.0.1", description="Address `llmdeck up` listens on.")
    port: int = Field(default=8000, description="Port `llmdeck up` listens on.")
    model_cache: Path = Field(
        default_factory=_default_model_cache,
        description="Where bundled models are kept once converted for fast loading.",
    )
    upstream_connect_timeout: float = Field(
        default=5.0, description="Seconds to connect to an OpenAI-compatible upstream."
    )
    upstream_read_timeout: float = Field(
        default=60.0,
        description="Seconds to wait for an upstream's next bytes before answering 504.",
    )
    trace_flush_interval: float = Field(
        default=0.2, description="Seconds between flushes of the trace writer."
    )
    trace_batch_size: int = Field(default=200, description="Spans written per batch.")
    local_threads: int = Field(
        default=0, description="Torch threads for the local models (0: PyTorch's default)."
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL with the SQLite default filled in and the psycopg driver named."""
        url = self.database_url or f"sqlite:///{(self.home / 'llmdeck.db').resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """Settings read from the environment once per process."""
    return Settings()
