"""Grade one model answer to a math problem in this process, under a deadline of its own.

A prediction is the model's whole response. Its final answer is its last ``\\boxed{}`` (math-verify
alone would read every box of a response as one set, so "\\boxed{2} ... wait, \\boxed{3}" would
not answer 3); a response without a box is left to math-verify's extraction (an "answer is ..."
phrase, else the last number or formula), so plain GSM8K-style answers work. math-verify then
compares it with the gold answer symbolically and numerically. The gold, a LaTeX final
answer, is read as ``\\boxed{gold}`` after dropping stray ``$`` signs and a closing period.

math-verify's own timeouts stay off (see `spiral.evaluate.grade` for why); instead
`check_here` arms ``signal.setitimer`` for ``timeout_s`` and the alarm raises `GradingTimeout`,
a ``BaseException`` that the libraries' ``except Exception`` blocks let through; the answer is
graded `Verdict.TIMEOUT`. That needs the main thread: `spiral.evaluate.grade` runs it in worker
processes everywhere else.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from types import ModuleType
from typing import Any

from envs.core import last_boxed

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0


class Verdict(StrEnum):
    """The grade of one answer."""

    CORRECT = "correct"
    WRONG = "wrong"
    TIMEOUT = "timeout"  # graded as wrong, counted separately


class GradingTimeout(BaseException):
    """Raised by the grading alarm; a BaseException so library ``except Exception`` lets it by."""


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its timeouts are off; our own deadline replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


@functools.cache
def load_math_verify() -> ModuleType:
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
    mv = load_math_verify()
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


def can_use_alarm() -> bool:
    """Whether `check_here` can run here: a SIGALRM interval timer, in the main thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def check_here(prediction: Any, gold: Any, timeout_s: float) -> Verdict:
    """Grade in this process under a SIGALRM deadline; must run in the main thread."""
    if not isinstance(prediction, str) or not isinstance(gold, str):
        return Verdict.WRONG
    load_math_verify()  # the import and warm-up stay outside the deadline
    try:
        with _deadline(timeout_s):
            return Verdict.CORRECT if _verify(prediction, gold) else Verdict.WRONG
    except GradingTimeout:
        return Verdict.TIMEOUT
    except Exception:  # any failure inside math-verify or sympy grades the answer wrong
        logger.debug("grading failed", exc_info=True)
        return Verdict.WRONG


def validate_timeout(timeout_s: float) -> float:
    """``timeout_s`` as a float; ValueError unless it is a positive, finite number."""
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)
