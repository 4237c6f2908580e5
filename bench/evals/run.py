"""Evaluation figures: experiment throughput (concurrency 64, deterministic metrics) against a
fast OpenAI-compatible upstream on loopback, prompt fetch latency, and the faithfulness
metric's accuracy/AUROC on a HaluEval QA sample with the bundled models."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO.parent / "shared" / "datasets"
ITEMS = int(os.environ.get("BENCH_EVAL_ITEMS", "2000"))
HALU_EMBED = int(os.environ.get("BENCH_HALU_EMBED", "200"))
HALU_JUDGE = int(os.environ.get("BENCH_HALU_JUDGE", "24"))
METRICS = [
    "exact_match",
    "contains",
    {"name": "regex", "pattern": "upstream"},
    "rouge_l",
    "json_valid",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("bench upstream did not start")


def main() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMDECK_HOME"] = str(Path(tmp) / "home")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        port = _free_port()
        upstream = subprocess.Popen(
            [sys.executable, "-m", "bench.gateway.upstream", str(port)], cwd=REPO
        )
        try:
            _wait_port(port)
            return asyncio.run(_measure(port))
        finally:
            upstream.terminate()
            upstream.wait()


async def _measure(port: int) -> str:
    from llmdeck.catalog import service as catalog
    from llmdeck.catalog.schemas import ModelCreate
    from llmdeck.core.settings import Settings
    from llmdeck.evals import datasets, service
    from llmdeck.evals.runner import run_experiment
    from llmdeck.evals.schemas import ExperimentCreate
    from llmdeck.identity import service as identity
    from llmdeck.identity.schemas import Principal
    from llmdeck.prompts import service as prompts
    from llmdeck.prompts.schemas import Message, PromptVersionCreate
    from llmdeck.runtime import Runtime

    # The bundled models share the machine's cores: allow slow answers in the faithfulness part.
    settings = Settings(gateway_attempt_timeout=300, gateway_deadline=600)
    runtime = Runtime.start(settings)
    try:
        with runtime.db.session() as session:
            project = identity.get_project_by_name_or_raise(session, name="default")
            principal = Principal(project_id=project.id, project_name=project.name, role="admin")
            catalog.create(
                session,
                settings=settings,
                data=ModelCreate(
                    alias="bench",
                    upstream_name="bench-model",
                    base_url=f"http://127.0.0.1:{port}/v1",
                ),
            )
            prompts.create_version(
                session,
                project_id=project.id,
                name="bench",
                data=PromptVersionCreate(
                    messages=[Message(role="user", content="Answer: {{ question }}")],
                    model="bench",
                    labels=["production"],
                ),
                role="admin",
            )
            items = [
                {
                    "input": {"question": f"question {i}"},
                    "expected": "Hello from the bench upstream.",
                }
                for i in range(ITEMS)
            ]
            datasets.create(session, project_id=project.id, name="bench", items=items)
        rows = []
        for label, target in (
            ("model", {"type": "model", "model": "bench"}),
            ("prompt (prompt:NAME@LABEL stage)", {"type": "prompt", "prompt": "bench@production"}),
        ):
            with runtime.db.session() as session:
                experiment = service.create(
                    session,
                    project_id=project.id,
                    data=ExperimentCreate(
                        dataset="bench", target=target, metrics=METRICS, concurrency=64
                    ),
                )
            started = time.perf_counter()
            done = await run_experiment(runtime, principal, experiment.id)
            elapsed = time.perf_counter() - started
            assert done.status == "done" and done.summary["errors"] == 0, done.summary
            rows.append(
                f"| {label} | {ITEMS} | 64 | {len(METRICS)} | {elapsed:.2f} s | "
                f"**{ITEMS / elapsed:.0f} items/s** | {done.summary['metrics']['exact_match']:.2f} |"
            )
        fetch = await _fetch_latency(runtime, project.id)
        faithfulness = await _faithfulness(runtime, principal)
    finally:
        await runtime.stop()
    load = os.getloadavg()
    return "\n".join(
        [
            "## Evaluation",
            "",
            f"`python -m bench evals` · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load[0]:.1f} · SQLite",
            "",
            "### Experiment throughput",
            "",
            "An experiment over a dataset, every item sent through the gateway pipeline (record, "
            "resolve, limits, cache, dispatch) to a fast OpenAI-compatible upstream on loopback "
            "(`bench/gateway/upstream.py`), scored by deterministic metrics "
            "(exact_match, contains, regex, rouge_l, json_valid), each result stored as it "
            "finishes (resumable). Target: at least 200 items/s.",
            "",
            "| target | items | concurrency | metrics | wall time | throughput | exact_match |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "### Prompt fetch",
            "",
            fetch,
            "",
            "### Faithfulness on HaluEval QA",
            "",
            faithfulness,
        ]
    )


async def _fetch_latency(runtime, project_id: str) -> str:
    from bench.evals import fetch as http_fetch
    from llmdeck.prompts import service as prompts
    from llmdeck.prompts.cache import PromptCache

    def p(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * q))]

    uncached = []
    with runtime.db.session() as session:
        for _ in range(400):
            started = time.perf_counter()
            prompts.fetch(session, project_id=project_id, name="bench", label="production")
            uncached.append((time.perf_counter() - started) * 1000)

    async def from_cache() -> list[float]:
        cache, timings = PromptCache(runtime.db), []
        for i in range(4000):
            if i % 1000 == 0:
                cache.clear()  # a few misses in the sample (a change, a new process)
            started = time.perf_counter()
            await cache.fetch(project_id, "bench", "production", None)
            timings.append((time.perf_counter() - started) * 1000)
        return timings

    cached = await from_cache()
    # Each on its own home, event loop and (for HTTP) server process.
    asgi = await asyncio.to_thread(http_fetch.measure_asgi)
    http = await asyncio.to_thread(http_fetch.measure)
    return (
        "Server work of `GET /api/prompts/{name}?label=production`: resolving the label and "
        "shaping the answer (what a miss costs), and the route's per-process cache "
        "(`prompts/cache.py`: serialized answers, checked against the project's prompt change "
        "counter at most every 0.25 s, a change elsewhere seen within 0.5 s):\n\n"
        "| path | fetches | p50 | p99 |\n|---|---|---|---|\n"
        f"| uncached (three indexed queries) | 400 | {p(uncached, 0.5):.3f} ms "
        f"| {p(uncached, 0.99):.3f} ms |\n"
        f"| cached (4 misses included) | 4000 | {p(cached, 0.5):.4f} ms "
        f"| {p(cached, 0.99):.4f} ms |\n\n"
        + http_fetch.asgi_table(asgi)
        + "\n\n"
        + http_fetch.table(http)
        + "\n\nThe SDK (`llmdeck.prompts.client.PromptClient`) also caches client-side with "
        "a TTL, so an application pays a round trip at most once per TTL."
    )


def _halueval(n: int, seed: int) -> list[dict]:
    path = DATASETS / "halueval" / "qa_data.jsonl.gz"
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(2000), f, strict=False)]
    rng = random.Random(seed)
    rng.shuffle(rows)
    out = []
    for i, row in enumerate(rows[:n]):
        hallucinated = i % 2 == 1  # balanced: chance is 50%
        out.append(
            {
                "input": {"question": row["question"], "context": row["knowledge"]},
                "answer": row["hallucinated_answer" if hallucinated else "right_answer"],
                "grounded": not hallucinated,
            }
        )
    return out


def _auroc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


JUDGE_ALIAS = "bench-judge"
JUDGE_ITEMS = int(os.environ.get("BENCH_JUDGE_ITEMS", "200"))


def register_judge(runtime, env: dict[str, str] | None = None) -> str | None:
    """Register the stronger OpenAI-compatible judge named by `BENCH_JUDGE_BASE_URL`,
    `BENCH_JUDGE_MODEL` (and `BENCH_JUDGE_API_KEY`) as the catalog model `bench-judge`, so
    that its calls go through the gateway like every other; None when none is configured."""
    from llmdeck.catalog import service as catalog
    from llmdeck.catalog.schemas import ModelCreate

    env = os.environ if env is None else env
    base_url, model = env.get("BENCH_JUDGE_BASE_URL"), env.get("BENCH_JUDGE_MODEL")
    if not base_url or not model:
        return None
    with runtime.db.session() as session:
        if catalog.get_by_alias(session, alias=JUDGE_ALIAS) is None:
            catalog.create(
                session,
                settings=runtime.settings,
                data=ModelCreate(
                    alias=JUDGE_ALIAS,
                    upstream_name=model,
                    base_url=base_url,
                    api_key=env.get("BENCH_JUDGE_API_KEY") or None,
                    description="The faithfulness benchmark's judge (BENCH_JUDGE_*).",
                ),
            )
    return JUDGE_ALIAS


async def score_faithfulness(
    runtime, principal, rows: list[dict], *, method: str, model: str
) -> dict[str, float]:
    """Accuracy (score >= 0.5 counts as grounded) and AUROC of one faithfulness setting."""
    from llmdeck.evals.metrics import Sample
    from llmdeck.evals.metrics.rag import Faithfulness

    metric = Faithfulness(method=method, model=model, max_sentences=2)
    scores, labels = [], []
    started = time.perf_counter()
    for row in rows:
        sample = Sample(
            input=row["input"], output=row["answer"], runtime=runtime, principal=principal
        )
        result = await metric.score(sample)
        scores.append(result.value if result.value is not None else 0.0)
        labels.append(row["grounded"])
    accuracy = sum((s >= 0.5) == y for s, y in zip(scores, labels, strict=True)) / len(rows)
    return {
        "accuracy": accuracy,
        "auroc": _auroc(scores, labels),
        "seconds": time.perf_counter() - started,
    }


async def _faithfulness(runtime, principal) -> str:
    if not (DATASETS / "halueval" / "qa_data.jsonl.gz").exists():
        return f"Skipped: {DATASETS / 'halueval'} is absent."
    lines = [
        "Balanced sample of HaluEval QA (`../shared/datasets/halueval/qa_data.jsonl.gz`, first "
        "2,000 records shuffled with seed 7): each item shows either the right or the "
        "hallucinated answer with its `knowledge` passage as the context. A score ≥ 0.5 counts "
        "as *grounded*; AUROC uses the raw score (0.5 = chance).",
        "",
        "| method | model | items | accuracy | AUROC | time |",
        "|---|---|---|---|---|---|",
    ]
    judge = register_judge(runtime)
    settings = [
        ("embedding", "minilm-l6", HALU_EMBED),
        ("judge (yes/no per sentence)", "smollm2-135m", HALU_JUDGE),
    ]
    if judge:
        upstream = os.environ["BENCH_JUDGE_MODEL"]
        settings.append((f"judge (yes/no per sentence), {upstream}", judge, JUDGE_ITEMS))
    for method, model, n in settings:
        if n == 0:
            continue
        rows = _halueval(n, seed=7)
        got = await score_faithfulness(
            runtime, principal, rows, method=method.split()[0], model=model
        )
        lines.append(
            f"| {method} | {model} | {len(rows)} | {got['accuracy']:.2f} | {got['auroc']:.2f} "
            f"| {got['seconds']:.0f} s |"
        )
    lines += [
        "",
        "Honest reading: the bundled 135M chat model is close to chance as a yes/no judge; the "
        "embedding method mostly measures topical overlap, which hallucinated HaluEval answers "
        "often share with the passage.",
        "",
    ]
    if judge:
        lines.append(
            f"The stronger judge is `{os.environ['BENCH_JUDGE_MODEL']}` at "
            f"`{os.environ['BENCH_JUDGE_BASE_URL']}`, registered as the catalog model "
            f"`{JUDGE_ALIAS}` and called through the gateway like any model."
        )
    else:
        lines.append(
            "No stronger judge was configured for this run (set `BENCH_JUDGE_BASE_URL`, "
            "`BENCH_JUDGE_MODEL` and, if needed, `BENCH_JUDGE_API_KEY` to any OpenAI-compatible "
            "server; `BENCH_JUDGE_ITEMS` items, default 200), so no figure for one is given here. "
            "In an eval config the same judge is `{name: faithfulness, model: <alias>}`."
        )
    return "\n".join(lines)
