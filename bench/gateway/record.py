"""Every gateway run's headline figures, kept in BENCHMARKS.md from one run to the next.

One run's added p50 at concurrency 64 moves with how busy the shared host is (from +0.3 to
+1.2 ms for the same code, the do-nothing floor proxy moving with it), so a single run says
little about the goal. The section keeps each run's row, the code it measured, and what the
rows say together; the rest of the section describes the latest run only.
"""

from __future__ import annotations

import re
import statistics
import subprocess
from pathlib import Path

GOAL_P50_MS = 1.0
GOAL_P99_MS = 5.0
START = "<!-- record -->"
END = "<!-- /record -->"
HEADER = [
    "| run (UTC) | code | llmdeck added p50 / p99 ms | floor added p50 / p99 ms | "
    "llmdeck / LiteLLM req/s | load avg start / end |",
    "|---|---|---|---|---|---|",
]
_ADDED = re.compile(r"([+-]\d+\.\d+) / ([+-]\d+\.\d+)")


def previous_rows(markdown: str) -> list[str]:
    """The record's rows in a BENCHMARKS.md text (none before the first recorded run)."""
    start, end = markdown.find(START), markdown.find(END)
    if start < 0 or end < start:
        return []
    lines = markdown[start + len(START) : end].strip().splitlines()
    return [line for line in lines if line.startswith("| 20")]


def code_version(root: Path) -> str:
    """The commit measured, marked when the working tree has changes to the code."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "src", "bench")
    return f"{commit} + changes" if changed else commit


def row(when: str, code: str, llmdeck: str, floor: str, ratio: str, load: str) -> str:
    return f"| {when} | {code} | {llmdeck} | {floor} | {ratio} | {load} |"


def render(rows: list[str]) -> list[str]:
    """The record as Markdown, newest run first, with what the runs say together."""
    rows = sorted(rows, reverse=True)
    figures = [m for m in (_ADDED.search(r.split("|")[3]) for r in rows) if m]
    p50s = [float(m.group(1)) for m in figures]
    p99s = [float(m.group(2)) for m in figures]
    lines = [START, *HEADER, *rows, END, ""]
    if p50s:
        met = sum(p < GOAL_P50_MS for p in p50s)
        tail = sum(p < GOAL_P99_MS for p in p99s)
        lines.append(
            f"Over these {len(p50s)} runs (concurrency 64, {GOAL_P50_MS:g} ms goal for the "
            f"added p50, {GOAL_P99_MS:g} ms for the p99): the p50 goal was met in {met}, "
            f"the p99 goal in {tail}; the median run added "
            f"{statistics.median(p50s):+.2f} ms at p50 and {statistics.median(p99s):+.2f} ms "
            "at p99."
        )
    return lines
