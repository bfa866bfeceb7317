"""Exact numeric answers graded with math-verify's help, in bounded time.

An answer here is one rational number, a set of them (the roots of an equation) or an ordered
pair ``x, y``. Each element of the boxed content is read exactly first
(``tasks.answers.parse_single``: integers, decimals read exactly, ``a/b``, ``\\frac{a}{b}``, an
optional label ``x =``); only an element that reader cannot read goes to math-verify, which
parses it (``\\frac12``, ``2^{-1}``, ``\\sqrt{9}``, ``\\frac{1 + 5}{4}``) and compares it
symbolically with the expected values. The comparison of the whole answer stays exact and ours,
because math-verify alone is unreliable here: it counts ``0.5000001`` as ``1/2`` and
``0.333333`` as ``1/3`` (it rounds floats), reads ``(1, 2)`` as an interval and ``1, 2`` as a
set (so ``2, 1`` would answer the pair ``x = 1, y = 2``) and ``(-2, 3)`` as an interval equal to
the roots ``{-2, 3}``. So sets are compared as sets, pairs entry by entry, and a formula holding
a decimal is wrong.

Bounded time. Only a short element built from digits, operators, brackets, ``\\frac``,
``\\sqrt``, ``\\cdot``, ``\\times``, ``\\div`` and at most one literal exponent reaches math-verify
(``_SYMBOLIC``): no ``9^{9^{9}}``, since sympy raises big powers in C code, where no signal
stops it. All of one answer's math-verify work then runs under one deadline (``deadline``:
``signal.setitimer``, math-verify's own timeouts off; ``spiral.evaluate.grade`` says why), and a
timeout grades the answer wrong. A deadline needs the main thread: elsewhere math-verify is not
consulted and the exact reader alone grades. ``spiral.evaluate.answers`` grades math benchmarks
with the same loader and deadline.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from types import ModuleType
from typing import Any, TypeVar

from tasks.answers import parse_single
from tasks.core import NO_ANSWER, Score

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 2.0  # math-verify time per answer; real answers take milliseconds
MAX_SYMBOLIC = 100  # longest element handed to math-verify
_SYMBOLIC = re.compile(r"(?:\\[dt]?frac|\\sqrt|\\cdot|\\times|\\div|\d{1,12}|[-+*/()\[\]{}. ]"
                       r"|\^(?:\d|\{-?\d{1,2}\}))+")
_LABEL = re.compile(r"^\s*[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=\s*")  # x =, x_1 =, x_{2} =
_PREFIX = re.compile(r"^\s*(?:\(\s*x\s*,\s*y\s*\)|[A-Za-z])\s*(?:=|\\in)\s*(?=[(\[]|\\\{)")
_SEPARATORS = re.compile(r",|;|\\quad|\bor\b|\band\b|\\lor|\\vee")
_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,)(?=\d{3}(?!\d))")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


# --------------------------------------------------------------------------- math-verify


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


def _raise_timeout(signum: int, frame: Any) -> None:
    raise GradingTimeout


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
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
    """Whether a deadline can be armed here: a SIGALRM interval timer, in the main thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def bounded(work: Callable[[ModuleType], T], timeout_s: float) -> T | None:
    """``work(math_verify)`` under a deadline of ``timeout_s``; None if it timed out, raised,
    or no deadline can be armed here (off the main thread)."""
    if not can_use_alarm():
        return None
    mv = load_math_verify()  # the import and warm-up stay outside the deadline
    try:
        with deadline(timeout_s):
            return work(mv)
    except GradingTimeout:
        return None
    except Exception:  # noqa: BLE001 - a failure inside math-verify or sympy: not read
        return None


# --------------------------------------------------------------------------- reading


def elements(content: str) -> list[tuple[str | None, str]]:
    """The comma-, semicolon-, ``or``- or ``and``-separated parts of ``content`` as ``(label,
    text)``, one bracket pair and a ``(x, y) =`` or ``x \\in`` prefix dropped; a part with one
    ``\\pm`` counts as two (``\\pm 3``: ``+3`` and ``-3``)."""
    content = _strip_brackets(_PREFIX.sub("", content, count=1))
    found = []
    for part in _SEPARATORS.split(content):
        label = _LABEL.match(part)
        text = part[label.end():] if label else part
        name = label.group().split("=")[0].strip().lower() if label else None
        if text.count("\\pm") == 1:
            found += [(name, text.replace("\\pm", sign)) for sign in ("+", "-")]
        elif text.strip():
            found.append((name, text.strip()))
    return found


