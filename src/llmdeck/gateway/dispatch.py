"""The terminal stage: call a deployment, retrying and failing over within the deadline.

For each alias (the requested one, then its fallbacks in order) up to `retries + 1`
attempts go to deployments picked by the balancer; each attempt runs under the attempt
timeout, all of them under the call's deadline. A stream fails over only until its first
chunk arrives: from then on bytes may have reached the client, and a failure ends the
stream with an error (the HTTP layer turns it into an explicit error event).
Every attempt is noted in `call.attributes["attempts"]`, which the trace records.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from llmdeck.core import timeouts
from llmdeck.core.errors import CircuitOpen, LLMDeckError, UpstreamError, UpstreamTimeout
from llmdeck.core.settings import Settings
from llmdeck.gateway.directory import Deployment, Directory, Target
from llmdeck.gateway.pipeline import Call, Outcome, close_stream
from llmdeck.gateway.routing import Balancer, backoff, classify
from llmdeck.providers.base import ChatChunk
from llmdeck.providers.service import get_provider


class Dispatch:
    def __init__(self, settings: Settings, directory: Directory, balancer: Balancer):
        self.settings = settings
        self.directory = directory
        self.balancer = balancer

    async def __call__(self, call: Call) -> Outcome:
        target: Target = call.target
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.deadline
        attempts: list[dict[str, Any]] = call.attributes.setdefault("attempts", [])
        requested, targets = target, [target]
        errors: list[LLMDeckError] = []
        for index, alias in enumerate((target.alias, *target.fallbacks)):
            if index:
                try:
                    target = await self.directory.target(alias, call.principal, call.kind)
                except LLMDeckError as exc:
                    attempts.append({"alias": alias, "deployment": None, "error": exc.message})
                    continue
                call.attributes["fallback"] = alias
                targets.append(target)
            try:
                return await self._alias(call, target, deadline, attempts)
            except LLMDeckError as exc:
                if classify(exc) == "fatal" or loop.time() >= deadline:
                    raise
                errors.append(exc)
        failures = [e for e in errors if not isinstance(e, CircuitOpen)]
        if failures:
            raise failures[-1]  # a real answer from an upstream says more than a breaker
        if errors:
            raise self._circuit_open(requested, targets)
        raise UpstreamError(f"No deployment could serve {call.alias!r}.")

    def _circuit_open(self, requested: Target, targets: list[Target]) -> CircuitOpen:
        """Every breaker on the way is open: name the model the caller asked for, and say
        when the first of them lets a probe through."""
        now = time.monotonic()
        wait = min(self.balancer.breaker(d).probe_in(now) for t in targets for d in t.deployments)
        seconds = max(1, math.ceil(wait))
        alias = requested.alias
        if requested.fallbacks:
            what = (
                f"The model {alias!r} is unavailable: its deployments and its fallbacks "
                f"({', '.join(requested.fallbacks)}) are all failing"
            )
        else:
            what = f"The model {alias!r} is unavailable: every deployment of it is failing"
        return CircuitOpen(
            f"{what}, so calls fail fast until one recovers. Try again in {seconds} s.",
            retry_after=seconds,
        )

    async def _alias(
        self, call: Call, target: Target, deadline: float, attempts: list[dict[str, Any]]
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        tried: set[str] = set()
        refused: set[str] = set()  # deployments that rejected our credentials
        error: LLMDeckError | None = None
        for retry in range(target.retries + 1):
            deployment = self.balancer.pick(target, tried, refused)
            if deployment is None and error is not None and len(refused) == len(tried):
                break  # every deployment refused us: nothing left to try
            if deployment is None:
                note = {"alias": target.alias, "deployment": None, "status": 503}
                attempts.append({**note, "error": "circuit open"})
                if error is not None:
                    raise error
                raise CircuitOpen(
                    f"Every deployment of {target.alias!r} is failing; "
                    "calls fail fast until one recovers. Try again shortly."
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                return await self._attempt(
                    call, target, deployment, min(target.attempt_timeout, remaining), attempts
                )
            except LLMDeckError as exc:
                error = exc
            verdict = classify(error)
            if verdict == "fatal":
                raise error
            tried.add(deployment.id)
            if verdict == "skip":
                refused.add(deployment.id)
            if retry == target.retries:
                break
            untried = any(d.id not in tried for d in target.deployments)
            # Another deployment is fresh: go there at once. The same one: wait first.
            delay = 0.0 if untried and verdict == "retry" else self._delay(retry, error)
            if loop.time() + delay >= deadline:
                break
            if delay:
                await asyncio.sleep(delay)
        if error is None:
            raise UpstreamTimeout(f"No attempt at {target.alias!r} fitted in the deadline.")
        raise error

    def _delay(self, retry: int, error: LLMDeckError) -> float:
        return backoff(
            retry,
            base=self.settings.gateway_backoff_base,
            cap=self.settings.gateway_backoff_max,
            error=error,
        )

    async def _attempt(
        self,
        call: Call,
        target: Target,
        deployment: Deployment,
        timeout: float | None,
        attempts: list[dict[str, Any]],
    ) -> Outcome:
        note: dict[str, Any] = {"alias": target.alias, "deployment": deployment.name}
        attempts.append(note)
        breaker = self.balancer.breaker(deployment)
        provider = get_provider(deployment.provider, deployment.connection, self.settings)
        if provider.runs_locally:
            # Local work is bounded by max_tokens; time spent queued for the CPU is no hang,
            # and cutting it off (or opening the breaker) would fail a healthy model.
            timeout = None
        started = time.perf_counter()
        stream: AsyncIterator[ChatChunk] | None = None
        first: ChatChunk | None = None
        answered = False
        self.balancer.started(deployment)
        try:
            async with timeouts.timeout(timeout):
                if call.kind == "embedding":
                    # Passed only when asked for: a plug-in provider may not take them.
                    options: dict[str, Any] = {}
                    if call.dimensions:
                        options["dimensions"] = call.dimensions
                    if call.options.get("truncate"):
                        options["truncate"] = True
                    outcome = await provider.embed(
                        deployment.upstream_name, call.inputs or [], **options
                    )
                    if outcome.truncated:
                        call.attributes["embedding.truncated"] = len(outcome.truncated)
                else:
                    # The request names what this attempt calls (only providers read it).
                    request = call.chat
                    request.model = deployment.upstream_name
                    request.context_window = target.model.context_window
                    if call.stream:
                        stream = provider.stream_chat(request)
                        first = await anext(stream, None)
                    else:
                        outcome = await provider.chat(request)
            answered = True
        except TimeoutError:
            error = UpstreamTimeout(
                f"Deployment {deployment.name!r} did not answer within {timeout:.3g} s."
            )
            note.update(status=error.status_code, error=error.message, latency_ms=_ms(started))
            breaker.failure()
            raise error from None
        except LLMDeckError as exc:
            note.update(status=exc.status_code, error=exc.message, latency_ms=_ms(started))
            if classify(exc) == "retry":
                breaker.failure()
            else:
                breaker.release()
            raise
        except BaseException:
            note.update(status=499, error="cancelled", latency_ms=_ms(started))
            breaker.release()
            raise
        finally:
            if not answered:
                self.balancer.ended(deployment)
                if stream is not None:
                    with contextlib.suppress(Exception):
                        await stream.aclose()
        breaker.success()
        note.update(status=200, latency_ms=_ms(started))
        call.attributes["deployment"] = deployment.name
        call.model = target.model
        if stream is None:
            self.balancer.ended(deployment)
            return outcome
        return self._relay(stream, first, deployment, note, timeout)

    async def _relay(
        self,
        stream: AsyncIterator[ChatChunk],
        first: ChatChunk | None,
        deployment: Deployment,
        note: dict[str, Any],
        idle_timeout: float | None,
    ) -> AsyncIterator[ChatChunk]:
        """The rest of a stream after its first chunk; a failure now ends it with an error."""
        try:
            if first is not None:
                yield first
            while True:
                try:
                    async with timeouts.timeout(idle_timeout):
                        chunk = await anext(stream, None)
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"Deployment {deployment.name!r} stalled mid-stream for "
                        f"{idle_timeout:.3g} s."
                    ) from None
                if chunk is None:
                    return
                yield chunk
        except LLMDeckError as exc:
            note.update(error=f"mid-stream: {exc.message}", status=exc.status_code)
            self.balancer.breaker(deployment).failure()
            raise
        finally:
            self.balancer.ended(deployment)
            await close_stream(stream)


def _ms(started: float) -> float:
    """Milliseconds since `started`, to 0.01 (round(x, 2) formats a decimal string)."""
    return int((time.perf_counter() - started) * 100_000 + 0.5) / 100
