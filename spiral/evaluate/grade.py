"""Grade model answers to math problems with math-verify, never hanging on a bad answer.

How one answer is read and compared is `spiral.evaluate.answers`; this module grades them under
time limits, in batches, and from the command line.

Time limits. math-verify's own timeouts use ``signal.alarm``: whole seconds only (a fractional
limit makes it fail silently on every answer), one alarm per parse and per comparison (so an
answer can take several times the limit), a timeout indistinguishable from a wrong answer, and
off the main thread every call raises ``ValueError``. So its timeouts stay off and each answer
gets one deadline of its own instead:

- in the main thread, `check_answer` arms ``signal.setitimer`` for ``timeout_s`` and the alarm
  raises `GradingTimeout`, a ``BaseException`` that the libraries' ``except Exception`` blocks let
  through; the answer is graded `Verdict.TIMEOUT`;
- `check_many` grades in worker processes (spawned, so safe from any thread), each using that
  same deadline; a worker stuck where signals cannot reach it (inside C code) is killed after
  ``2 * timeout_s + 1`` seconds and replaced, and a worker that dies grades its answer wrong.
  Off the main thread `check_answer` goes through one such worker.

A timeout grades as wrong and is counted. ``python -m spiral.evaluate.grade predictions.jsonl``
grades ``{"id", "prediction", "answer"}`` rows and prints one JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from spiral.evaluate.answers import (
    DEFAULT_TIMEOUT_S,
    GradingTimeout,
    Verdict,
    can_use_alarm,
    check_here,
    gold_latex,
    load_math_verify,
    prediction_latex,
    validate_timeout,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GradingTimeout",
    "Verdict",
    "check_answer",
    "check_many",
    "gold_latex",
    "grade_answer",
    "grade_many",
    "length_stats",
    "main",
    "prediction_latex",
    "read_predictions",
    "summarize",
    "summarize_verdicts",
]

logger = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 8
STARTUP_TIMEOUT_S = 120.0  # a worker must import math-verify and report ready within this


# --------------------------------------------------------------------------- one answer


def check_answer(prediction: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Grade one response against a gold answer: correct, wrong, or timeout (never raises).

    In the main thread it runs here; elsewhere it starts a worker process (about a second), so
    grade batches with `check_many`.
    """
    timeout_s = validate_timeout(timeout_s)
    if can_use_alarm():
        return check_here(prediction, gold, timeout_s)
    return check_many([(prediction, gold)], timeout_s, workers=1)[0]