def _strip_brackets(text: str) -> str:
    """``text`` without one bracket pair around all of it (``(1, 2)``, ``\\{-2, 3\\}``)."""
    text = text.strip()
    if text.startswith("\\{") and text.endswith("\\}"):
        return text[2:-2]
    if len(text) < 2 or _PAIRS.get(text[0]) != text[-1]:
        return text
    depth = 0
    for char in text[:-1]:
        depth += (char == text[0]) - (char == text[-1])
        if depth == 0:
            return text  # "(1)(2)": the first bracket closes before the end
    return text[1:-1]


def read(text: str) -> Fraction | str | None:
    """One element: its exact value, else its text if math-verify may read it, else None."""
    exact = parse_single(text)
    if exact is not None:
        return exact
    text = _LABEL.sub("", text, count=1).strip()
    symbolic = (len(text) <= MAX_SYMBOLIC and text.count("^") <= 1
                and any(c.isdigit() for c in text) and _SYMBOLIC.fullmatch(text))
    return text if symbolic else None


def _resolve(values: list[Fraction | str], wanted: list[Fraction],
             timeout_s: float) -> list[Fraction | None]:
    """Each value as a number: an exact one as itself, a formula as the wanted value it equals
    by math-verify (None if none, or if math-verify cannot run or runs out of time)."""
    formulas = [v for v in values if isinstance(v, str)]
    if not formulas:
        return list(values)

    def match(mv: ModuleType) -> dict[str, Fraction | None]:
        import sympy

        golds = [(w, [sympy.Rational(w.numerator, w.denominator)]) for w in wanted]
        found = {}
        for text in formulas:
            parsed = [e for e in mv.parse(f"\\boxed{{{text}}}", parsing_timeout=None,
                                          raise_on_error=False) if not isinstance(e, str)]
            exact = parsed and not any(e.atoms(sympy.Float) for e in parsed)
            found[text] = next((w for w, gold in golds if exact and mv.verify(
                gold, parsed, timeout_seconds=None, raise_on_error=False)), None)
        return found

    found = bounded(match, timeout_s) or {}
    return [found.get(v) if isinstance(v, str) else v for v in values]


# --------------------------------------------------------------------------- grading


def _score(formatted: bool, correct: bool) -> Score:
    return Score(1.0 if correct else 0.0, correct, formatted)


def grade_number(content: str, want: Fraction, timeout_s: float = DEFAULT_TIMEOUT_S) -> Score:
    """One number (``12``, ``x = 7/2``, ``12{,}600``); correct iff it equals ``want``."""
    value = read(_THOUSANDS.sub("", content))
    if value is None:
        return NO_ANSWER
    return _score(True, _resolve([value], [want], timeout_s)[0] == want)


def grade_set(content: str, want: set[Fraction], timeout_s: float = DEFAULT_TIMEOUT_S) -> Score:
    """A set of numbers in any order, labelled or not (``x = -2 or x = 3``); correct iff it is
    ``want`` (a repeated element counts once; a missing or extra one is wrong)."""
    values = [read(text) for _, text in elements(content)]
    if not values or None in values:
        return NO_ANSWER
    resolved = _resolve(values, sorted(want), timeout_s)
    return _score(True, None not in resolved and set(resolved) == want)


def grade_tuple(content: str, want: tuple[Fraction, ...], names: tuple[str, ...],
                timeout_s: float = DEFAULT_TIMEOUT_S) -> Score:
    """Numbers in order (``(1, 2)``), or all labelled with ``names`` in any order (``y = 2,
    x = 1``); correct iff each equals its entry of ``want``."""
    parts = elements(content)
    labels = [label for label, _ in parts]
    if sorted(map(str, labels)) == sorted(names):
        parts = sorted(parts, key=lambda part: names.index(part[0]))
    elif any(labels) or len(parts) != len(want):
        return NO_ANSWER
    values = [read(text) for _, text in parts]
    if None in values:
        return NO_ANSWER
    return _score(True, _resolve(values, list(want), timeout_s) == list(want))
