"""Rate limits and spend budgets, enforced atomically in the database every process shares.

Before a call, its estimated tokens and cost are reserved on every counter that applies
(requests, tokens and dollars; per key and per project) in one transaction: each counter
moves by a conditional `UPDATE ... SET value = value + :n WHERE value + :n <= :limit`, and
if any refuses, the whole reservation rolls back and the call gets 429. That statement is
atomic on SQLite (one writer at a time) and on PostgreSQL (the row lock makes a concurrent
update re-check the condition), so concurrent calls cannot overspend. After the call the
reservation is reconciled with the real usage, off the response path.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from llmdeck.catalog import service as catalog
from llmdeck.core.db import Database, utcnow
from llmdeck.core.errors import RateLimited
from llmdeck.core.settings import Settings
from llmdeck.gateway.directory import Directory, LimitRule
from llmdeck.gateway.models import Counter
from llmdeck.gateway.offpath import OffPath
from llmdeck.gateway.pipeline import Call, Next, Outcome, close_stream
from llmdeck.providers.base import ChatChunk, ChatResult, EmbeddingResult

log = logging.getLogger(__name__)
PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Check:
    key: str
    amount: float
    limit: float
    resets_at: datetime
    # The 429's message, from the counter's value before this call and the seconds until
    # it resets: what is already used decides what is true to say.
    refusal: Callable[[float, int], str]
    code: str = "rate_limit_exceeded"


def period_window(period: str, now: datetime) -> tuple[datetime, datetime]:
    """Start and end of the budget period holding `now` (UTC)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def plan(
    rules: list[LimitRule],
    *,
    tokens: int,
    cost: float,
    now: datetime,
    basis: str = "",
    advice: str = "",
) -> list[Check]:
    """The counter moves a call needs, one per limit that applies. `basis` says how `cost`
    was estimated and `advice` how to make it smaller, for a budget's refusal."""
    minute = now.replace(second=0, microsecond=0)
    minute_end = minute + timedelta(minutes=1)
    stamp = minute.strftime("%Y%m%d%H%M")
    checks = []
    for rule in rules:
        who = f"{rule.scope}:{rule.scope_id}"
        label = "This project" if rule.scope == "project" else "This API key"
        if rule.rpm is not None:
            checks.append(
                Check(
                    f"rpm:{who}:{stamp}",
                    1,
                    rule.rpm,
                    minute_end,
                    lambda used, seconds, rpm=rule.rpm, label=label: (
                        f"{label} may make {rpm} requests per minute. Try again in {seconds} s."
                    ),
                )
            )
        if rule.tpm is not None:
            checks.append(
                Check(
                    f"tpm:{who}:{stamp}",
                    tokens,
                    rule.tpm,
                    minute_end,
                    lambda used, seconds, tpm=rule.tpm, label=label: (
                        f"{label} may use {tpm} tokens per minute; this request needs about "
                        f"{tokens}. Try again in {seconds} s."
                    ),
                )
            )
        if rule.budget is not None:
            start, end = period_window(rule.budget_period, now)
            checks.append(
                Check(
                    f"spend:{who}:{rule.budget_period}:{start:%Y%m%d}",
                    cost,
                    rule.budget,
                    end,
                    _budget_refusal(label, rule, cost, basis, advice),
                    code="budget_exceeded",
                )
            )
    return checks


def _budget_refusal(
    label: str, rule: LimitRule, cost: float, basis: str, advice: str
) -> Callable[[float, int], str]:
    budget = f"${rule.budget:g} per {rule.budget_period}"

    def refusal(spent: float, seconds: int) -> str:
        left = (rule.budget or 0.0) - spent
        if left <= 1e-12:
            return f"{label} has spent its budget of {budget}. Try again in {seconds} s."
        # Not spent: this call's reservation (its whole max_tokens) is what does not fit.
        how = f" ({basis})" if basis else ""
        return (
            f"This request's estimated cost, {_dollars(cost)}{how}, does not fit in the "
            f"{_dollars(left)} left of {label[0].lower()}{label[1:]}'s budget of {budget}. "
            f"{advice or 'Try a smaller request'}, or try again in {seconds} s when the "
            "budget resets."
        )

    return refusal


