"""Core figures: start-to-ready, first local answer, chat tokens/s, embedding texts/s."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
KEY = "ldk-bench-master"
PROMPT = "Write a short paragraph about the history of the bicycle."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(home: Path, port: int) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "LLMDECK_HOME": str(home), "LLMDECK_MASTER_KEY": KEY}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmdeck", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.HTTPError:
            time.sleep(0.02)
    raise RuntimeError("llmdeck up exited before it was ready")


def main() -> str:
    processes: list[subprocess.Popen] = []
    try:
        return _measure(processes)
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def _measure(processes: list[subprocess.Popen]) -> str:
    headers = {"Authorization": f"Bearer {KEY}"}
    with tempfile.TemporaryDirectory() as tmp:
        ready_times, first_answer = [], []
        for i in range(3):
            port = _free_port()
            process, ready = _start(Path(tmp) / f"home{i}", port)
            processes.append(process)
            ready_times.append(ready)
            t = time.perf_counter()
            httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers=headers,
                timeout=300,
                json={
                    "model": "smollm2-135m",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 1,
                },
            ).raise_for_status()
            first_answer.append(time.perf_counter() - t)
        base = f"http://127.0.0.1:{port}/v1"
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            response = httpx.post(
                f"{base}/chat/completions",
                headers=headers,
                timeout=300,
                json={
                    "model": "smollm2-135m",
                    "max_tokens": 128,
                    "messages": [{"role": "user", "content": PROMPT}],
                },
            )
            r = response.raise_for_status().json()
            rates.append(r["usage"]["completion_tokens"] / (time.perf_counter() - t))
        texts = [f"Sentence number {i} about retrieval, gateways and tracing." for i in range(256)]
        httpx.post(
            f"{base}/embeddings",
            headers=headers,
            json={"model": "minilm-l6", "input": texts[:8]},
            timeout=300,
        ).raise_for_status()
        embed_rates = []
        for _ in range(3):
            t = time.perf_counter()
            httpx.post(
                f"{base}/embeddings",
                headers=headers,
                timeout=300,
                json={"model": "minilm-l6", "input": texts},
            ).raise_for_status()
            embed_rates.append(len(texts) / (time.perf_counter() - t))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""## Core: start-up and bundled models

Command: `make bench` (or `.venv/bin/python -m bench core`). Date: {when}.
Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}.
Measured through the real server (`llmdeck up`, SQLite) with HTTP calls to `/v1`; the
converted chat model is already in the model cache (first conversion from GGUF: ~30 s, once).

| figure | value |
|---|---|
| start to ready (`/api/health` answers), median of 3 | {statistics.median(ready_times):.2f} s |
| first local answer after start (model load + 1 token), median of 3 | {statistics.median(first_answer):.2f} s |
| SmolLM2-135M chat, greedy, 128 new tokens, median of 3 | {statistics.median(rates):.1f} tokens/s |
| all-MiniLM-L6-v2 embeddings, batch of 256 short texts, median of 3 | {statistics.median(embed_rates):.0f} texts/s |
"""
