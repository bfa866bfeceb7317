"""What every GameTheory-v1 category is made of: a draw of an instance and an answer form.

A category's ``draw(rng, difficulty)`` returns an ``Instance``: the canonical data of the game
(hashed into the problem's key), the question in English and the exact answer. Its ``form``
(see ``formats``) says how the answer is written, read back and graded.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from tasks.core import Score

DIFFICULTIES = (1, 2, 3)
ROWS = "ABCD"  # the row player's strategy labels
COLUMNS = "WXYZ"  # the column player's strategy labels

Matrix = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Instance:
    data: Any  # canonical description of the game: ints, strs and tuples only
    question: str  # the game and what is asked, in English
    answer: Any  # JSON-serialisable exact answer


class AnswerForm(Protocol):
    def instructions(self, answer: Any) -> str:
        """The prompt's closing paragraph: how to write the answer, with a format example."""

    def render(self, answer: Any) -> str:
        """The canonical answer as boxed content (without ``\\boxed{}``)."""

    def grade(self, answer: Any, content: str) -> Score:
        """Score normalised boxed content against the exact answer. Never raises."""

    def sample(self, answer: Any, rng: random.Random) -> str:
        """Random well-formed boxed content shaped like ``answer`` (no solving)."""


@dataclass(frozen=True)
class Category:
    name: str
    draw: Callable[[random.Random, int], Instance]
    form: AnswerForm


def random_matrix(rng: random.Random, rows: int, columns: int, low: int, high: int) -> Matrix:
    """A ``rows`` x ``columns`` matrix of integers drawn uniformly from [low, high]."""
    return tuple(tuple(rng.randint(low, high) for _ in range(columns)) for _ in range(rows))


def grid(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: right-aligned columns separated by three spaces."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("   ".join(cell.rjust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in table)


def payoff_table(first: Matrix, second: Matrix) -> str:
    """A bimatrix game: rows ``ROWS``, columns ``COLUMNS``, cells ``(row payoff, column
    payoff)``."""
    header = ["", *COLUMNS[:len(first[0])]]
    rows = [[ROWS[i], *(f"({a}, {b})" for a, b in zip(first[i], second[i]))]
            for i in range(len(first))]
    return grid(header, rows)


def labels(letters: str) -> str:
    """``"A, B or C"``."""
    return letters[0] if len(letters) == 1 else f"{', '.join(letters[:-1])} or {letters[-1]}"


def exact(value: Fraction | int) -> str:
    """The canonical text of an exact number, as stored in answers: ``"7/3"``, ``"-2"``."""
    return str(Fraction(value))
