"""The monitoring loop: alert rules, retention purges and scheduled drift reports.

One thread wakes for whichever is due next; the intervals are settings
(`LLMDECK_ALERT_INTERVAL`, `LLMDECK_PURGE_INTERVAL`, `LLMDECK_DRIFT_INTERVAL`). Drift reports
embed inputs through the gateway, which is async: they run on the server's event loop when
the loop was started from it (so they share its clients and caches), else on a loop of this
thread's own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from llmdeck.monitoring import alerts, drift, retention

log = logging.getLogger(__name__)

DRIFT_TIMEOUT = 600.0  # seconds one round of scheduled drift reports may take


class MonitoringLoop:
    def __init__(self, db: Database, settings: Settings, *, runtime: Any = None):
        self.db = db
        self.settings = settings
        # Scheduled drift needs the runtime's gateway (embeddings); without one it is off.
        self.runtime = runtime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmdeck-monitoring", daemon=True)

    def start(self) -> MonitoringLoop:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        settings = self.settings
        now = time.monotonic()
        drifting = self.runtime is not None and settings.drift_interval > 0
        due = {
            "purge": now + 5,  # soon after start
            "alert": now + settings.alert_interval,
            # A minute after start at most: the newest report's age decides whether one is
            # owed, so a restart does not repeat it.
            "drift": now + min(60.0, settings.drift_interval) if drifting else float("inf"),
        }
        while not self._stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            now = time.monotonic()
            try:
                if now >= due["purge"]:
                    due["purge"] = now + settings.purge_interval
                    retention.purge(self.db)
                if now >= due["drift"]:
                    # Checked again after a fraction of the interval: a project that crosses
                    # the traffic floor gets its report without waiting a whole interval.
                    due["drift"] = now + max(1.0, settings.drift_interval / 4)
                    self._drift()
                if time.monotonic() >= due["alert"]:
                    due["alert"] = time.monotonic() + settings.alert_interval
                    alerts.evaluate(self.db, settings)
            except Exception:  # a bad rule or a locked database must not stop the loop
                log.exception("monitoring loop failed; trying again next round")

    def _drift(self) -> None:
        work = drift.run_scheduled(self.runtime)
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            asyncio.run(work)
            return
        future = asyncio.run_coroutine_threadsafe(work, loop)
        deadline = time.monotonic() + DRIFT_TIMEOUT
        while not future.done():
            if self._stop.is_set() or time.monotonic() > deadline:
                future.cancel()
                return
            self._stop.wait(0.1)
        future.result()
