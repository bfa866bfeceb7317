"""How GameTheory-v1 answers are written, read back and graded (the ``AnswerForm``s).

- ``Profiles``: a set of strategy profiles ``(A, W), (B, X)`` or ``none``; order-free, case
  and spacing tolerant; correct iff the sets are equal (a missing or extra profile is wrong).
- ``Number``: one exact number; ``7/3``, ``\\frac{7}{3}``, ``-2``, ``0.5`` are read exactly,
  and it is correct iff equal to the answer (``0.333`` is not ``1/3``).
- ``Vector``: numbers in a fixed order ``(1/2, 3, -1/4)``, or labelled ``p = 1/2, q = 1/3``
  (labels in any order); correct iff every entry is within ``tolerance`` (0: exact).
- ``Sequence``: moves in order ``A, X, L``; correct iff the same moves in the same order.

Reward is 1 for a correct answer and 0 otherwise: no partial credit, since a partly right set
or vector is easy to game (list every profile; guess one coordinate).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tasks.answers import parse_profiles, parse_sequence, parse_single, parse_vector
from tasks.core import Score
from tasks.gametheory.base import exact


def _score(formatted: bool, correct: bool) -> Score:
    return Score(1.0 if correct else 0.0, correct, formatted)


def _random_number(rng: random.Random) -> str:
    return exact(Fraction(rng.randint(-20, 20), rng.randint(1, 9)))


@dataclass(frozen=True)
class Profiles:
    """A set of pure-strategy profiles: tuples whose k-th entry is one of ``letters[k]``,
    written as ``shape`` says (e.g. ``"(row strategy, column strategy)"``)."""

    letters: tuple[str, ...]
    shape: str

    def instructions(self, answer: Any) -> str:
        size = len(self.letters)
        first, second = (f"({', '.join(letters[:size])})" for letters in ("PSU", "QTV"))
        return (f"Write every equilibrium as {self.shape}, separated by commas, all inside one "
                "\\boxed{}; the order does not matter. For example, a game whose equilibria "
                f"were {first} and {second} would be answered \\boxed{{{first}, {second}}}. "
                "If there is none, answer \\boxed{none}.")

    def render(self, answer: Any) -> str:
        return ", ".join(f"({', '.join(profile)})" for profile in answer) or "none"

    def grade(self, answer: Any, content: str) -> Score:
        profiles = parse_profiles(content, len(self.letters))
        return _score(profiles is not None, profiles == {tuple(p) for p in answer})

    def sample(self, answer: Any, rng: random.Random) -> str:
        chosen = {tuple(rng.choice(letters) for letters in self.letters)
                  for _ in range(rng.randint(0, 3))}
        return self.render(sorted(chosen))


@dataclass(frozen=True)
class Number:
    """One exact number (an integer or a fraction)."""

    def instructions(self, answer: Any) -> str:
        return ("Give the exact answer as an integer or a fraction in lowest terms, inside "
                "\\boxed{}: for example \\boxed{-5/2} or \\boxed{4}. Decimals are read exactly, "
                "so 1/3 must be written as a fraction.")

    def render(self, answer: Any) -> str:
        return str(answer)

    def grade(self, answer: Any, content: str) -> Score:
        value = parse_single(content)
        return _score(value is not None, value == Fraction(answer))

    def sample(self, answer: Any, rng: random.Random) -> str:
        return _random_number(rng)


@dataclass(frozen=True)
class Vector:
    """Numbers in a fixed order: named (``names``; the answer is a dict) or by player (the
    answer is a list). Entries within ``tolerance`` of the answer are right (0: exact)."""

    names: tuple[str, ...] = ()
    tolerance: Fraction = Fraction(0)
    probabilities: bool = False  # entries lie in [0, 1] (drawn so by ``sample``)

    def instructions(self, answer: Any) -> str:
        how = ("exact fractions (decimals within 0.001 are also accepted)" if self.tolerance
               else "exact integers or fractions in lowest terms (decimals are read exactly)")
        if self.names:
            example = ", ".join(f"{name} = {value}"
                                for name, value in zip(self.names, ("3/11", "7/13", "5/17")))
            return (f"Give {', '.join(self.names)} as {how}, all inside one \\boxed{{}}, "
                    f"in this form: \\boxed{{{example}}}.")
        example = ", ".join(["7/2", "-1", "5/3", "2"][:len(answer)])
        return (f"Give the {len(answer)} values in player order, as {how}, all inside one "
                f"\\boxed{{}}: for example \\boxed{{({example})}}.")

    def values(self, answer: Any) -> list[Fraction]:
        entries = [answer[name] for name in self.names] if self.names else answer
        return [Fraction(entry) for entry in entries]

    def render(self, answer: Any) -> str:
        if self.names:
            return ", ".join(f"{name} = {answer[name]}" for name in self.names)
        return f"({', '.join(answer)})"

    def grade(self, answer: Any, content: str) -> Score:
        expected = self.values(answer)
        values = parse_vector(content, self.names)
        if values is None or len(values) != len(expected):
            return _score(False, False)
        correct = all(abs(got - want) <= self.tolerance for got, want in zip(values, expected))
        return _score(True, correct)

    def sample(self, answer: Any, rng: random.Random) -> str:
        entries = [exact(Fraction(rng.randint(1, 9), 10)) if self.probabilities
                   else _random_number(rng) for _ in self.values(answer)]
        if self.names:
            return self.render(dict(zip(self.names, entries)))
        return self.render(entries)


@dataclass(frozen=True)
class Sequence:
    """Moves in order; ``levels[i]`` holds the labels of the moves at depth ``i``."""

    levels: tuple[str, ...]

    def instructions(self, answer: Any) -> str:
        return ("Write the moves actually played, in order, separated by commas, inside "
                "\\boxed{}: for example, a game in which U and then D were played would be "
                "answered \\boxed{U, D}.")

    def render(self, answer: Any) -> str:
        return ", ".join(answer)

    def grade(self, answer: Any, content: str) -> Score:
        moves = parse_sequence(content)
        return _score(moves is not None, moves == list(answer))

    def sample(self, answer: Any, rng: random.Random) -> str:
        return self.render([rng.choice(self.levels[depth]) for depth in range(len(answer))])
