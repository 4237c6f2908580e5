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
    workers: int = Field(
        default=1,
        ge=1,
        description="Server processes `llmdeck up` runs. They share the database (rate limits, "
        "budgets and jobs hold across them); one of them runs the background work.",
    )
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
    key_cache_ttl: float = Field(
        default=2.0,
        description="Seconds the gateway, the OTLP receiver and prompt fetches reuse an API "
        "key check; a key revoked in another process is refused within this time (in this "
        "process, at once).",
    )
    gateway_lookup_ttl: float = Field(
        default=2.0,
        description="Seconds the gateway keeps routes, limits, cache policies, catalog "
        "lookups and `prompt:` versions in memory; changes made in another process apply "
        "within this time.",
    )
    gateway_retries: int = Field(
        default=2, description="Retries per model alias after a retryable upstream failure."
    )
    gateway_attempt_timeout: float = Field(
        default=30.0,
        description="Seconds one attempt may take to answer (for a stream: its first chunk, "
        "and then each gap between chunks).",
    )
    gateway_deadline: float = Field(
        default=120.0,
        description="Seconds a call may spend over all attempts and fallbacks before 504.",
    )
    gateway_backoff_base: float = Field(
        default=0.25, description="Seconds before the first retry; doubled each retry."
    )
    gateway_backoff_max: float = Field(
        default=8.0, description="Longest wait between retries, in seconds."
    )
    gateway_breaker_failures: int = Field(
        default=5, description="Consecutive failures that open a deployment's circuit breaker."
    )
    gateway_breaker_cooldown: float = Field(
        default=30.0,
        description="Seconds an open circuit breaker fails fast before letting a probe through.",
    )
    gateway_reserve_output_tokens: int = Field(
        default=256,
        description="Output tokens reserved against token limits and budgets when a request "
        "sets no max_tokens (reconciled with the real count afterwards).",
    )

    otlp_max_in_flight: int = Field(
        default=8,
        description="OTLP batches stored at once; more wait for a slot, then are refused "
        "with 503 and Retry-After (senders retry those).",
    )
    otlp_admission_wait: float = Field(
        default=2.0, description="Seconds an OTLP batch waits for a free slot before 503."
    )
    otlp_retry_after: int = Field(
        default=1, description="Seconds refused OTLP senders are told to wait (Retry-After)."
    )
    otlp_max_body_bytes: int = Field(
        default=32 * 1024 * 1024, description="Largest OTLP request body accepted, in bytes."
    )
    alert_interval: float = Field(
        default=60.0, description="Seconds between evaluations of the alert rules."
    )
    purge_interval: float = Field(
        default=3600.0, description="Seconds between purges of data past its retention."
    )
    drift_interval: float = Field(
        default=3600.0,
        description="Seconds between scheduled drift reports of each project (0 turns them "
        "off; reports can still be made on demand).",
    )
    drift_min_calls: int = Field(
        default=20,
        description="Model calls a project needs in each of the drift windows (recent and "
        "baseline) to get a scheduled drift report.",
    )
    drift_recent_hours: float = Field(
        default=24.0, description="Hours of recent calls a scheduled drift report examines."
    )
    drift_baseline_days: float = Field(
        default=7.0,
        description="Days before the recent window that scheduled drift reports compare with.",
    )
    drift_embedding_model: str = Field(
        default="minilm-l6", description="Embedding model alias scheduled drift reports use."
    )

    job_lease: float = Field(
        default=30.0,
        description="Seconds a running job's worker may go without a heartbeat before another "
        "process takes the job over (a worker that died; it heartbeats every third of this).",
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