def _dollars(value: float) -> str:
    if value >= 1:
        return f"${value:,.2f}"
    if 0 < value < 0.000001:
        return "under $0.000001"
    return "$" + f"{value:.6f}".rstrip("0").rstrip(".")


class Ledger:
    """The shared counters."""

    PRUNE_EVERY = timedelta(minutes=5)

    def __init__(self, db: Database):
        self.db = db
        self._pruned_at = utcnow()

    def _insert(self):
        dialect = self.db.engine.dialect.name
        return (postgresql if dialect == "postgresql" else sqlite).insert(Counter)

    def reserve(self, checks: list[Check]) -> None:
        """Move every counter, or none and raise RateLimited."""
        now = utcnow()
        # One order for every transaction, so two of them never wait on each other's rows.
        ordered = sorted(checks, key=lambda c: c.key)
        with self.db.engine.begin() as conn:
            for check in ordered:
                conn.execute(
                    self._insert()
                    .values(key=check.key, value=0.0, expires_at=check.resets_at)
                    .on_conflict_do_nothing(index_elements=["key"])
                )
                moved = conn.execute(
                    update(Counter)
                    .where(Counter.key == check.key, Counter.value + check.amount <= check.limit)
                    .values(value=Counter.value + check.amount)
                ).rowcount
                if not moved:
                    seconds = max(1, math.ceil((check.resets_at - now).total_seconds()))
                    used = conn.scalar(select(Counter.value).where(Counter.key == check.key))
                    raise RateLimited(
                        check.refusal(used or 0.0, seconds),
                        retry_after=seconds,
                        code=check.code,
                    )
        if now - self._pruned_at > self.PRUNE_EVERY:
            self._pruned_at = now
            with self.db.engine.begin() as conn:
                conn.execute(delete(Counter).where(Counter.expires_at < now - timedelta(days=1)))

    def adjust(self, moves: list[tuple[str, float]]) -> None:
        """Reconcile reservations with what was used (amounts may be negative)."""
        moves = sorted((k, v) for k, v in moves if v)
        if not moves:
            return
        with self.db.engine.begin() as conn:
            for key, amount in moves:
                conn.execute(
                    update(Counter).where(Counter.key == key).values(value=Counter.value + amount)
                )

    def value(self, key_prefix: str) -> float:
        """The sum of counters whose key starts with `key_prefix` and are still current."""
        with self.db.session() as session:
            rows = session.scalars(
                select(Counter.value).where(
                    Counter.key.startswith(key_prefix), Counter.expires_at > utcnow()
                )
            )
            return float(sum(rows))


def estimate_tokens(call: Call, reserve_output: int) -> tuple[int, int]:
    """Input tokens (about 4 characters each) and the output tokens to reserve."""
    if call.kind == "embedding":
        return sum(len(t) for t in call.inputs or []) // 4 + 1, 0
    chars = 0
    for message in call.chat.messages:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        chars += len(content) + 16
    return chars // 4 + 1, call.chat.max_tokens or reserve_output


def _estimate_basis(call: Call, tokens_in: int, tokens_out: int) -> tuple[str, str]:
    """How a call's reserved cost was estimated, and what would make it smaller."""
    if call.kind == "embedding":
        return f"about {tokens_in} input tokens", "Send less input"
    if call.chat.max_tokens is not None:
        basis = f"about {tokens_in} input tokens plus max_tokens={tokens_out} output tokens"
        return basis, "Lower max_tokens"
    basis = (
        f"about {tokens_in} input tokens plus {tokens_out} output tokens reserved, "
        "as max_tokens is not set"
    )
    return basis, "Set a lower max_tokens"


