"""Response caching: exact match on the normalised request, and semantic (similar prompts).

A project turns caching on with a cache policy; a request opts out with `"cache": false`
in its body or an `x-llmdeck-cache: off` header. Entries live in the database (shared by
every process, kept for the policy's TTL). The semantic cache embeds the last user message
with the policy's embedding model (through the provider layer) and answers from the most
similar earlier prompt whose cosine similarity reaches the threshold, among requests with
the same model, parameters and earlier messages. Its vectors are also held in memory per
process, loaded from the database on first use. A message longer than the embedding model
reads is not compared: only the exact cache applies to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import select

from llmdeck.core.db import Database, utcnow
from llmdeck.core.errors import LLMDeckError
from llmdeck.core.settings import Settings
from llmdeck.gateway.directory import CacheRule, Directory
from llmdeck.gateway.models import CacheEntry
from llmdeck.gateway.offpath import OffPath
from llmdeck.gateway.pipeline import Call, Next, Outcome, close_stream
from llmdeck.identity.schemas import Principal
from llmdeck.providers.base import ChatChunk, ChatRequest, ChatResult
from llmdeck.providers.service import get_provider

log = logging.getLogger(__name__)
MAX_VECTORS_PER_SCOPE = 5000
CACHE_HEADER = "x-llmdeck-cache"
# The error code of an input longer than the embedding model reads (ours and OpenAI's).
TOO_LONG = "context_length_exceeded"


def _text(content: Any) -> str | None:
    """A message's text, whitespace around it ignored; None when it has more than text
    (an image, audio, ...), which only the same parts can match."""
    if isinstance(content, list):
        if any(not isinstance(p, dict) or p.get("type", "text") != "text" for p in content):
            return None
        return "".join(str(p.get("text", "")) for p in content).strip()
    return (content or "").strip()


def _digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def normalise(alias: str, chat: ChatRequest) -> tuple[str, str, str]:
    """(exact key, semantic scope, semantic text) of a chat request.

    The exact key covers the model, the parameters and every message (whitespace around
    contents ignored); the scope covers all of it but the last user message, whose text is
    what the semantic cache compares.
    """
    params = {
        **chat.extra,  # tools, response_format, ...: they change the answer too
        **{
            k: getattr(chat, k)
            for k in ("temperature", "top_p", "max_tokens", "stop", "seed")
            if getattr(chat, k) is not None
        },
    }
    messages = []
    for m in chat.messages:
        text = _text(m.get("content"))
        messages.append({**m, "content": m.get("content") if text is None else text})
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    context = [m for i, m in enumerate(messages) if i != last_user]
    text = messages[last_user]["content"] if last_user is not None else ""
    if not isinstance(text, str):
        text = ""  # more than text: no semantic match, the exact key still holds all of it
    exact = _digest({"alias": alias, "params": params, "messages": messages})
    scope = _digest({"alias": alias, "params": params, "context": context})
    return exact, scope, text


@dataclass
class _Vectors:
    keys: list[str] = field(default_factory=list)
    expires: list[float] = field(default_factory=list)
    matrix: np.ndarray | None = None

    def add(self, key: str, vector: np.ndarray, expires: float) -> None:
        self.keys.append(key)
        self.expires.append(expires)
        row = vector[None, :]
        self.matrix = row if self.matrix is None else np.vstack([self.matrix, row])
        if len(self.keys) > MAX_VECTORS_PER_SCOPE:
            self.keys, self.expires, self.matrix = self.keys[1:], self.expires[1:], self.matrix[1:]

    def best(self, vector: np.ndarray) -> tuple[str, float] | None:
        if self.matrix is None:
            return None
        scores = self.matrix @ vector
        now = time.time()
        for index in np.argsort(-scores):
            if self.expires[index] > now:
                return self.keys[index], float(scores[index])
        return None


class Cache:
    """Pipeline stage: answer from the cache, or call on and remember the answer."""

    def __init__(self, db: Database, directory: Directory, settings: Settings):
        self.db = db
        self.directory = directory
        self.settings = settings
        self._vectors: dict[tuple[str, str], _Vectors] = {}
        self._storing = OffPath("storing a cache entry")

    async def __call__(self, call: Call, next: Next) -> Outcome:
        if call.kind != "chat":
            return await next(call)
        rule = (await self.directory.snapshot()).cache.get(call.principal.project_id)
        if rule is None:
            return await next(call)
        if not call.use_cache:
            call.attributes["cache"] = "off"
            return await next(call)
        exact, scope, text = normalise(call.alias, call.chat)
        project = call.principal.project_id
        loop = asyncio.get_running_loop()
        hit = None
        if rule.exact:
            hit = await loop.run_in_executor(None, self._get, project, exact)
            if hit is not None:
                call.attributes["cache"] = "hit"
        vector = None
        if hit is None and rule.semantic_threshold is not None and text:
            try:
                vector = await self._embed(rule, call.principal, text)
            except LLMDeckError as exc:
                # The policy's embedding model failing must not fail the call: it is a miss.
                if exc.code == TOO_LONG:
                    # Expected, not a fault: see _embed. The exact cache still applies.
                    log.debug("semantic cache skipped in %s: %s", project, exc.message)
                    call.attributes["cache_semantic"] = "skipped: message too long to embed"
                else:
                    log.warning("semantic cache lookup failed in %s: %s", project, exc.message)
                    call.attributes["cache_error"] = exc.message
            else:
                hit = await self._similar(project, scope, vector, rule.semantic_threshold, call)
        if hit is not None:
            return self._answer(call, hit)
        call.attributes["cache"] = "miss"
        outcome = await next(call)
        remember = _Remember(self, rule, project, exact, scope, text, vector, call.alias)
        if isinstance(outcome, ChatResult):
            remember(outcome)
            return outcome
        return self._watch(outcome, remember)

    def _answer(self, call: Call, response: dict[str, Any]) -> Outcome:
        result = ChatResult(
            content=response["content"],
            finish_reason=response.get("finish_reason", "stop"),
            input_tokens=response.get("input_tokens", 0),
            output_tokens=response.get("output_tokens", 0),
        )
        if not call.stream:
            return result

        async def replay() -> AsyncIterator[ChatChunk]:
            yield ChatChunk(delta=result.content)
            yield ChatChunk(
                finish_reason=result.finish_reason,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
            )

        return replay()

    async def _watch(self, stream: AsyncIterator[ChatChunk], remember) -> AsyncIterator[ChatChunk]:
        parts: list[str] = []
        tool_calls = False
        try:
            async for chunk in stream:
                parts.append(chunk.delta)
                tool_calls = tool_calls or bool(chunk.tool_calls)
                if chunk.finish_reason and not tool_calls:
                    remember(
                        ChatResult(
                            content="".join(parts),
                            finish_reason=chunk.finish_reason,
                            input_tokens=chunk.input_tokens or 0,
                            output_tokens=chunk.output_tokens or 0,
                        )
                    )
                yield chunk
        finally:
            await close_stream(stream)

    async def _embed(self, rule: CacheRule, principal: Principal, text: str) -> np.ndarray:
        """The message's vector. Never truncated: two long messages sharing their start (a
        pasted document, then different questions) would look alike and one would get the
        other's answer. A message longer than the model reads is refused, so it is neither
        looked up nor stored semantically."""
        target = await self.directory.target(rule.embedding_model, principal, "embedding")
        deployment = target.deployments[0]
        provider = get_provider(deployment.provider, deployment.connection, self.settings)
        result = await provider.embed(deployment.upstream_name, [text])
        vector = np.asarray(result.vectors[0], dtype=np.float32)
        return vector / (np.linalg.norm(vector) or 1.0)

    async def _similar(
        self, project: str, scope: str, vector: np.ndarray, threshold: float, call: Call
    ) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        vectors = self._vectors.get((project, scope))
        if vectors is None:
            vectors = await loop.run_in_executor(None, self._load_vectors, project, scope)
            self._vectors[(project, scope)] = vectors
        best = vectors.best(vector)
        if best is None:
            return None
        key, score = best
        call.attributes["cache_similarity"] = round(score, 4)
        if score < threshold:
            return None
        hit = await loop.run_in_executor(None, self._get, project, key)
        if hit is not None:
            call.attributes["cache"] = "semantic-hit"
        return hit

    # Storage (runs on worker threads)

    def _get(self, project: str, key: str) -> dict[str, Any] | None:
        with self.db.session() as session:
            entry = session.get(CacheEntry, (project, key))
            if entry is None or entry.expires_at <= utcnow():
                return None
            return entry.response

    def _load_vectors(self, project: str, scope: str) -> _Vectors:
        vectors = _Vectors()
        with self.db.session() as session:
            rows = session.execute(
                select(CacheEntry.key, CacheEntry.embedding, CacheEntry.expires_at)
                .where(
                    CacheEntry.project_id == project,
                    CacheEntry.scope == scope,
                    CacheEntry.embedding.is_not(None),
                    CacheEntry.expires_at > utcnow(),
                )
                .order_by(CacheEntry.created_at)
            )
            for key, embedding, expires_at in rows:
                if embedding is None:  # stored as JSON null, which IS NOT NULL lets through
                    continue
                vectors.add(key, np.asarray(embedding, dtype=np.float32), expires_at.timestamp())
        return vectors

    def _put(self, entry: dict[str, Any]) -> None:
        with self.db.session() as session:
            existing = session.get(CacheEntry, (entry["project_id"], entry["key"]))
            if existing is not None:
                session.delete(existing)
                session.flush()
            session.add(CacheEntry(**entry))

    def store(self, entry: dict[str, Any], vector: np.ndarray | None) -> None:
        if vector is not None:
            vectors = self._vectors.setdefault((entry["project_id"], entry["scope"]), _Vectors())
            vectors.add(entry["key"], vector, entry["expires_at"].timestamp())
        self._storing.submit(self._put, entry)

    async def drain(self) -> None:
        await self._storing.drain()


@dataclass
class _Remember:
    cache: Cache
    rule: CacheRule
    project: str
    key: str
    scope: str
    text: str
    vector: np.ndarray | None
    alias: str

    def __call__(self, result: ChatResult) -> None:
        # Only whole text answers: a tool call asks the caller to act, and to call again.
        if result.finish_reason not in ("stop", "length") or result.tool_calls:
            return
        entry = {
            "project_id": self.project,
            "key": self.key,
            "alias": self.alias,
            "scope": self.scope,
            "prompt": self.text[:20000],
            "embedding": self.vector.tolist() if self.vector is not None else None,
            "response": {
                "content": result.content,
                "finish_reason": result.finish_reason,
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
            },
            "expires_at": utcnow() + timedelta(seconds=self.rule.ttl_seconds),
        }
        self.cache.store(entry, self.vector)
