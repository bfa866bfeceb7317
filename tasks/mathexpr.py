"""Exact expressions and their LaTeX: the building blocks of Math-v1's problems (``mathgen``).

An expression is a number (``Fraction``) or ``(operator, left, right)`` with operators
``+ - * / ^``; ``latex`` writes it with the brackets the precedence rules need, and a few more
where readers disagree (a division under a product or a division is always bracketed).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

# --------------------------------------------------------------------------- rendering


def tex(q: Fraction | int) -> str:
    """``q`` in LaTeX: ``3``, ``-3``, ``\\frac{3}{4}``, ``-\\frac{3}{4}``."""
    q = Fraction(q)
    if q.denominator == 1:
        return str(q.numerator)
    return f"{'-' if q < 0 else ''}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def terms(*parts: tuple[Fraction | int, str]) -> str:
    """A sum of ``(coefficient, variable)`` terms: ``((3, "x"), (-1, ""))`` is ``3x - 1``."""
    out = ""
    for coefficient, var in parts:
        if coefficient == 0:
            continue
        size = abs(Fraction(coefficient))
        body = var if size == 1 and var else tex(size) + var
        out += (f" {'-' if coefficient < 0 else '+'} " if out else
                "-" if coefficient < 0 else "") + body
    return out or "0"


Expr = Fraction | tuple[str, Any, Any]  # a number or (operator, left, right)
PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 3}
SYMBOL = {"+": "+", "-": "-", "*": "\\times", "/": "\\div"}


def tree(rng: random.Random, leaves: int, ops: str, leaf: Callable[[], Expr]) -> Expr:
    if leaves == 1:
        return leaf()
    left = rng.randint(1, leaves - 1)
    return rng.choice(ops), tree(rng, left, ops, leaf), tree(rng, leaves - left, ops, leaf)


def value(expr: Expr, integral: bool) -> Fraction | None:
    """The exact value; None on a division by zero or (``integral``) an inexact division."""
    if isinstance(expr, Fraction):
        return expr
    op, a, b = expr
    x, y = value(a, integral), value(b, integral)
    if x is None or y is None or (op == "/" and (y == 0 or integral and x % y)):
        return None
    if op == "^":
        return x ** int(y)
    return {"+": x + y, "-": x - y, "*": x * y}[op] if op != "/" else x / y


def _bracketed(child: Expr, op: str, right: bool) -> bool:
    """Whether ``child`` needs brackets under ``op``: lower precedence, the right side of ``-``
    or ``\\div``, and any division under a product or a division (``(a \\div b) \\times c``,
    never the disputed ``a \\div b \\times c``)."""
    if isinstance(child, Fraction):
        return False
    inner = child[0]
    return (PREC[inner] < PREC[op] or (right and PREC[inner] == PREC[op] and op in "-/")
            or (inner == "/" and PREC[op] == 2))


def latex(expr: Expr, first: bool = True) -> str:
    """``expr`` in LaTeX; a negative number is bracketed unless it opens the expression (or a
    bracket), and always as the base of a power (``\\left(-2\\right)^{2}``)."""
    if isinstance(expr, Fraction):
        return tex(expr) if expr >= 0 or first else f"\\left({tex(expr)}\\right)"
    op, a, b = expr
    left, right = (f"\\left({latex(child)}\\right)" if _bracketed(child, op, side)
                   else latex(child, first and not side and op != "^")
                   for child, side in ((a, False), (b, True)))
    return f"{left}^{{{right}}}" if op == "^" else f"{left} {SYMBOL[op]} {right}"
