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
processes everywhere else. The loader and the deadline are `tasks.grading`'s, which the tasks'
own verifiers (Math-v1) use too.
"""

from __future__ import annotations

import logging
import math
import re
from enum import StrEnum
from typing import Any

from envs.core import last_boxed
from tasks.grading import GradingTimeout, deadline, load_math_verify
from tasks.grading import can_use_alarm as can_use_alarm  # re-exported for spiral.evaluate.grade

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0


class Verdict(StrEnum):
    """The grade of one answer."""

    CORRECT = "correct"
    WRONG = "wrong"
    TIMEOUT = "timeout"  # graded as wrong, counted separately


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


def check_here(prediction: Any, gold: Any, timeout_s: float) -> Verdict:
    """Grade in this process under a SIGALRM deadline; must run in the main thread."""
    if not isinstance(prediction, str) or not isinstance(gold, str):
        return Verdict.WRONG
    load_math_verify()  # the import and warm-up stay outside the deadline
    try:
        with deadline(timeout_s):
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