def grade_answer(prediction: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``prediction`` (a full model response) answers ``gold``; a timeout is False."""
    return check_answer(prediction, gold, timeout_s) is Verdict.CORRECT


# --------------------------------------------------------------------------- many answers


def _worker_main(conn: Connection, timeout_s: float) -> None:
    """Worker process: grade ``(index, prediction, gold)`` tasks until told to stop (None)."""
    load_math_verify()
    conn.send("ready")
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        while (task := conn.recv()) is not None:
            index, prediction, gold = task
            conn.send((index, check_here(prediction, gold, timeout_s).value))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    deadline: float  # start-up deadline until ready, then the running task's hard deadline
    ready: bool = False
    task: int | None = None


class _GradingPool:
    """Worker processes that grade one answer at a time, each under a hard deadline."""

    def __init__(self, size: int, timeout_s: float, target: Callable[..., None] = _worker_main):
        self._context = multiprocessing.get_context("spawn")
        self._timeout_s = timeout_s
        self._hard_limit_s = 2 * timeout_s + 1.0
        self._target = target
        self._size = size
        self._workers: list[_Worker] = []

    def _start(self) -> _Worker:
        conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=self._target, args=(child_conn, self._timeout_s), daemon=True
        )
        process.start()
        child_conn.close()
        return _Worker(process, conn, deadline=time.monotonic() + STARTUP_TIMEOUT_S)

    def run(self, tasks: Sequence[tuple[Any, Any]]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        left = len(tasks)
        try:
            self._workers = [self._start() for _ in range(self._size)]
            while left:
                self._assign(pending, tasks)
                left -= self._collect(verdicts)
                left -= self._expire(verdicts)
        finally:
            self.close()
        return [v for v in verdicts if v is not None]

    def _assign(self, pending: deque[int], tasks: Sequence[tuple[Any, Any]]) -> None:
        for worker in self._workers:
            if not (pending and worker.ready and worker.task is None):
                continue
            index = pending.popleft()
            try:
                worker.conn.send((index, *tasks[index]))
            except (OSError, ValueError):  # the worker is gone: retry the task elsewhere
                pending.appendleft(index)
                self._replace(worker)
                continue
            worker.task, worker.deadline = index, time.monotonic() + self._hard_limit_s

    def _collect(self, verdicts: list[Verdict | None]) -> int:
        """Read finished answers (waiting until the nearest deadline); returns how many."""
        nearest = min(worker.deadline for worker in self._workers)
        timeout = None if nearest == math.inf else max(0.0, nearest - time.monotonic())
        by_conn = {worker.conn: worker for worker in self._workers}
        done = 0
        for conn in wait(list(by_conn), timeout=timeout):
            worker = by_conn[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                worker.process.join(timeout=1.0)
                why = f"exited (exit code {worker.process.exitcode})"
                done += self._fail(worker, verdicts, Verdict.WRONG, why)
                continue
            if message == "ready":
                worker.ready, worker.deadline = True, math.inf
                continue
            index, value = message
            verdicts[index] = Verdict(value)
            worker.task, worker.deadline = None, math.inf
            done += 1
        return done

    def _expire(self, verdicts: list[Verdict | None]) -> int:
        """Kill workers past their deadline; returns how many answers that graded."""
        now = time.monotonic()
        done = 0
        for worker in list(self._workers):
            if worker.deadline <= now:
                why = "ran past its deadline"
                done += self._fail(worker, verdicts, Verdict.TIMEOUT, why)
        return done

    def _fail(
        self, worker: _Worker, verdicts: list[Verdict | None], verdict: Verdict, why: str
    ) -> int:
        """Replace a dead or stuck worker, grading its answer ``verdict``; returns 0 or 1."""
        if not worker.ready:
            self._stop(worker)
            raise RuntimeError(f"a math grading worker failed to start: it {why}")
        graded = 0
        if worker.task is not None:
            logger.warning("grading worker %s on answer %d: graded %s", why, worker.task, verdict)
            verdicts[worker.task] = verdict
            graded = 1
        self._replace(worker)
        return graded

    def _replace(self, worker: _Worker) -> None:
        self._stop(worker)
        self._workers[self._workers.index(worker)] = self._start()

    @staticmethod
    def _stop(worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.conn.close()

    def close(self) -> None:
        """Stop every worker: ask idle ones to exit, kill the rest."""
        for worker in self._workers:
            if worker.task is None and not worker.conn.closed:
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=1.0)
            self._stop(worker)


def check_many(
    rows: Iterable[tuple[str, str]],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
) -> list[Verdict]:
    """Grade ``(prediction, gold)`` pairs in worker processes, in order; safe from any thread.

    ``workers`` defaults to the CPU count (at most 8, at most one per row).
    """
    timeout_s = validate_timeout(timeout_s)
    tasks = list(rows)
    if not tasks:
        return []
    if workers is None:
        workers = min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return _GradingPool(min(workers, len(tasks)), timeout_s).run(tasks)


def grade_many(
    rows: Iterable[tuple[str, str]],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
) -> list[bool]:
    """`check_many` as booleans: True where the answer is correct."""
    return [v is Verdict.CORRECT for v in check_many(rows, timeout_s, workers)]


# --------------------------------------------------------------------------- summaries


def summarize(correct: Sequence[bool], timeouts: int = 0) -> dict[str, float | int]:
    """Accuracy over the graded answers: ``accuracy``, ``n``, ``correct``, ``timeouts``."""
    n = len(correct)
    hits = sum(bool(c) for c in correct)
    return {"accuracy": hits / n if n else 0.0, "n": n, "correct": hits, "timeouts": timeouts}


def summarize_verdicts(verdicts: Sequence[Verdict]) -> dict[str, float | int]:
    """`summarize` for verdicts, counting the timeouts."""
    correct = [v is Verdict.CORRECT for v in verdicts]
    return summarize(correct, timeouts=sum(v is Verdict.TIMEOUT for v in verdicts))


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    """Mean, median, 90th percentile (nearest rank) and max of response lengths; 0s if empty."""
    if not lengths:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
    ordered = sorted(lengths)
    n = len(ordered)
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "mean": sum(ordered) / n,
        "median": float(median),
        "p90": float(ordered[math.ceil(0.9 * n) - 1]),
        "max": float(ordered[-1]),
    }


# --------------------------------------------------------------------------- command line


def read_predictions(path: Path) -> list[dict[str, str]]:
    """Rows ``{"id", "prediction", "answer"}`` of a JSON-lines file; errors name the line."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            for key in ("prediction", "answer"):
                if not isinstance(row.get(key), str):
                    raise ValueError(f"{path}:{number}: field {key!r} must be a string")
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spiral.evaluate.grade",
        description="Grade math answers with math-verify; prints one JSON object.",
    )
    parser.add_argument("predictions", type=Path, help='JSON lines: {"id", "prediction", "answer"}')
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="s per answer")
    parser.add_argument("--workers", type=int, default=None, help="grading processes")
    args = parser.parse_args(argv)
    from spiral.errors import UserError, run_command

    def grade() -> None:
        if not (math.isfinite(args.timeout) and args.timeout > 0):
            raise UserError(f"--timeout {args.timeout}: must be a positive number of seconds")
        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers {args.workers}: must be >= 1")
        try:
            rows = read_predictions(args.predictions)
        except OSError as exc:  # the user's file: missing, a folder, unreadable
            raise UserError(f"{args.predictions}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UserError(f"{args.predictions}: not UTF-8 text ({exc.reason})") from exc
        except ValueError as exc:  # a line that is not a prediction (read_predictions names it)
            raise UserError(str(exc)) from exc
        pairs = [(row["prediction"], row["answer"]) for row in rows]
        print(json.dumps(summarize_verdicts(check_many(pairs, args.timeout, args.workers))))

    return run_command(grade)


if __name__ == "__main__":
    sys.exit(main())
