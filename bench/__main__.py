"""Run benchmarks and write their sections into BENCHMARKS.md.

Each benchmark is a package `bench/<name>/` whose `run.py` has `main() -> str`, returning
its Markdown section (command, date, machine, figures, and every peer measured in the same
run). `python -m bench` runs all of them; `python -m bench core gateway` runs only those.
A section replaces the previous one of the same name; the others are kept.
"""

from __future__ import annotations

import importlib
import re
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUTPUT = ROOT.parent / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Written by `make bench` (`python -m bench [NAME ...]`); each section says how it was "
    "measured. Numbers are from the machine named in the section.\n"
)


def available() -> list[str]:
    return sorted(p.parent.name for p in ROOT.glob("*/run.py"))


def sections(text: str) -> dict[str, str]:
    """Existing sections by name, from `<!-- bench:NAME -->` markers."""
    found = re.findall(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->", text, re.S)
    return dict(found)


def main(names: list[str]) -> int:
    chosen = names or available()
    unknown = set(chosen) - set(available())
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have: {', '.join(available())}")
        return 2
    fresh: dict[str, str] = {}
    failed = []
    for name in chosen:
        print(f"== bench {name}", flush=True)
        try:
            fresh[name] = importlib.import_module(f"bench.{name}.run").main().strip() + "\n"
        except Exception:
            traceback.print_exc()
            failed.append(name)
    # Read the file only now: another benchmark run may have written it meanwhile.
    kept = {**(sections(OUTPUT.read_text()) if OUTPUT.exists() else {}), **fresh}
    body = "".join(f"\n<!-- bench:{n} -->\n{kept[n]}<!-- /bench:{n} -->\n" for n in sorted(kept))
    OUTPUT.write_text(HEADER + body)
    print(f"wrote {OUTPUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
