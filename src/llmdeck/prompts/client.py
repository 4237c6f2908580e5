"""SDK: fetch prompts by name and label, with a client-side cache that expires after `ttl`.

    from llmdeck.prompts.client import PromptClient
    prompts = PromptClient("http://127.0.0.1:8000", api_key="ldk-...", ttl=60)
    messages = prompts.get("support", label="production").render(question="...")

A stale copy is served when the server cannot be reached, so an outage of the registry does
not take the application down with it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from llmdeck.prompts.rendering import render_messages


@dataclass(frozen=True)
class FetchedPrompt:
    name: str
    version: int
    labels: list[str]
    model: str | None
    params: dict[str, Any]
    messages: list[dict[str, Any]]
    variables: list[str]

    def render(self, **variables: Any) -> list[dict[str, Any]]:
        """The messages with these variables filled in (sandboxed, every variable required)."""
        return render_messages(self.messages, variables)


class PromptClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        ttl: float = 60.0,
        project: str | None = None,
        client: httpx.Client | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"}
        if project:
            headers["X-Llmdeck-Project"] = project
        self.http = client or httpx.Client(base_url=base_url, headers=headers, timeout=10)
        self.ttl = ttl
        self._cache: dict[tuple[str, str | None, int | None], tuple[float, FetchedPrompt]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def get(
        self, name: str, *, label: str | None = "production", version: int | None = None
    ) -> FetchedPrompt:
        key = (name, None if version else label, version)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        params: dict[str, Any] = {"version": version} if version else {}
        if label and not version:
            params["label"] = label
        try:
            response = self.http.get(f"/api/prompts/{name}", params=params)
        except httpx.TransportError:
            if hit is not None:
                return hit[1]
            raise
        if response.status_code >= 400:
            raise LookupError(response.json().get("error", {}).get("message", response.text))
        self.fetches += 1
        body = response.json()
        fetched = FetchedPrompt(
            name=body["name"],
            version=body["version"],
            labels=body["labels"],
            model=body["model"],
            params=body["params"],
            messages=body["messages"],
            variables=body["variables"],
        )
        with self._lock:
            self._cache[key] = (time.monotonic(), fetched)
        return fetched

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        self.http.close()
