"""The OpenAI wire format: requests accepted and responses returned by /v1."""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator, with_config
from typing_extensions import TypedDict  # pydantic takes typing's only from Python 3.12


@with_config(ConfigDict(extra="allow"))
class ChatMessage(TypedDict):
    # A dict, not a model: validated messages go upstream as they are, with no model made
    # and dumped back per message on every call.
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: NotRequired[str | list[dict[str, Any]] | None]


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # The other OpenAI fields (tools, response_format, logprobs, penalties, ...) and a
    # serving engine's own go upstream as sent; a model that cannot honour one refuses it.
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    # May be empty only for `prompt:NAME@LABEL` models, whose prompt supplies the messages.
    messages: list[ChatMessage] = Field(default_factory=list)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1 is supported.")
    user: str | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    # The official client asks for base64 (packed little-endian float32) by default.
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(
        default=None, ge=1, description="Shorter vectors, if the model can."
    )
    user: str | None = None
    # llmdeck's own, like the chat body's `cache`: never sent upstream.
    truncate: bool = Field(
        default=False,
        description="Embed only the start of an input longer than the bundled model reads "
        "(its usage counts what was read), instead of refusing it. Upstream deployments "
        "are not sent this and refuse or cut as they do.",
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# Gateway configuration: routes, limits and budgets, cache policies (API, CLI and YAML).

ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"


class DeploymentSpec(BaseModel):
    """Where a route's calls can go. In YAML, prefer `api_key_env` to a key in the file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    provider: str = "openai"
    upstream: str = Field(min_length=1, max_length=200, description="The model's upstream name.")
    base_url: str | None = Field(default=None, max_length=500)
    api_key: SecretStr | None = Field(default=None, description="Stored encrypted.")
    api_key_env: str | None = Field(
        default=None, description="Read the key from this environment variable when applied."
    )
    weight: float = Field(default=1.0, gt=0)


class RouteSpec(BaseModel):
    """A model alias served by weighted deployments, with retries and fallbacks."""

    model_config = ConfigDict(extra="forbid")
    alias: str = Field(min_length=1, max_length=200, pattern=ALIAS_PATTERN)
    kind: Literal["chat", "embedding"] = "chat"
    project: str | None = Field(default=None, description="Only this project may use it.")
    strategy: Literal["weighted", "least_busy"] = "weighted"
    fallbacks: list[str] = Field(default_factory=list, description="Aliases tried in order.")
    retries: int | None = Field(default=None, ge=0, le=10)
    attempt_timeout: float | None = Field(default=None, gt=0, description="Seconds.")
    deadline: float | None = Field(default=None, gt=0, description="Seconds, all attempts.")
    context_window: int = Field(default=8192, gt=0)
    input_price_per_mtok: float = Field(default=0.0, ge=0)
    output_price_per_mtok: float = Field(default=0.0, ge=0)
    deployments: list[DeploymentSpec] = Field(min_length=1)


class RoutePut(RouteSpec):
    """A route sent to PUT /api/gateway/routes/{alias}: the path names it."""

    alias: str | None = Field(
        default=None,
        max_length=200,
        pattern=ALIAS_PATTERN,
        description="Optional; when given it must be the path's alias.",
    )


class DeploymentPublic(BaseModel):
    name: str
    provider: str
    upstream: str
    base_url: str | None
    has_api_key: bool
    weight: float


class RoutePublic(BaseModel):
    alias: str
    kind: str
    project: str | None
    strategy: str
    fallbacks: list[str]
    retries: int | None
    attempt_timeout: float | None
    deadline: float | None
    context_window: int
    input_price_per_mtok: float
    output_price_per_mtok: float
    deployments: list[DeploymentPublic]


class LimitSpec(BaseModel):
    """Limits of one project or one API key (by id or visible prefix); empty: unlimited."""

    model_config = ConfigDict(extra="forbid")
    project: str | None = None
    key: str | None = None
    rpm: int | None = Field(default=None, ge=0, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=0, description="Tokens per minute.")
    budget: float | None = Field(default=None, ge=0, description="Dollars per period.")
    budget_period: Literal["day", "week", "month"] = "month"

    @model_validator(mode="after")
    def _one_scope(self) -> LimitSpec:
        if (self.project is None) == (self.key is None):
            raise ValueError("give exactly one of project or key")
        return self


class CacheSpec(BaseModel):
    """A project's response cache."""

    model_config = ConfigDict(extra="forbid")
    project: str
    ttl_seconds: int = Field(default=300, gt=0)
    exact: bool = True
    semantic_threshold: float | None = Field(
        default=None, gt=0, le=1, description="Cosine similarity for a semantic hit; empty: off."
    )
    embedding_model: str = "minilm-l6"


class GatewayConfig(BaseModel):
    """Everything the gateway is configured with; what `llmdeck gateway apply` reads."""

    model_config = ConfigDict(extra="forbid")
    routes: list[RouteSpec] = Field(default_factory=list)
    limits: list[LimitSpec] = Field(default_factory=list)
    cache: list[CacheSpec] = Field(default_factory=list)


class ApplyResult(BaseModel):
    routes: int
    limits: int
    cache: int
    removed: list[str] = Field(default_factory=list)
