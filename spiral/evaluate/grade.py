"""Grade model answers to math problems with math-verify, never hanging on a bad answer.

A prediction is the model's whole response. Its final answer is its last ``\\boxed{}`` (math-verify
alone would read every box of a response as one set, so "\\boxed{2} ... wait, \\boxed{3}" would
not answer 3); a response without a box is left to math-verify's extraction (an "answer is ..."
phrase, else the last number or formula), so plain GSM8K-style answers work. math-verify then
compares it with the gold answer symbolically and numerically. The gold, a LaTeX final
answer, is read as ``\\boxed{gold}`` after dropping stray ``$`` signs and a closing period.

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
import functools
import json
import logging
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import ModuleType
from typing import Any

from envs.core import last_boxed

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
MAX_DEFAULT_WORKERS = 8
STARTUP_TIMEOUT_S = 120.0  # a worker must import math-verify and report ready within this


class Verdict(StrEnum):
    """The grade of one answer."""

    CORRECT = "correct"
    WRONG = "wrong"
    TIMEOUT = "timeout"  # graded as wrong, counted separately


class GradingTimeout(BaseException):
    """Raised by the grading alarm; a BaseException so library ``except Exception`` lets it by."""


# --------------------------------------------------------------------------- one answer


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its timeouts are off; our own deadline replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


@functools.cache
def _math_verify() -> ModuleType:
    """Import math-verify and warm it up (its LaTeX parser loads lazily, in tenths of a second).

    Called before any deadline is armed: an alarm must never interrupt an import.
    """
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
    half = math_verify.parse("\\boxed{\\frac{1}{2}}", parsing_timeout=None)
    math_verify.verify(half, math_verify.parse("0.5", parsing_timeout=None), timeout_seconds=None)
    return math_verify


def gold_latex(gold: str) -> str:
    """The gold answer as math-verify should read it: ``\\boxed{...}`` without stray ``$``."""
    text = re.sub(r"(?<!\\)\$", "", gold).strip()
    text = text.removesuffix(".").rstrip()
    return text if "\\boxed" in text else f"\\boxed{{{text}}}"


def prediction_latex(prediction: str) -> str:
    """The part of a response that is graded: its last ``\\boxed{...}``, else all of it."""
    boxed = last_boxed(prediction)
    return prediction if boxed is None else f"\\boxed{{{boxed}}}"


def _verify(prediction: str, gold: str) -> bool:
    mv = _math_verify()
    gold_parsed = mv.parse(gold_latex(gold), parsing_timeout=None, raise_on_error=False)
    if not gold_parsed:
        return False
    answer = prediction_latex(prediction)
    predicted = mv.parse(answer, parsing_timeout=None, raise_on_error=False)
    return bool(mv.verify(gold_parsed, predicted, timeout_seconds=None, raise_on_error=False))


def _raise_timeout(signum: int, frame: Any) -> None:
    raise GradingTimeout


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise `GradingTimeout` in the body after ``seconds``; main thread only.

    An interval timer already running (another library's alarm) is resumed afterwards.
    """
    previous_handler = signal.signal(signal.SIGALRM, _raise_timeout)
    started = time.monotonic()
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        # None: the old handler was not set from Python and cannot be put back.
        signal.signal(
            signal.SIGALRM, signal.SIG_DFL if previous_handler is None else previous_handler
        )
        if outer_delay > 0:
            left = max(outer_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def _can_use_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _check_here(prediction: Any, gold: Any, timeout_s: float) -> Verdict:
    """Grade in this process under a SIGALRM deadline; must run in the main thread."""
    if not isinstance(prediction, str) or not isinstance(gold, str):
        return Verdict.WRONG
    _math_verify()  # the import and warm-up stay outside the deadline
    try:
        with _deadline(timeout_s):
            return Verdict.CORRECT if _verify(prediction, gold) else Verdict.WRONG
    except GradingTimeout:
        return Verdict.TIMEOUT
    except Exception:  # any failure inside math-verify or sympy grades the answer wrong
        logger.debug("grading failed", exc_info=True)
        return Verdict.WRONG


def _check_timeout(timeout_s: float) -> float:
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)


def check_answer(prediction: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Grade one response against a gold answer: correct, wrong, or timeout (never raises).

    In the main thread it runs here; elsewhere it starts a worker process (about a second), so
    grade batches with `check_many`.
    """
    timeout_s = _check_timeout(timeout_s)
    if _can_use_alarm():
        return _check_here(prediction, gold, timeout_s)
    return check_many([(prediction, gold)], timeout_s, workers=1)[0]


def grade_answer(prediction: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``prediction`` (a full model response) answers ``gold``; a timeout is False."""
    return check_answer(prediction, gold, timeout_s) is Verdict.CORRECT


# --------------------------------------------------------------------------- many answers


def _worker_main(conn: Connection, timeout_s: float) -> None:
    """Worker process: grade ``(index, prediction, gold)`` tasks until told to stop (None)."""
    _math_verify()
    conn.send("ready")
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        while (task := conn.recv()) is not None:
            index, prediction, gold = task
            conn.send((index, _check_here(prediction, gold, timeout_s).value))


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
    timeout_s = _check_timeout(timeout_s)
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
    try:
        rows = read_predictions(args.predictions)
        verdicts = check_many(
            [(row["prediction"], row["answer"]) for row in rows], args.timeout, args.workers
        )
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summarize_verdicts(verdicts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
