"""In-process OTLP ingestion cost: parse + map + store of the benchmark's protobuf batches.

`python -m bench.tracing.inprocess [SPANS] [--postgres URL] [--profile]` stores SPANS spans
(100-span GenAI batches, as `bench/tracing/run.py` sends) into a fresh SQLite file (or the
given PostgreSQL database) through the receiver's own functions, and prints spans/s by wall
clock and by CPU time (`time.process_time`), plus the CPU microseconds per span of each
step, as the median over batches (robust to other load on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.tracing.run import BATCH, _batches


def _steps():
    """(parse, map, store) functions of the receiver, old or new layout."""
    from llmdeck.tracing import genai, ingest, otlp_decode

    def parse(body: bytes):
        return otlp_decode.parse_protobuf(body)

    def map_(raw, project_id: str):
        return [genai.to_record(s, project_id=project_id, api_key_id=None) for s in raw]

    def store(db, records):
        return ingest.write_spans(db, records)

    return parse, map_, store


def measure(spans: int, database_url: str | None, profile: bool) -> dict[str, float]:
    from llmdeck.core.db import Database
    from llmdeck.core.settings import Settings
    from llmdeck.identity import service as identity

    home = Path(tempfile.mkdtemp(prefix="llmdeck-bench-ingest-"))
    kwargs: dict = {"home": home}
    if database_url:
        kwargs["database_url"] = database_url
    db = Database(Settings(**kwargs))
    db.migrate()
    with db.session() as session:
        project_id = identity.ensure_project(session, name="bench").id
    parse, map_, store = _steps()
    bodies = _batches(spans + 20 * BATCH, seed=int(time.time()) % 1000)
    for body in bodies[:20]:  # warm-up: compiled statements, imports
        store(db, map_(parse(body), project_id))
    work = bodies[20:]
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    steps: dict[str, list[float]] = {"parse": [], "map": [], "store": []}
    clock = time.process_time
    wall, cpu = time.perf_counter(), clock()
    for body in work:
        t0 = clock()
        raw = parse(body)
        t1 = clock()
        records = map_(raw, project_id)
        t2 = clock()
        store(db, records)
        t3 = clock()
        steps["parse"].append(t1 - t0)
        steps["map"].append(t2 - t1)
        steps["store"].append(t3 - t2)
    wall, cpu = time.perf_counter() - wall, clock() - cpu
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    n = len(work) * BATCH
    out = {"wall": n / wall, "cpu": n / cpu}
    for name, times in steps.items():
        out[name] = statistics.median(times) / BATCH * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spans", type=int, nargs="?", default=20000)
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [measure(args.spans, args.postgres, args.profile) for _ in range(args.repeat)]
    best = {
        k: (min if k in ("parse", "map", "store") else max)(r[k] for r in runs) for k in runs[0]
    }
    total = best["parse"] + best["map"] + best["store"]
    print(
        f"{args.spans} spans, best of {args.repeat}: {best['wall']:,.0f} spans/s wall, "
        f"{best['cpu']:,.0f} spans/s per CPU second; median CPU per span: parse "
        f"{best['parse']:.1f} us, map {best['map']:.1f} us, store {best['store']:.1f} us "
        f"(total {total:.1f} us = {1e6 / total:,.0f} spans/s)"
    )


if __name__ == "__main__":
    main()
