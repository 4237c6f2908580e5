"""Choosing a deployment: circuit breakers, load balancing, backoff and what is worth retrying.

All of this state is per process (breakers and in-flight counts describe what this process
sees of each upstream), and none of it does I/O.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from llmdeck.core.errors import (
    InvalidRequest,
    LLMDeckError,
    PermissionDenied,
    RateLimited,
    UpstreamRejected,
)
from llmdeck.gateway.directory import CATALOG_PREFIX, Deployment, Target

Verdict = Literal["fatal", "skip", "retry"]


@dataclass
class Breaker:
    """Closed -> open after `failures` in a row -> half-open after `cooldown` (one probe)."""

    failures: int
    cooldown: float
    consecutive: int = 0
    opened_at: float | None = None
    probing: bool = False

    @property
    def state(self) -> str:
        return self.state_at()

    def state_at(self, now: float | None = None) -> str:
        """closed; open (calls fail fast); half_open (a probe may go, or one is going)."""
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.probing or self.probe_in(now) == 0 else "open"

    def allow(self, now: float | None = None) -> bool:
        """Whether a call may go through now (a half-open breaker lets exactly one probe)."""
        if self.opened_at is None:
            return True
        now = time.monotonic() if now is None else now
        if self.probing or now - self.opened_at < self.cooldown:
            return False
        self.probing = True
        return True

    def probe_in(self, now: float | None = None) -> float:
        """Seconds until this breaker lets a call through (0: now, or a probe is deciding)."""
        if self.opened_at is None or self.probing:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, self.opened_at + self.cooldown - now)

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.probing = False

    def failure(self, now: float | None = None) -> None:
        self.consecutive += 1
        if self.probing or self.consecutive >= self.failures:
            self.opened_at = time.monotonic() if now is None else now
        self.probing = False

    def release(self) -> None:
        """A probe ended without a verdict (cancelled): let the next call probe."""
        self.probing = False


@dataclass(frozen=True)
class Health:
    deployment: Deployment
    state: str
    consecutive_failures: int
    in_flight: int


class Balancer:
    """Picks deployments by weight or by fewest calls in flight, skipping open breakers."""

    def __init__(self, *, failures: int, cooldown: float):
        self.failures = failures
        self.cooldown = cooldown
        self.breakers: dict[str, Breaker] = {}
        self.in_flight: dict[str, int] = {}
        self.seen: dict[str, Deployment] = {}  # by id: what each breaker belongs to

    def breaker(self, deployment: Deployment) -> Breaker:
        breaker = self.breakers.get(deployment.id)
        if breaker is None:
            breaker = self.breakers[deployment.id] = Breaker(self.failures, self.cooldown)
            self.seen[deployment.id] = deployment
        return breaker

    def health(self, routed: Iterable[Deployment]) -> list[Health]:
        """Each deployment of the routes as now configured (`routed`), and each catalog
        model this process has called; deployments of replaced routes are left out."""
        deployments = {d.id: d for d in routed}
        for key, deployment in self.seen.items():
            if key.startswith(CATALOG_PREFIX):
                deployments.setdefault(key, deployment)
        now = time.monotonic()
        rows = []
        for deployment in deployments.values():
            breaker = self.breakers.get(deployment.id)
            rows.append(
                Health(
                    deployment=deployment,
                    state=breaker.state_at(now) if breaker else "closed",
                    consecutive_failures=breaker.consecutive if breaker else 0,
                    in_flight=self.in_flight.get(deployment.id, 0),
                )
            )
        return sorted(rows, key=lambda h: (h.deployment.alias, h.deployment.name))

    def pick(
        self, target: Target, tried: set[str], refused: frozenset[str] | set[str] = frozenset()
    ) -> Deployment | None:
        """The next deployment to try: untried ones first, then any whose breaker allows;
        never one in `refused`."""
        if len(target.deployments) == 1:
            only = target.deployments[0]
            if only.id in refused or not self.breaker(only).allow():
                return None
            return only
        candidates = [d for d in self._order(target) if d.id not in refused]
        candidates.sort(key=lambda d: d.id in tried)  # stable: keeps the order within groups
        for deployment in candidates:
            if self.breaker(deployment).allow():
                return deployment
        return None

    def _order(self, target: Target) -> list[Deployment]:
        deployments = list(target.deployments)
        if len(deployments) == 1:
            return deployments
        if target.strategy == "least_busy":
            random.shuffle(deployments)  # ties go to a random one
            return sorted(deployments, key=lambda d: self.in_flight.get(d.id, 0) / d.weight)
        # Weighted random order without replacement (Efraimidis-Spirakis keys).
        return sorted(deployments, key=lambda d: -(random.random() ** (1.0 / max(d.weight, 1e-9))))

    def started(self, deployment: Deployment) -> None:
        self.in_flight[deployment.id] = self.in_flight.get(deployment.id, 0) + 1

    def ended(self, deployment: Deployment) -> None:
        self.in_flight[deployment.id] = self.in_flight.get(deployment.id, 1) - 1


def classify(error: LLMDeckError) -> Verdict:
    """fatal: the request itself is wrong (400, content policy), no other try can help;
    skip: this deployment refuses us (401/403), try another without counting it as down;
    retry: anything else (429, 5xx, timeouts, broken connections)."""
    if isinstance(error, InvalidRequest | PermissionDenied):
        return "fatal"
    if isinstance(error, UpstreamRejected):
        return "skip"
    return "retry"


def backoff(retry: int, *, base: float, cap: float, error: LLMDeckError | None = None) -> float:
    """Seconds to wait before retry number `retry` (0-based): capped exponential with full
    jitter, or the upstream's Retry-After when it sent one."""
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return max(0.0, error.retry_after)
    return random.uniform(0, min(cap, base * 2**retry))
