"""The monitoring loop: evaluates alert rules every minute and purges old data every hour."""

from __future__ import annotations

import logging
import threading
import time

from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from llmdeck.monitoring import alerts, retention

log = logging.getLogger(__name__)

ALERT_INTERVAL = 60.0
PURGE_INTERVAL = 3600.0


class MonitoringLoop:
    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmdeck-monitoring", daemon=True)

    def start(self) -> MonitoringLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        now = time.monotonic()
        next_purge, next_alert = now + 5, now + ALERT_INTERVAL  # purge soon after start
        while not self._stop.wait(max(0.0, min(next_purge, next_alert) - time.monotonic())):
            now = time.monotonic()
            try:
                if now >= next_purge:
                    next_purge = now + PURGE_INTERVAL
                    retention.purge(self.db)
                if now >= next_alert:
                    next_alert = now + ALERT_INTERVAL
                    alerts.evaluate(self.db, self.settings)
            except Exception:  # a bad rule or a locked database must not stop the loop
                log.exception("monitoring loop failed; trying again next round")
