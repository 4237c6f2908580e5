"""Gateway overhead: the same load sent directly to a fast upstream, through a bare Python
forwarder (the floor), through llmdeck and through the LiteLLM proxy, in one run on this
machine; plus the semantic cache's quality.

LiteLLM runs from its own virtual environment (`.cache/bench-litellm-venv`, created here
with `pip install 'litellm[proxy]'` when missing). Both gateways run the same number of
worker processes, authenticate with a key, and call the same upstreams; access logs are
off for both.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from bench.gateway import load, record

REPO = Path(__file__).resolve().parents[2]
LITELLM_VENV = REPO / ".cache" / "bench-litellm-venv"
CONCURRENCY = (1, 16, 64, 256)
SECONDS = float(os.environ.get("BENCH_GATEWAY_SECONDS", "4"))
# Server processes for each gateway (the same for both): one per core by default.
WORKERS = int(os.environ.get("BENCH_GATEWAY_WORKERS", str(os.cpu_count() or 1)))
# A second upstream answers after this long, like a model (without using any CPU), so the
# added latency is measured where the gateway is not saturated by a zero-latency upstream.
MODEL_DELAY_MS = 100
MODEL_CONCURRENCY = (64, 256)
# Rounds of the model-like cells, peers interleaved: one 4 s cell's added p50 at c=64 went
# anywhere from +1.3 to +3.6 ms between runs on this shared 2-core machine.
MODEL_ROUNDS = 3
STREAMS = 500
LLMDECK_KEY = "ldk-bench-gateway-master"
LITELLM_KEY = "sk-bench-litellm"
BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
).encode()
MODEL_BODY = BODY.replace(b'"bench"', b'"bench-model-like"')
STREAM_BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say hello."}], "stream": True}
).encode()
QUIET_LOGS = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        "uvicorn.access": {"level": "WARNING"},
        "uvicorn.error": {"level": "WARNING"},
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def _litellm_binary() -> tuple[Path | None, str]:
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        return None, f"`pip install 'litellm[proxy]'` failed: {(exc.stderr or '')[-500:]}"
    return (binary, "") if binary.exists() else (None, "litellm installed no `litellm` command")


def _version(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def _rss_mib(process: subprocess.Popen) -> float:
    try:
        root = psutil.Process(process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except psutil.Error:
        return float("nan")


def main() -> str:
    processes: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _measure(Path(tmp), processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _measure(tmp: Path, processes: list[subprocess.Popen]) -> str:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    up_port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bench.gateway.upstream", str(up_port)], cwd=REPO, **quiet
    )
    processes.append(upstream)
    slow_port = _free_port()
    slow = subprocess.Popen(
        [sys.executable, "-m", "bench.gateway.upstream", str(slow_port), str(MODEL_DELAY_MS)],
        cwd=REPO,
        **quiet,
    )
    processes.append(slow)
    time.sleep(0.5)
    up_url = f"http://127.0.0.1:{up_port}/v1"
    slow_url = f"http://127.0.0.1:{slow_port}/v1"

    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLMDECK_")},
        "LLMDECK_HOME": str(tmp / "llmdeck"),
        "LLMDECK_MASTER_KEY": LLMDECK_KEY,
    }
    llmdeck = subprocess.Popen(
        [sys.executable, "-m", "llmdeck", "up", "--port", str(port), "--workers", str(WORKERS)],
        env=env,
        **quiet,
    )
    processes.append(llmdeck)
    _wait(f"http://127.0.0.1:{port}/api/health", llmdeck, 120)
    for alias, url in (("bench", up_url), ("bench-model-like", slow_url)):
        route = {"deployments": [{"name": "up", "upstream": "bench-model", "base_url": url}]}
        response = httpx.put(
            f"http://127.0.0.1:{port}/api/gateway/routes/{alias}",
            json=route,
            headers={"Authorization": f"Bearer {LLMDECK_KEY}"},
        )
        response.raise_for_status()

    floor_port = _free_port()
    floor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.gateway.floor",
            str(floor_port),
            str(up_port),
            str(slow_port),
        ],
        cwd=REPO,
        **quiet,
    )
    processes.append(floor)
    peers = [("direct", up_port, None), ("floor", floor_port, None), ("llmdeck", port, LLMDECK_KEY)]
    direct_slow = {"direct": slow_port}
    servers = {"llmdeck": llmdeck}
    litellm_binary, litellm_note = _litellm_binary()
    litellm_version = "-"
    if litellm_binary is not None:
        litellm_port = _free_port()
        config = tmp / "litellm.yaml"
        config.write_text(
            json.dumps(
                {
                    "model_list": [
                        {
                            "model_name": alias,
                            "litellm_params": {
                                "model": "openai/bench-model",
                                "api_base": url,
                                "api_key": "sk-bench-upstream",
                            },
                        }
                        for alias, url in (("bench", up_url), ("bench-model-like", slow_url))
                    ],
                    "general_settings": {"master_key": LITELLM_KEY},
                    "litellm_settings": {"telemetry": False},
                }
            )
        )
        log_config = tmp / "litellm-logging.json"
        log_config.write_text(json.dumps(QUIET_LOGS))
        litellm_env = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
        }
        litellm = subprocess.Popen(
            [
                str(litellm_binary),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(litellm_port),
                "--num_workers",
                str(WORKERS),
                "--log_config",
                str(log_config),
            ],
            env=litellm_env,
            **quiet,
        )
        processes.append(litellm)
        try:
            # Its workers take long to start; uvicorn restarts those not ready within 5 s.
            _wait(f"http://127.0.0.1:{litellm_port}/health/liveliness", litellm, 400)
            peers.append(("litellm", litellm_port, LITELLM_KEY))
            servers["litellm"] = litellm
            litellm_version = _version(LITELLM_VENV / "bin" / "python", "litellm")
        except RuntimeError as exc:
            litellm_note = f"the LiteLLM proxy did not start: {exc}"

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run

    results: dict[str, dict[int, load.Result]] = {}
    load_before = os.getloadavg()
    for name, peer_port, key in peers:
        results[name] = {}
        # Untimed warm-up: first calls pay for imports, connection set-up and caches.
        runner(
            load.run(peer_port, "/v1/chat/completions", BODY, concurrency=4, duration=2, key=key)
        )
        for concurrency in CONCURRENCY:
            results[name][concurrency] = runner(
                load.run(
                    peer_port,
                    "/v1/chat/completions",
                    BODY,
                    concurrency=concurrency,
                    duration=SECONDS,
                    key=key,
                    expect=b"Hello from the bench upstream.",
                )
            )
            print(f"  {name} c={concurrency}: {results[name][concurrency].throughput:.0f} req/s")
    # The same request to an upstream that takes MODEL_DELAY_MS to answer, in rounds.
    rounds: list[dict[str, dict[int, load.Result]]] = []
    for _ in range(MODEL_ROUNDS):
        rounds.append({})
        for name, peer_port, key in peers:
            target = direct_slow.get(name, peer_port)
            rounds[-1][name] = {}
            for concurrency in MODEL_CONCURRENCY:
                result = rounds[-1][name][concurrency] = runner(
                    load.run(
                        target,
                        "/v1/chat/completions",
                        BODY if name == "direct" else MODEL_BODY,
                        concurrency=concurrency,
                        duration=SECONDS,
                        key=key,
                        expect=b"Hello from the bench upstream.",
                        # Clients that start together stay together (each answer takes
                        # the same time): they would measure one burst of `concurrency`
                        # requests, over and over, rather than steady traffic.
                        spread=MODEL_DELAY_MS / 1000,
                    )
                )
                print(
                    f"  {name} c={concurrency}, {MODEL_DELAY_MS} ms upstream: "
                    f"{result.throughput:.0f} req/s"
                )
    model_like = {
        name: {c: load.Result.pooled([r[name][c] for r in rounds]) for c in MODEL_CONCURRENCY}
        for name in rounds[0]
    }
    streams = {
        name: runner(
            load.burst(
                peer_port,
                "/v1/chat/completions",
                STREAM_BODY,
                count=STREAMS,
                key=key,
                expect=b"[DONE]",
            )
        )
        for name, peer_port, key in peers
        if name != "floor"  # it forwards Content-Length answers only
    }
    memory = {name: _rss_mib(process) for name, process in servers.items()}
    busy = (load_before[0], os.getloadavg()[0])
    return _report(
        results, model_like, rounds, streams, memory, litellm_version, litellm_note, busy
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _added(seconds: float) -> str:
    """A difference in ms, signed (a noisy round can come out below direct)."""
    return f"{seconds * 1000:+.2f}"


def _report(
    results, model_like, rounds, streams, memory, litellm_version, litellm_note, busy
) -> str:
    names = list(results)
    lines = [
        "## Gateway overhead and semantic cache quality (bench/gateway)",
        "",
        f"Command: `make bench` (or `python -m bench gateway`); "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}. llmdeck {_version(Path(sys.executable), 'llmdeck')}"
        f", LiteLLM {litellm_version}.",
        "",
        "Setup: a fast OpenAI-compatible upstream (raw asyncio, fixed answer) on loopback; "
        "the same non-streamed chat request sent directly to it, through llmdeck "
        f"(`llmdeck up --workers {WORKERS}`, SQLite, route `bench` -> upstream, tracing on) and "
        f"through the LiteLLM proxy (`--num_workers {WORKERS}`, master key, no database), by a "
        "raw asyncio keep-alive load generator; every process shares the same cores. "
        "`floor` is the least a Python proxy adds here: raw asyncio on uvloop forwarding the "
        "bytes, with no HTTP library, checks or records (bench/gateway/floor.py). "
        f"Each cell: {SECONDS:g} s after a 0.5 s warm-up. Added latency = gateway minus "
        "direct at the same concurrency.",
        "",
        f"Machine load (1-minute load average) at the start and end of the measurements: "
        f"{busy[0]:.1f} and {busy[1]:.1f} on {os.cpu_count()} cores (the benchmark's own "
        "processes included); the peers were measured in the same run, one after another.",
        "",
    ]
    if litellm_note:
        lines += [f"**LiteLLM was not measured:** {litellm_note}", ""]
    lines += _latency_table(results, CONCURRENCY)
    lines += ["", "Highest throughput seen with under 0.1% errors (any concurrency above):", ""]
    for n in names:
        ok = [r.throughput for r in results[n].values() if r.error_rate < 0.001]
        lines.append(f"- {n}: {max(ok):.0f} req/s" if ok else f"- {n}: none under 0.1% errors")
    ratio = "not measured"
    if "litellm" in results:
        best = {
            n: max((r.throughput for r in results[n].values() if r.error_rate < 0.001), default=0)
            for n in ("llmdeck", "litellm")
        }
        if best["litellm"]:
            ratio = f"{best['llmdeck'] / best['litellm']:.1f}x"
            lines.append(f"- llmdeck / LiteLLM: {ratio}")
    lines += [
        "",
        f"The same request to an upstream that answers after {MODEL_DELAY_MS} ms (like a fast "
        "model; it uses no CPU while it waits), so that the gateway is not saturated by the "
        "benchmark itself. This is the added latency an application sees. The upstream's "
        "timers are precise to microseconds (uvloop's count whole milliseconds, which gathered "
        "answers into bursts), the clients start spread over the first "
        f"{MODEL_DELAY_MS} ms, and each cell pools {MODEL_ROUNDS} rounds of {SECONDS:g} s, "
        "the peers taking turns:",
        "",
    ]
    lines += _latency_table(model_like, MODEL_CONCURRENCY)
    lines += ["", "Added latency p50 / p99 in each round (ms):", ""]
    for n in [n for n in model_like if n != "direct"]:
        for c in MODEL_CONCURRENCY:
            each = [
                f"{_added(r[n][c].percentile(0.5) - r['direct'][c].percentile(0.5))} / "
                f"{_added(r[n][c].percentile(0.99) - r['direct'][c].percentile(0.99))}"
                for r in rounds
            ]
            lines.append(f"- {n}, c={c}: " + "; ".join(each))
    lines += ["", *_record(model_like, ratio, busy)]
    lines += ["", f"{STREAMS} concurrent streams opened at once (each to `[DONE]`):", ""]
    for n, r in streams.items():
        lines.append(
            f"- {n}: {r.count} completed, {r.errors} failed, all done in {r.elapsed:.2f} s "
            f"(p50 {_ms(r.percentile(0.5))} ms, p99 {_ms(r.percentile(0.99))} ms)"
        )
    lines += ["", "Resident memory after the run (process and children):", ""]
    lines += [f"- {n}: {mib:.0f} MiB" for n, mib in memory.items()]
    lines += ["", *_semantic_cache_quality()]
    return "\n".join(lines) + "\n"


def _record(model_like, ratio: str, busy: tuple[float, float]) -> list[str]:
    """This run's headline (c=64, slow upstream) added to those of the runs before it."""
    direct = model_like["direct"][64]

    def added(name: str) -> str:
        r = model_like[name][64]
        return (
            f"{_added(r.percentile(0.5) - direct.percentile(0.5))} / "
            f"{_added(r.percentile(0.99) - direct.percentile(0.99))}"
        )

    root = Path(__file__).resolve().parents[2]
    output = root / "BENCHMARKS.md"
    rows = record.previous_rows(output.read_text() if output.exists() else "")
    rows.append(
        record.row(
            f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
            record.code_version(root),
            added("llmdeck"),
            added("floor"),
            ratio,
            f"{busy[0]:.1f} / {busy[1]:.1f}",
        )
    )
    return [
        f"Every recorded run's added latency at concurrency 64 against the {MODEL_DELAY_MS} "
        "ms upstream, newest first (`code`: the commit measured; runs from before the record "
        "began, of older code, are in this file's git history):",
        "",
        *record.render(rows),
    ]


