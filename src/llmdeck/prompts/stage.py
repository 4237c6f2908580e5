"""The gateway stage that serves `"model": "prompt:NAME@LABEL"`: render, then route."""

from __future__ import annotations

from llmdeck.core.db import Database
from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.core.loading import LoadingCache
from llmdeck.gateway.pipeline import Call, Next, Outcome
from llmdeck.prompts import service
from llmdeck.prompts.models import Prompt, PromptVersion

PREFIX = "prompt:"
VARIABLES_FIELD = "prompt_variables"
MODEL_FIELD = "prompt_model"  # try the same prompt on another model (the playground does)
_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed")


class RenderPrompt:
    """Renders a registered prompt into the call's messages; sits before model resolution.

    The prompt's messages come first, then any non-empty messages the request carried
    (a conversation continuing the prompt). Parameters the request leaves unset take the
    prompt's. The version used goes on the trace as `attributes["prompt"]`.
    """

    def __init__(self, db: Database, ttl: float):
        self.db = db
        # Labels move rarely: a moment of staleness saves a query per call, and the query
        # runs off the event loop (core/loading.py), as the gateway's other lookups do.
        self._versions = LoadingCache(ttl)
        self._generation = service.generation

    async def _lookup(self, project_id: str, ref: str) -> tuple[Prompt, PromptVersion, str | None]:
        # Changes made in this process show at once; other processes' within the TTL.
        if self._generation != service.generation:
            self._generation = service.generation
            self._versions.clear()
        return await self._versions.get((project_id, ref), lambda: self._load(project_id, ref))

    def _load(self, project_id: str, ref: str) -> tuple[Prompt, PromptVersion, str | None]:
        name, label, version = service.parse_ref(ref)
        with self.db.session() as session:
            if label is None and version is None:
                try:
                    prompt, row = service.resolve(
                        session, project_id=project_id, name=name, label=service.PRODUCTION
                    )
                    label = service.PRODUCTION
                except NotFound:
                    prompt, row = service.resolve(session, project_id=project_id, name=name)
            else:
                prompt, row = service.resolve(
                    session, project_id=project_id, name=name, label=label, version=version
                )
        return prompt, row, label

    async def __call__(self, call: Call, next: Next) -> Outcome:
        if call.chat is None or not call.alias.startswith(PREFIX):
            return await next(call)
        prompt, row, label = await self._lookup(
            call.principal.project_id, call.alias[len(PREFIX) :]
        )
        if prompt.kind != "prompt":
            raise InvalidRequest(
                f"{prompt.name!r} is a chain; run it with POST /api/chains/{prompt.name}/runs.",
                param="model",
            )
        variables = call.options.get(VARIABLES_FIELD) or {}
        if not isinstance(variables, dict):
            raise InvalidRequest(f"{VARIABLES_FIELD} must be an object.", param=VARIABLES_FIELD)
        rendered = service.render(prompt, row, variables, label)
        model = call.options.get(MODEL_FIELD) or rendered.model
        if not model:
            raise InvalidRequest(
                f"Prompt {prompt.name!r} version {row.version} names no model; "
                f"pass `{MODEL_FIELD}` in the request.",
                param="model",
            )
        continuing = [
            m
            for m in call.chat.messages
            if m.get("content") not in ("", None) or m.get("tool_calls")
        ]
        call.chat.messages = rendered.messages + continuing
        for name in _PARAMS:
            if getattr(call.chat, name) is None and rendered.params.get(name) is not None:
                value = rendered.params[name]
                setattr(
                    call.chat, name, [value] if name == "stop" and isinstance(value, str) else value
                )
        call.alias = call.chat.model = model
        call.attributes["prompt"] = {"name": prompt.name, "version": row.version, "label": label}
        if variables:
            # On the trace, so that a request picked in the explorer becomes a dataset item
            # with the same variables (re-runnable against the prompt).
            call.attributes[VARIABLES_FIELD] = variables
        return await next(call)
