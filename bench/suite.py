"""The whole benchmark suite, one command: every bench in turn, then a summary.

    python bench/suite.py [--quick]

Full: env speed, rollout and learner efficiency, the learner's log-prob memory, LoRA against full
fine-tuning on SmolLM2-135M (bench/lora.py: needs the prepared model), backends and
scaling, time to learn Kuhn Poker (stopped at exploitability 0.05 or after 15 minutes), then
how far supervised perfect play moves the embedded model's TicTacToe tactics: under 30 minutes
on this 2-core machine.
``--quick`` (about 2 minutes) runs each bench in its quick mode, the scaling sweep
left out and the Kuhn run stopped after 30 seconds: a check that every bench works, not figures
to quote, so they go to a temporary directory instead of bench/results/ (where the full suite
appends its figures, one JSON line each, as every bench does). bench/scale.py runs under
``$SPIRAL_VLLM_PYTHON`` when it is set, so that its actor=vllm rows are measured too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = [
    ("env_speed", []),
    ("rollout", []),
    ("learner", []),
    ("logprob_memory", []),
    ("lora", []),
    ("scale", []),
    ("learn_kuhn", ["--minutes", "15"]),
]
QUICK = [
    ("env_speed", ["--quick"]),
    ("rollout", ["--quick"]),
    ("learner", ["--quick"]),
    ("logprob_memory", ["--quick"]),
    ("lora", ["--quick"]),
    ("scale", ["--quick", "--no-scaling"]),
    ("learn_kuhn", ["--minutes", "0.5"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 2 minutes: a smoke run")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.quick:
        env["SPIRAL_BENCH_RESULTS"] = tempfile.mkdtemp(prefix="bench_quick_")
        print(f"quick run: figures go to {env['SPIRAL_BENCH_RESULTS']}")
    started, timings, failed = time.perf_counter(), [], []
    for name, flags in QUICK if args.quick else FULL:
        print(f"\n=== bench/{name}.py {' '.join(flags)}", flush=True)
        began = time.perf_counter()
        python = sys.executable
        if name == "scale":  # the vLLM rows need vLLM's interpreter (README: vLLM on CPU)
            python = os.environ.get("SPIRAL_VLLM_PYTHON") or python
        done = subprocess.run([python, str(HERE / f"{name}.py"), *flags], env=env)
        timings.append((name, time.perf_counter() - began, done.returncode))
        if done.returncode != 0:
            failed.append(name)
    print("\n=== suite")
    for name, seconds, code in timings:
        print(f"{name:<18} {seconds:7.1f} s  {'ok' if code == 0 else f'FAILED ({code})'}")
    print(f"{'total':<18} {time.perf_counter() - started:7.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