def _latency_table(results: dict[str, dict[int, load.Result]], concurrency) -> list[str]:
    """Latency, added latency (against `direct` at the same concurrency) and throughput."""
    names = list(results)
    direct = results["direct"]
    lines = [
        "| concurrency | "
        + " | ".join(f"{n} p50 / p99 ms" for n in names)
        + " | "
        + " | ".join(f"{n} req/s" for n in names)
        + " | errors |",
        "|" + "---|" * (2 * len(names) + 2),
    ]
    for c in concurrency:
        cells = []
        for n in names:
            r = results[n][c]
            cell = f"{_ms(r.percentile(0.5))} / {_ms(r.percentile(0.99))}"
            if n != "direct":
                cell += (
                    f" ({_added(r.percentile(0.5) - direct[c].percentile(0.5))} / "
                    f"{_added(r.percentile(0.99) - direct[c].percentile(0.99))})"
                )
            cells.append(cell)
        rates = [f"{results[n][c].throughput:.0f}" for n in names]
        errors = ", ".join(f"{n} {results[n][c].errors}" for n in names)
        lines.append(f"| {c} | " + " | ".join(cells + rates) + f" | {errors} |")
    return lines


def _semantic_cache_quality() -> list[str]:
    """Hit and false-hit rates of the semantic cache's rule at several thresholds."""
    import numpy as np

    from bench.gateway.paraphrases import CASES
    from llmdeck.providers import local_models

    model = local_models.embedding_model()
    bases = model.encode([c[0] for c in CASES], normalize_embeddings=True)
    paraphrases = model.encode([c[1] for c in CASES], normalize_embeddings=True)
    misses = model.encode([c[2] for c in CASES], normalize_embeddings=True)
    para_scores, miss_scores = paraphrases @ bases.T, misses @ bases.T
    lines = [
        "### Semantic cache quality",
        "",
        f"{len(CASES)} cached prompts, each asked again as a paraphrase (should hit) and as a "
        "near-miss (same words, different question: a hit would be a wrong answer); all-MiniLM-"
        "L6-v2 embeddings, the cache's rule (best cosine similarity over every cached prompt at "
        "or above the threshold). `tests/test_gateway_cache.py` checks 0.9 end to end.",
        "",
        "| threshold | hit rate (paraphrases) | false-hit rate (near-misses) |",
        "|---|---|---|",
    ]
    for threshold in (0.8, 0.85, 0.9, 0.92, 0.95, 0.97):
        right = np.mean(
            [s.max() >= threshold and s.argmax() == i for i, s in enumerate(para_scores)]
        )
        wrong = np.mean([s.max() >= threshold for s in miss_scores])
        lines.append(f"| {threshold} | {right:.0%} | {wrong:.0%} |")
    return lines
