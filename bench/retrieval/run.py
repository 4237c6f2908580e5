"""`python -m bench retrieval`: Cranfield quality and index speed, as a BENCHMARKS.md section."""

from __future__ import annotations

import time

from bench.retrieval import common, quality, speed

# Computed by the dataset's curator (shared/datasets/cranfield/SOURCE.md): plain BM25,
# title+text, lower-cased [a-z0-9]+ tokens, no stemming; graded nDCG@10 with linear gains.
BASELINES = [
    ("BM25 k1=0.9 b=0.4", 0.3226),
    ("BM25 k1=1.2 b=0.75", 0.3418),
    ("BM25 k1=1.2 b=0.75, stop words removed", 0.3595),
]


def quality_section(results: list[dict]) -> str:
    lines = [
        "### Quality: Cranfield (1400 abstracts, 225 queries, graded judgments)",
        "",
        "Documents are ingested through the real pipeline (JSONL rows, recursive chunking at "
        "180 tokens, bundled MiniLM embeddings through the gateway); a query fetches "
        f"{quality.DEPTH} chunks, folded into documents by their best chunk. nDCG@10 uses the "
        "graded judgments as linear gains, like the baselines.",
        "",
        "| backend | method | nDCG@10 | recall@10 | search p50 (ms, excl. query embedding) |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        for mode in quality.MODES:
            m = result["modes"][mode]
            lines.append(
                f"| {result['backend']} | {mode} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | "
                f"{m['p50_ms']:.1f} |"
            )
    for name, value in BASELINES:
        lines.append(f"| baseline (SOURCE.md) | {name} | {value:.4f} | - | - |")
    lines.append("")
    first = results[0]
    lines.append(
        f"Ingestion (SQLite, through the gateway): {first['documents']} documents, "
        f"{first['chunks']} chunks in {first['ingest_s']:.1f} s "
        f"({first['chunks'] / first['ingest_s']:.1f} chunks/s, parsing + embedding + index). "
        "PostgreSQL is loaded with the same chunks and vectors (not embedded twice); its "
        "index insert rate is in the speed table below."
    )
    return "\n".join(lines) + "\n"


def speed_section(data: dict) -> str:
    lines = [
        "### Speed: vector search at 10k and 100k chunks",
        "",
        "Vectors: MiniLM embeddings of the Cranfield abstracts, scaled up by mixing each copy "
        f"with its own random direction; {data['queries']} real Cranfield query embeddings. "
        "Latency is the index call alone (query embedding excluded); recall@10 is against "
        "exact search over the same vectors. Chroma runs in its own venv on the same machine "
        "in the same run, with the same vectors.",
        "",
        "| engine | chunks | insert (chunks/s) | index build (s) | p50 (ms) | p95 (ms) | "
        "recall@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "sqlite": "llmdeck SQLite (exact, numpy)",
        "postgres": "llmdeck PostgreSQL (pgvector HNSW)",
        "chroma": "Chroma",
    }
    for engine in ("sqlite", "postgres", "chroma"):
        entry = data[engine]
        if "skipped" in entry:
            lines.append(f"| {names[engine]} | - | skipped: {entry['skipped']} | | | | |")
            continue
        for size, row in entry.items():
            build = f"{row['index_build_s']:.1f}" if "index_build_s" in row else "-"
            label = names[engine] + (f" {row['version']}" if "version" in row else "")
            lines.append(
                f"| {label} | {int(size):,} | {row['insert_per_s']:,.0f} | {build} | "
                f"{row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['recall@10']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> str:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        "## Retrieval (knowledge bases)",
        "",
        f"Command: `make bench` (or `python -m bench retrieval`). Run {started} on "
        f"{common.machine()}; the machine is shared, so absolute times are noisy.",
        "",
    ]
    if common.cranfield_available():
        parts.append(quality_section(quality.evaluate_both()))
    else:
        parts.append(f"Quality skipped: {common.CRANFIELD} is missing.\n")
        return "\n".join(parts)
    parts.append(speed_section(speed.measure()))
    return "\n".join(parts)
