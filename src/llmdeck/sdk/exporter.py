"""The SDK's exporter: finished spans are queued and sent in OTLP JSON batches from one thread.

The calling thread only appends to a deque; turning spans into JSON and sending them happens
here, off the caller's path. Refusals with 429/503 are retried after `Retry-After`; a
network failure is retried with backoff; nothing here ever raises into the caller.

Whatever the export thread needs is imported, and its HTTP client made, on the thread that
calls `configure()`, before the export thread starts: a module imported by a second thread
while the app imports it too (httpx, which `openai` imports right after `configure()`) can
be handed half-initialised to one of them, and the app failed at start-up now and then.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import deque
from typing import Any

from llmdeck.sdk.otlp_json import encode

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
        self.sent = 0
        # Dropped spans, counted by the one thread that drops them (no lost updates).
        self._overflowed = 0  # the caller's thread: the queue was full
        self._refused = 0  # the export thread: refused by the server, or given up on
        self._dropped_at_flush = 0
        self._queue: deque[Any] = deque(maxlen=max_queue)
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._busy = 0
        self._lock = threading.Lock()
        self._http = _http_client()
        self._thread = threading.Thread(target=self._run, name="llmdeck-sdk-export", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)

    @property
    def dropped(self) -> int:
        """Spans lost so far: the queue overflowed, or the server refused them."""
        return self._overflowed + self._refused

    def enqueue(self, span: Any) -> None:
        """Called on the user's thread: O(1), never blocks, never raises."""
        if len(self._queue) == self._queue.maxlen:
            self._overflowed += 1
        self._queue.append(span)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued so far; False if that took longer than `timeout` or if a
        span was dropped since the last flush (refused by the server, given up on, or pushed
        out of a full queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue and not self._busy:
                    dropped = self.dropped
                    lost, self._dropped_at_flush = dropped - self._dropped_at_flush, dropped
                    return lost == 0
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
        with self._http as http:
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
                    self._refused += len(batch)
                    return
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = float(retry_after)
            if self._stop:  # shut down while the server is unreachable: give up now
                break
            if attempt + 1 < self.attempts:
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._refused += len(batch)
        log.error("llmdeck: dropped %d spans after %d attempts", len(batch), self.attempts)


def _http_client() -> Any:
    """The export thread's HTTP client, made on the caller's thread (see the docstring)."""
    import httpx  # here, not at the top: `import llmdeck` stays light until configure()

    http = httpx.Client(timeout=10.0)  # imports httpcore and loads the certificates
    "127.0.0.1".encode("idna")  # the codec a connection's host name goes through (a lazy import)
    return http
