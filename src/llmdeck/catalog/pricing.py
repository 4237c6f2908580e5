"""Prices of models by the names other apps call them, for spans that arrive without a cost.

A span received over OTLP names its model as the app saw it: a catalog alias, or the upstream
model name (`gpt-4o-mini`). The price book maps both to the catalog's per-million-token prices,
a project's own models before the shared ones and an alias before an upstream name. It is
read in one query and kept `ttl` seconds; catalog changes committed in this process clear it.
"""

from __future__ import annotations

import threading
import time
import weakref

from sqlalchemy import select

from llmdeck.catalog.models import Model
from llmdeck.core.db import Database, after_commit_changing

Prices = tuple[float, float]  # dollars per million input tokens, per million output tokens

_books: weakref.WeakSet[PriceBook] = weakref.WeakSet()


class PriceBook:
    """Per-million-token prices by (project, model name); `None` project: every project."""

    def __init__(self, db: Database, ttl: float):
        self.db = db
        self.ttl = ttl
        self._prices: dict[tuple[str | None, str], Prices] | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()
        _books.add(self)

    def clear(self) -> None:
        self._prices = None

    def _table(self) -> dict[tuple[str | None, str], Prices]:
        prices = self._prices
        if prices is not None and time.monotonic() - self._loaded <= self.ttl:
            return prices
        with self._lock:
            if self._prices is None or time.monotonic() - self._loaded > self.ttl:
                self._prices, self._loaded = self._load(), time.monotonic()
            return self._prices

    def _load(self) -> dict[tuple[str | None, str], Prices]:
        with self.db.session() as session:
            rows = session.execute(
                select(
                    Model.project_id,
                    Model.alias,
                    Model.upstream_name,
                    Model.input_price_per_mtok,
                    Model.output_price_per_mtok,
                ).order_by(Model.created_at.desc())
            ).all()
        table: dict[tuple[str | None, str], Prices] = {}
        # Upstream names first (the oldest model of a name last, so it wins), aliases over them.
        for project_id, _, upstream, price_in, price_out in rows:
            if upstream:
                table[(project_id, upstream)] = (price_in or 0.0, price_out or 0.0)
        for project_id, alias, _, price_in, price_out in rows:
            table[(project_id, alias)] = (price_in or 0.0, price_out or 0.0)
        return table

    def prices(self, project_id: str, *names: str | None) -> Prices | None:
        """Prices of the first name the catalog knows, for this project."""
        table = self._table()
        for name in names:
            if name:
                found = table.get((project_id, name)) or table.get((None, name))
                if found is not None:
                    return found
        return None


def cost(prices: Prices, input_tokens: int | None, output_tokens: int | None) -> float:
    """Dollars for these tokens at these prices (a missing count is zero tokens)."""
    return ((input_tokens or 0) * prices[0] + (output_tokens or 0) * prices[1]) / 1_000_000


def _clear_books() -> None:
    for book in list(_books):
        book.clear()


after_commit_changing((Model,), _clear_books)
