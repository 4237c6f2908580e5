"""A lean HTTP/1.1 load generator: N keep-alive connections, each sending requests back to back.

Kept minimal (raw asyncio streams, no HTTP library) so that on a small machine the load
generator takes as little CPU from the servers under test as possible.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @classmethod
    def pooled(cls, results: list[Result]) -> Result:
        """One result from several runs: every latency, error and second of them."""
        return cls(
            latencies=[x for r in results for x in r.latencies],
            errors=sum(r.errors for r in results),
            elapsed=sum(r.elapsed for r in results),
        )

    @property
    def throughput(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    @property
    def error_rate(self) -> float:
        total = self.count + self.errors
        return self.errors / total if total else 0.0


def request_bytes(port: int, path: str, body: bytes, key: str | None) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        # As httpx (the openai client's HTTP library) sends on every request.
        "Connection: keep-alive",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        return status, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return status, b"".join(parts)
            parts.append((await reader.readexactly(size + 2))[:-2])
    return status, await reader.read()


async def run(
    port: int,
    path: str,
    body: bytes,
    *,
    concurrency: int,
    duration: float,
    key: str | None = None,
    warmup: float = 0.5,
    expect: bytes = b"",
    spread: float = 0.0,
) -> Result:
    """Keep `concurrency` requests in flight for `duration` seconds (after a warm-up).

    With `spread`, the connections start evenly over that many seconds instead of all at
    once (see bench/gateway/run.py for why the model-like upstream needs it).
    """
    payload = request_bytes(port, path, body, key)
    result = Result()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def worker(index: int) -> None:
        reader = writer = None
        await asyncio.sleep(spread * index / concurrency)
        while time.perf_counter() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                sent = time.perf_counter()
                writer.write(payload)
                status, data = await _read_response(reader)
                done = time.perf_counter()
                ok = status == 200 and (not expect or expect in data)
                # Counted when it completes inside the window (at high concurrency a
                # request may have been sent during the warm-up).
                if measure_from <= done <= stop_at:
                    if ok:
                        result.latencies.append(done - sent)
                    else:
                        result.errors += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                if time.perf_counter() >= measure_from:
                    result.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.elapsed = duration
    return result


async def burst(
    port: int, path: str, body: bytes, *, count: int, key: str | None = None, expect: bytes = b""
) -> Result:
    """`count` requests on `count` connections, all at once (e.g. 500 concurrent streams)."""
    payload = request_bytes(port, path, body, key)
    result = Result()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sent = time.perf_counter()
            writer.write(payload)
            status, data = await _read_response(reader)
            writer.close()
            if status == 200 and (not expect or expect in data):
                result.latencies.append(time.perf_counter() - sent)
            else:
                result.errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    result.elapsed = time.perf_counter() - started
    return result
