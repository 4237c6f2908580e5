"""Runs inside Chroma's own venv: build a collection from vectors, time queries.

Usage: python chroma_side.py WORKDIR  (reads vectors.npy, queries.npy, exact.npy; prints JSON)
"""

import json
import sys
import tempfile
import time

import chromadb
import numpy as np

work = sys.argv[1]
vectors = np.load(f"{work}/vectors.npy")
queries = np.load(f"{work}/queries.npy")
exact = np.load(f"{work}/exact.npy")
client = chromadb.PersistentClient(path=tempfile.mkdtemp(prefix="chroma-bench-"))
collection = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
started = time.perf_counter()
batch = 5000
for start in range(0, len(vectors), batch):
    part = vectors[start : start + batch]
    collection.add(ids=[str(i) for i in range(start, start + len(part))], embeddings=part)
add_s = time.perf_counter() - started
for q in queries[:5]:  # warm up
    collection.query(query_embeddings=[q], n_results=10)
latencies, recalls = [], []
for q, truth in zip(queries, exact, strict=True):
    t = time.perf_counter()
    result = collection.query(query_embeddings=[q], n_results=10, include=[])
    latencies.append((time.perf_counter() - t) * 1000)
    found = {int(i) for i in result["ids"][0]}
    recalls.append(len(found & set(truth.tolist())) / 10)
print(
    json.dumps(
        {
            "version": chromadb.__version__,
            "add_s": add_s,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95)),
            "recall@10": float(np.mean(recalls)),
        }
    )
)
