"""The SDK's exporter: finished spans are queued and sent in OTLP JSON batches from one thread.

The calling thread only appends to a deque; turning spans into JSON and sending them happens
here, off the caller's path. Refusals with 429/503 are retried after `Retry-After`; a
network failure is retried with backoff; nothing here ever raises into the caller.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import deque
from typing import Any

log = logging.getLogger("llmdeck.sdk")

MAX_QUEUE = 100_000  # spans held while the server is unreachable; beyond, the oldest go


class Exporter:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        project: str | None = None,
        batch_size: int = 100,
        interval: float = 0.5,
        max_queue: int = MAX_QUEUE,
        attempts: int = 8,
    ):
        self.endpoint = base_url.rstrip("/") + "/v1/traces"
        self.base_url = base_url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        if project:
            self.headers["X-Llmdeck-Project"] = project
        self.batch_size = batch_size
        self.interval = interval
        self.attempts = attempts
        self.dropped = 0
        self.sent = 0
        self._queue: deque[Any] = deque(maxlen=max_queue)
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._busy = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="llmdeck-sdk-export", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)

    def enqueue(self, span: Any) -> None:
        """Called on the user's thread: O(1), never blocks, never raises."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(span)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued so far; False if that took longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue and not self._busy:
                    return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def shutdown(self, timeout: float = 10.0) -> None:
        try:
            self.flush(timeout)
        finally:
            self._stop = True
            self._wake.set()

    def _run(self) -> None:
        import httpx  # only the export thread needs it

        with httpx.Client(timeout=10.0) as http:
            while not self._stop:
                self._wake.wait(self.interval)
                self._wake.clear()
                while self._queue:
                    with self._lock:
                        batch = [
                            self._queue.popleft()
                            for _ in range(min(self.batch_size, len(self._queue)))
                        ]
                        self._busy += 1
                    try:
                        self._send(http, batch)
                    except Exception:  # the SDK must keep running whatever happens
                        log.exception("llmdeck: exporting %d spans failed", len(batch))
                    finally:
                        with self._lock:
                            self._busy -= 1

    def _send(self, http: Any, batch: list[Any]) -> None:
        from llmdeck.sdk.otlp_json import encode

        body = json.dumps(encode(batch), default=str).encode()
        delay = 0.2
        for attempt in range(self.attempts):
            try:
                response = http.post(self.endpoint, content=body, headers=self.headers)
            except Exception as exc:  # network: the server may be restarting
                log.warning("llmdeck: sending spans failed (%s); retrying", exc)
            else:
                if response.status_code < 300:
                    self.sent += len(batch)
                    return
                if response.status_code not in (408, 429, 502, 503, 504):
                    log.error(
                        "llmdeck: the server refused %d spans: %s %s",
                        len(batch),
                        response.status_code,
                        response.text[:200],
                    )
                    self.dropped += len(batch)
                    return
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = float(retry_after)
            if self._stop:  # shut down while the server is unreachable: give up now
                break
            if attempt + 1 < self.attempts:
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.dropped += len(batch)
        log.error("llmdeck: dropped %d spans after %d attempts", len(batch), self.attempts)
