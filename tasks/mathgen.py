"""Math-v1: procedurally generated school-math problems with exact answers.

Categories (``Math.categories``), each with difficulty 1..3:

- ``arithmetic``: an integer expression under the precedence rules (brackets, exact division,
  at difficulty 3 negative numbers and a power);
- ``fractions``: an expression in fractions; the answer is one reduced fraction;
- ``linear_equation``: one unknown, ``ax + b = c``; unknowns on both sides; a bracket and a
  fractional solution;
- ``linear_system``: two linear equations in x and y with one solution, answered ``x, y``;
- ``quadratic``: rational roots (integer, then fractional, then terms on both sides and double
  roots), answered as the set of roots;
- ``gcd_lcm``: the gcd or lcm of two numbers, then three;
- ``percent``: a percentage of a number; what percent one number is of another, or a price
  after a rise; two successive changes, or the price before a discount;
- ``sequence``: a term, then the sum of the first n terms, of an arithmetic or geometric sequence;
- ``modular``: the remainder of a product or a power; a linear congruence.

The model answers in ``\\boxed{...}`` (the last box counts); ``tasks.grading`` reads the answer
as exact rationals, math-verify reading the forms the exact reader cannot (``\\frac12``,
``\\sqrt{9}``), and compares exactly: equivalent forms are right, near misses wrong. Reward is
1 for a correct answer, else 0 (a partly right set of roots is easy to game: list more roots).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tasks.answers import boxed
from tasks.core import (
    NO_ANSWER,
    Problem,
    Score,
    check_request,
    chosen_categories,
    generate_in_split,
    instance_key,
)
from tasks.grading import DEFAULT_TIMEOUT_S, grade_number, grade_set, grade_tuple
from tasks.mathexpr import Expr, latex, terms, tex, tree, value

TASK_ID = "Math-v1"
DIFFICULTIES = (1, 2, 3)
TRIES = 500  # redraws of a random expression until it meets its category's bounds
NAMES = ("x", "y")

NUMBER = ("Give the exact answer inside \\boxed{}, as an integer or a fraction in lowest terms: "
          "for example \\boxed{12} or \\boxed{-\\frac{7}{2}}. Decimals are read exactly, so "
          "0.333 is not 1/3.")
ROOTS = ("Give every real solution inside one \\boxed{}, separated by commas, each as an integer "
         "or a fraction in lowest terms (a repeated root once): for example "
         "\\boxed{-\\frac{1}{2}, 3}.")
PAIR = "Give the solution inside one \\boxed{} in this form: \\boxed{x = \\frac{1}{2}, y = -3}."


@dataclass(frozen=True)
class Drawn:
    """A generated problem: the question and its exact answer (a number, roots or x, y)."""

    question: str
    answer: Fraction | tuple[Fraction, ...]


def _expression(rng: random.Random, draw: Callable[[], Expr], integral: bool, bound: int,
                denominator: int = 1) -> tuple[Expr, Fraction]:
    """A drawn expression whose value is within ``bound`` and has a denominator at most
    ``denominator`` (every division exact if ``integral``)."""
    for _ in range(TRIES):
        expr = draw()
        result = value(expr, integral)
        if result is not None and abs(result) <= bound and result.denominator <= denominator:
            return expr, result
    raise RuntimeError("no expression met the bounds")  # unreachable at these sizes


def arithmetic(rng: random.Random, level: int) -> Drawn:
    top = (12, 20, 15)[level - 1]

    def leaf() -> Expr:
        if level == 3 and rng.random() < 0.2:
            return "^", Fraction(rng.choice([2, 3, 4, 5, -2, -3])), Fraction(rng.randint(2, 3))
        number = rng.randint(1, top) * (rng.choice([1, -1]) if level == 3 else 1)
        return Fraction(number)

    ops = "+-*" if level == 1 else "+-*/"
    expr, result = _expression(rng, lambda: tree(rng, level + 2, ops, leaf), True, 10**4)
    return Drawn(f"Evaluate ${latex(expr)}$.", result)


def fractions(rng: random.Random, level: int) -> Drawn:
    top = (9, 10, 12)[level - 1]

    def leaf() -> Expr:
        denominator = rng.randint(2, top)
        numerator = rng.choice([n for n in range(1, 2 * denominator)
                                if math.gcd(n, denominator) == 1])
        return Fraction(numerator, denominator) * (rng.choice([1, -1]) if level == 3 else 1)

    ops, leaves = {1: ("+-", 2), 2: ("+-*", 3), 3: ("+-*/", rng.choice([3, 4]))}[level]
    expr, result = _expression(rng, lambda: tree(rng, leaves, ops, leaf), False, 100, 300)
    return Drawn(f"Compute ${latex(expr)}$ and write the result as a fraction in lowest terms.",
                 result)


# --------------------------------------------------------------------------- algebra


def linear_equation(rng: random.Random, level: int) -> Drawn:
    nonzero = [n for n in range(-9, 10) if abs(n) >= 2]
    if level == 1:
        a, x, b = rng.choice(nonzero), rng.randint(-10, 10), rng.choice(nonzero + [1, 11, 15])
        equation = f"{terms((a, 'x'), (b, ''))} = {a * x + b}"
    elif level == 2:
        a, c = rng.sample(nonzero + [1, -1], 2)
        x, b = rng.randint(-12, 12), rng.randint(-20, 20)
        equation = f"{terms((a, 'x'), (b, ''))} = {terms((c, 'x'), ((a - c) * x + b, ''))}"
    else:
        p, s = rng.choice([(p, s) for p in nonzero for s in nonzero if abs(p - s) >= 2])
        q, r = rng.choice(nonzero), rng.randint(-9, 9)
        k = rng.choice([k for k in range(-30, 31) if k % (p - s)])
        x = Fraction(k, p - s)
        left = terms((p, f"({terms((1, 'x'), (q, ''))})"), (r, ""))  # p(x + q) + r
        equation = f"{left} = {terms((s, 'x'), (k + p * q + r, ''))}"
    return Drawn(f"Solve for $x$: ${equation}$.", Fraction(x))


def _system(rng: random.Random, level: int) -> tuple[tuple[int, ...], Fraction, Fraction]:
    """Coefficients ``a, b, c, d`` with ``ad != bc`` and the solution: integer (difficulty 2),
    or fractional for integer right-hand sides (3)."""
    coefficients = [n for n in range(-3 * level - 3, 3 * level + 4) if n]  # up to 9, then 12
    for _ in range(TRIES):
        a, b, c, d = (rng.choice(coefficients) for _ in range(4))
        if (det := a * d - b * c) == 0:
            continue
        if level == 2:
            return (a, b, c, d), Fraction(rng.randint(-10, 10)), Fraction(rng.randint(-10, 10))
        e, f = rng.randint(-30, 30), rng.randint(-30, 30)
        x, y = Fraction(e * d - b * f, det), Fraction(a * f - c * e, det)
        if max(x.denominator, y.denominator) > 1:
            return (a, b, c, d), x, y
    raise RuntimeError("no system met the bounds")  # unreachable at these sizes


def linear_system(rng: random.Random, level: int) -> Drawn:
    if level == 1:
        (a, b, c, d), x, y = (1, 1, 1, -1), rng.randint(0, 20), rng.randint(0, 20)
    else:
        (a, b, c, d), x, y = _system(rng, level)
    first = f"{terms((a, 'x'), (b, 'y'))} = {a * x + b * y}"
    second = f"{terms((c, 'x'), (d, 'y'))} = {c * x + d * y}"
    return Drawn(f"Solve the system of equations ${first}$ and ${second}$ for $x$ and $y$.",
                 (Fraction(x), Fraction(y)))


def _rational(rng: random.Random, denominators: Sequence[int], spread: int,
              whole: bool = True) -> Fraction:
    """A fraction with one of ``denominators``, within ``spread``; never an integer if not
    ``whole`` (the denominators are then above 1)."""
    q = rng.choice(denominators)
    return Fraction(rng.choice([p for p in range(-spread * q, spread * q + 1)
                                if whole or math.gcd(p, q) == 1]), q)


def quadratic(rng: random.Random, level: int) -> Drawn:
    """``(q1 x - p1)(q2 x - p2) = 0`` expanded, scaled and (difficulty 3) rearranged."""
    first = _rational(rng, *{1: ((1,), 15), 2: ((2, 3, 4, 5), 3, False),
                             3: (range(1, 7), 3)}[level])
    second = _rational(rng, *{1: ((1,), 15), 2: ((1,), 9), 3: (range(1, 7), 3)}[level])
    second = first if level == 3 and rng.random() < 0.2 else second
    (p1, q1), (p2, q2) = ((r.numerator, r.denominator) for r in (first, second))
    scale = 1 if level == 1 else rng.choice([1, -1] if level == 2 else [1, -1, 2])
    a, b, c = scale * q1 * q2, -scale * (q1 * p2 + q2 * p1), scale * p1 * p2
    moved = set() if level < 3 else set(rng.sample(["x", ""], rng.randint(1, 2)))
    left = terms((a, "x^2"), *((k, v) for k, v in ((b, "x"), (c, "")) if v not in moved))
    right = terms(*((-k, v) for k, v in ((b, "x"), (c, "")) if v in moved))
    return Drawn(f"Find every real solution $x$ of ${left} = {right}$.",
                 tuple(sorted({first, second})))


# --------------------------------------------------------------------------- numbers


def gcd_lcm(rng: random.Random, level: int) -> Drawn:
    kind = rng.choice(["gcd", "lcm"]) if level > 1 else "gcd"
    count = 3 if level == 3 else 2
    if kind == "gcd":
        factor = rng.randint(2, 15 if level == 1 else 40)
        top = (100 if level == 1 else 1000) // factor
        numbers = rng.sample(range(1, top + 1), count)
        numbers = [factor * n for n in numbers]
        answer = math.gcd(*numbers)
    else:
        numbers = rng.sample(range(2, 61 if level == 2 else 41), count)
        answer = math.lcm(*numbers)
    listed = " and ".join([", ".join(map(str, numbers[:-1])), str(numbers[-1])])
    what = "greatest common divisor" if kind == "gcd" else "least common multiple"
    return Drawn(f"What is the {what} of {listed}?", Fraction(answer))


def percent(rng: random.Random, level: int) -> Drawn:
    p = rng.randrange(5, 100, 5)
    if level == 1:
        n = rng.randrange(20, 401, 10)
        return Drawn(f"What is ${p}\\%$ of ${n}$?", Fraction(p * n, 100))
    if level == 2 and rng.random() < 0.5:
        p = rng.randint(1, 150)
        whole = 100 // math.gcd(p, 100) * rng.randint(1, 8)
        return Drawn(f"${p * whole // 100}$ is what percent of ${whole}$?", Fraction(p))
    n = rng.randrange(20, 401, 20)
    if level == 2:
        return Drawn(f"A jacket costs {n} dollars. Its price rises by ${p}\\%$. What is the new "
                     "price in dollars?", Fraction(n * (100 + p), 100))
    if rng.random() < 0.5:
        q = rng.randrange(5, 100, 5)
        return Drawn(f"A jacket costs {n} dollars. Its price rises by ${p}\\%$, and then the new "
                     f"price falls by ${q}\\%$. What is the final price in dollars?",
                     Fraction(n * (100 + p) * (100 - q), 100 * 100))
    return Drawn(f"After a ${p}\\%$ discount, a jacket costs {n * (100 - p) // 100} dollars. "
                 "What was its price before the discount, in dollars?", Fraction(n))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def sequence(rng: random.Random, level: int) -> Drawn:
    geometric = level > 1 and rng.random() < 0.5
    if geometric:
        ratio = Fraction(rng.choice([2, 3, -2, -3] + [Fraction(1, 2), Fraction(-1, 3)] *
                                    (level == 3)))
        first = Fraction(rng.choice([1, 2, 3, 5, -1, -2]) * (ratio.denominator ** 4))
        n = rng.randint(5, 10)
        items = [first * ratio**k for k in range(n)]
    else:
        first = Fraction(rng.randint(-20, 20))
        step = Fraction(rng.choice([d for d in range(-9, 10) if d]), 1 if level < 3 else
                        rng.choice([1, 2, 3]))
        n = rng.randint(10, 60) if level < 3 else rng.randint(10, 40)
        items = [first + step * k for k in range(n)]
    shown = ", ".join(tex(item) for item in items[:4])
    kind = "A geometric" if geometric else "An arithmetic"
    if level < 3:
        ask, answer = f"What is its {_ordinal(n)} term?", items[-1]
    else:
        ask, answer = f"What is the sum of its first {n} terms?", sum(items, Fraction(0))
    return Drawn(f"{kind} sequence begins ${shown}, \\ldots$. {ask}", answer)


def modular(rng: random.Random, level: int) -> Drawn:
    if level == 1:
        a, b, m = rng.randint(10, 99), rng.randint(10, 99), rng.randint(3, 12)
        return Drawn(f"What is the remainder when ${a} \\times {b}$ is divided by ${m}$?",
                     Fraction(a * b % m))
    if level == 2 or rng.random() < 0.5:
        base = rng.randint(2, 12)
        m, e = (rng.randint(3, 20), rng.randint(10, 60)) if level == 2 else (
            rng.randint(11, 97), rng.randint(100, 999))
        return Drawn(f"What is the remainder when ${base}^{{{e}}}$ is divided by ${m}$?",
                     Fraction(pow(base, e, m)))
    m = rng.randint(7, 60)
    a = rng.choice([a for a in range(2, m) if math.gcd(a, m) == 1])
    c = rng.randint(1, m - 1)
    return Drawn(f"Find the smallest non-negative integer $x$ such that "
                 f"${a}x \\equiv {c} \\pmod{{{m}}}$.", Fraction(c * pow(a, -1, m) % m))


GENERATORS: dict[str, Callable[[random.Random, int], Drawn]] = {
    f.__name__: f for f in (arithmetic, fractions, linear_equation, linear_system, quadratic,
                            gcd_lcm, percent, sequence, modular)}
CATEGORIES = tuple(GENERATORS)
SHAPES = {"quadratic": "roots", "linear_system": "pair"}  # the rest: one number
INSTRUCTIONS = {"number": NUMBER, "roots": ROOTS, "pair": PAIR}
_PERCENT = re.compile(r"\s*\\?%$")  # "15\%": the unit a percent question asks for


# --------------------------------------------------------------------------- the task


class Math:
    """The ``Math-v1`` task; ``categories`` narrows the mix drawn when none is asked, and
    ``timeout_s`` bounds math-verify's time per answer (``tasks.grading``)."""

    task_id = TASK_ID

    def __init__(self, categories: Sequence[str] | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        chosen = chosen_categories(TASK_ID, categories, CATEGORIES)
        if not (isinstance(timeout_s, int | float) and 0 < timeout_s < math.inf):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.categories, self.timeout_s = chosen, float(timeout_s)

    def generate(self, seed: int, split: str = "train", category: str | None = None,
                 difficulty: int | None = None) -> Problem:
        check_request(category, difficulty, CATEGORIES, DIFFICULTIES)
        salt = f"{TASK_ID}/{category}/{difficulty}"
        return generate_in_split(salt, seed, split,
                                 lambda rng: self._draw(rng, category, difficulty))

    def _draw(self, rng: random.Random, category: str | None,
              difficulty: int | None) -> Problem:
        kind = category if category is not None else rng.choice(self.categories)
        level = difficulty if difficulty is not None else rng.choice(DIFFICULTIES)
        drawn = GENERATORS[kind](rng, level)
        prompt = f"{drawn.question}\n\n{INSTRUCTIONS[SHAPES.get(kind, 'number')]}"
        return Problem(TASK_ID, instance_key(kind, level, drawn.question), prompt,
                       _json(kind, drawn.answer), kind, level)

    def verify(self, problem: Problem, response: str) -> Score:
        content = boxed(response)
        if content is None:
            return NO_ANSWER
        shape, want = SHAPES.get(problem.category, "number"), values(problem)
        if shape == "roots":
            return grade_set(content, set(want), self.timeout_s)
        if shape == "pair":
            return grade_tuple(content, want, NAMES, self.timeout_s)
        if problem.category == "percent":
            content = _PERCENT.sub("", content)
        return grade_number(content, want, self.timeout_s)

    def answer_text(self, problem: Problem) -> str:
        return f"\\boxed{{{render(problem.category, values(problem))}}}"

    def sample_answer(self, problem: Problem, rng: random.Random) -> str:
        shape = SHAPES.get(problem.category, "number")
        count = {"number": 1, "pair": 2}.get(shape) or rng.randint(1, 2)
        drawn = tuple(Fraction(rng.randint(-20, 20), rng.randint(1, 6)) for _ in range(count))
        return f"\\boxed{{{render(problem.category, drawn if shape != 'number' else drawn[0])}}}"


def _json(category: str, answer: Fraction | tuple[Fraction, ...]) -> Any:
    """The answer as JSON: ``"7/2"``, roots ``["-2", "3"]``, a pair ``{"x": "1", "y": "-2"}``."""
    shape = SHAPES.get(category, "number")
    if shape == "pair":
        return {name: str(v) for name, v in zip(NAMES, answer)}
    return [str(v) for v in answer] if shape == "roots" else str(answer)


def values(problem: Problem) -> Fraction | tuple[Fraction, ...]:
    """``problem.answer`` as exact numbers: one, the sorted roots, or (x, y)."""
    shape, answer = SHAPES.get(problem.category, "number"), problem.answer
    if shape == "pair":
        return tuple(Fraction(answer[name]) for name in NAMES)
    return tuple(map(Fraction, answer)) if shape == "roots" else Fraction(answer)


def render(category: str, answer: Fraction | tuple[Fraction, ...]) -> str:
    """An answer as the model should write it: ``-\\frac{7}{2}``, ``-2, 3``, ``x = 1, y = -2``."""
    shape = SHAPES.get(category, "number")
    if shape == "pair":
        return ", ".join(f"{name} = {tex(v)}" for name, v in zip(NAMES, answer))
    return ", ".join(map(tex, answer)) if shape == "roots" else tex(answer)
