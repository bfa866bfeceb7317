"""Shared helpers for the benchmarks: one JSON line per figure in bench/results/<bench>.jsonl."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

# SPIRAL_BENCH_RESULTS redirects the figures (the quick suite's smoke figures go to a temp dir)
RESULTS = Path(os.environ.get("SPIRAL_BENCH_RESULTS") or Path(__file__).parent / "results")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def commit() -> str:
    """HEAD's short hash, with "+dirty" when tracked files other than the results differ."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                      ":(top,exclude)bench/results")
        return head + ("+dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def record(bench: str, metric: str, value: float | None, unit: str) -> dict:
    """Append one figure to bench/results/<bench>.jsonl and return it (None: not reached)."""
    row = {"bench": bench, "metric": metric, "value": value, "unit": unit, "commit": commit(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{bench}.jsonl", "a") as f:
        f.write(json.dumps(row, allow_nan=False) + "\n")
    return row


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