class Limits:
    """Pipeline stage: refuse with 429 past a limit; reserve before, reconcile after."""

    def __init__(self, db: Database, directory: Directory, settings: Settings):
        self.ledger = Ledger(db)
        self.directory = directory
        self.settings = settings
        self._reconciling = OffPath("reconciling a reservation")

    async def __call__(self, call: Call, next: Next) -> Outcome:
        snap = await self.directory.snapshot()
        if not snap.limits:
            return await next(call)
        rules = [
            rule
            for rule in (
                snap.limits.get(("project", call.principal.project_id)),
                snap.limits.get(("key", call.principal.api_key_id or "")),
            )
            if rule is not None
        ]
        if not rules:
            return await next(call)
        tokens_in, tokens_out = estimate_tokens(call, self.settings.gateway_reserve_output_tokens)
        tokens = tokens_in + tokens_out
        cost = catalog.cost(call.model, tokens_in, tokens_out)
        basis, advice = _estimate_basis(call, tokens_in, tokens_out)
        checks = plan(rules, tokens=tokens, cost=cost, now=utcnow(), basis=basis, advice=advice)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.ledger.reserve, checks)
        call.attributes["limits"] = {"reserved_tokens": tokens, "reserved_cost": cost}
        settle = _Settlement(self, checks, tokens, cost, call)
        try:
            outcome = await next(call)
        except BaseException:
            settle(0, 0)
            raise
        if isinstance(outcome, ChatResult):
            settle(*_used(outcome.input_tokens, outcome.output_tokens, tokens_in, outcome.content))
            return outcome
        if isinstance(outcome, EmbeddingResult):
            settle(outcome.input_tokens or tokens_in, 0)
            return outcome
        return self._watch(outcome, settle, tokens_in)

    async def _watch(
        self, stream: AsyncIterator[ChatChunk], settle: _Settlement, tokens_in: int
    ) -> AsyncIterator[ChatChunk]:
        parts: list[str] = []
        last = ChatChunk()
        try:
            async for chunk in stream:
                parts.append(chunk.delta)
                last = chunk
                yield chunk
        finally:
            # A stream cut short was still paid for up to where it stopped.
            settle(*_used(last.input_tokens, last.output_tokens, tokens_in, "".join(parts)))
            await close_stream(stream)

    def schedule(self, moves: list[tuple[str, float]]) -> None:
        self._reconciling.submit(self.ledger.adjust, moves)

    async def drain(self) -> None:
        """Wait for every pending reconciliation (tests, shutdown)."""
        await self._reconciling.drain()


def _used(input_tokens: int | None, output_tokens: int | None, estimate_in: int, text: str):
    if input_tokens or output_tokens:
        return input_tokens or 0, output_tokens or 0
    # The upstream reported no usage (or the stream broke first): count what we saw.
    return (estimate_in, len(text) // 4) if text else (0, 0)


class _Settlement:
    """Reconciles one reservation once, with the tokens the call really used."""

    def __init__(self, limits: Limits, checks: list[Check], tokens: int, cost: float, call: Call):
        self.limits, self.checks, self.tokens, self.cost, self.call = (
            limits,
            checks,
            tokens,
            cost,
            call,
        )
        self.done = False

    def __call__(self, input_tokens: int, output_tokens: int) -> None:
        if self.done:
            return
        self.done = True
        if str(self.call.attributes.get("cache", "")).endswith("hit"):
            input_tokens = output_tokens = 0  # answered from the cache: nothing was spent
        used_cost = catalog.cost(self.call.model, input_tokens, output_tokens)
        moves = []
        for check in self.checks:
            if check.key.startswith("tpm:"):
                moves.append((check.key, input_tokens + output_tokens - self.tokens))
            elif check.key.startswith("spend:"):
                moves.append((check.key, used_cost - self.cost))
        self.limits.schedule(moves)
