"""Matrix games: pure Nash equilibria, the mixed equilibrium of a 2x2 game, zero-sum values.

Rules. Two players choose at the same time: the row player a row (``A``, ``B``, ...), the
column player a column (``W``, ``X``, ...); cell (i, j) pays ``first[i][j]`` to the row player
and ``second[i][j]`` to the column player (zero-sum: ``-first[i][j]``).

- ``normal_form_<r>x<c>``: every pure Nash equilibrium, weak ones included: (i, j) such that
  row i is a best reply to column j and column j a best reply to row i (ties allowed).
  Difficulty sets the payoff range.
- ``mixed_2x2``: a 2x2 game with no ties between a player's payoffs against the same opposing
  strategy and no pure equilibrium, so its only equilibrium is fully mixed; the answer is p
  (row plays ``A``) and q (column plays ``W``), each making the other player indifferent.
- ``zero_sum``: the value to the row player, exact. 2x2, 2x3, 3x3 by difficulty; at
  difficulty 3 the game has no saddle point, so optimal play mixes.
"""

from __future__ import annotations

import random
from fractions import Fraction
from itertools import combinations

from tasks.gametheory.base import (
    COLUMNS,
    ROWS,
    Category,
    Instance,
    Matrix,
    exact,
    grid,
    labels,
    payoff_table,
    random_matrix,
)
from tasks.gametheory.formats import Number, Profiles, Vector

PAYOFFS = {1: (0, 5), 2: (-5, 9), 3: (-20, 20)}  # payoff range by difficulty (pure equilibria)
MIXED_PAYOFFS = {1: (0, 5), 2: (-6, 9), 3: (-20, 20)}
ZERO_SUM = {1: (2, 2, -4, 4), 2: (2, 3, -6, 6), 3: (3, 3, -9, 9)}  # rows, columns, low, high
SIZES = ((2, 2), (3, 3), (3, 4), (4, 4))


# --------------------------------------------------------------------------- solvers


def pure_equilibria(first: Matrix, second: Matrix) -> list[tuple[int, int]]:
    """Every (row, column) where each player's strategy is a best reply to the other's."""
    rows, columns = len(first), len(first[0])
    return [(i, j) for i in range(rows) for j in range(columns)
            if first[i][j] == max(first[k][j] for k in range(rows))
            and second[i][j] == max(second[i])]


def mixed_equilibrium_2x2(first: Matrix, second: Matrix) -> tuple[Fraction, Fraction]:
    """(p, q) of a 2x2 game's fully mixed equilibrium: p = P(row plays A) makes the column
    player indifferent, q = P(column plays W) makes the row player indifferent."""
    (a, b), (c, d) = first
    (e, f), (g, h) = second
    p = Fraction(h - g, e - g - f + h)
    q = Fraction(d - b, a - b - c + d)
    return p, q


def determinant(matrix: list[list[int]]) -> int:
    """The exact determinant of a small square integer matrix (expansion by the first row)."""
    if len(matrix) == 1:
        return matrix[0][0]
    return sum((-1) ** c * matrix[0][c] * determinant([row[:c] + row[c + 1:] for row in matrix[1:]])
               for c in range(len(matrix)) if matrix[0][c])


def solve_linear(matrix: list[list[int]], rhs: list[int]) -> list[Fraction] | None:
    """The unique solution of ``matrix @ x = rhs`` (square, integer; Cramer's rule, exact), or
    None if ``matrix`` is singular."""
    det = determinant(matrix)
    if det == 0:
        return None
    return [Fraction(determinant([row[:i] + [b] + row[i + 1:] for row, b in zip(matrix, rhs)]),
                     det) for i in range(len(matrix))]


def saddle_value(payoff: Matrix) -> int | None:
    """The value of a game with a saddle point (max of row minima = min of column maxima)."""
    lower = max(min(row) for row in payoff)
    upper = min(max(row[j] for row in payoff) for j in range(len(payoff[0])))
    return lower if lower == upper else None


def zero_sum_value(payoff: Matrix) -> Fraction:
    """The value of the zero-sum game ``payoff`` (to the row player), exact.

    Some optimal row strategy is a basic solution of the linear program ``max v subject to
    x^T A >= v, sum x = 1, x >= 0``: on some support I it equalises some |I| columns J with
    a non-singular system. So the value is the best guarantee ``min_j x^T A[:, j]`` over the
    non-negative solutions of every such square system (|I| = 1: the pure strategies)."""
    rows, columns = len(payoff), len(payoff[0])
    if saddle_value(payoff) is not None:
        return Fraction(saddle_value(payoff))
    best = Fraction(max(min(row) for row in payoff))
    for size in range(2, min(rows, columns) + 1):
        for support in combinations(range(rows), size):
            for tight in combinations(range(columns), size):
                mix = _equaliser(payoff, support, tight)
                if mix is not None:
                    best = max(best, min(sum(mix[i] * payoff[i][j] for i in support)
                                         for j in range(columns)))
    return best


def _equaliser(payoff: Matrix, support: tuple[int, ...],
               tight: tuple[int, ...]) -> dict[int, Fraction] | None:
    """The row mix on ``support`` that pays the same against every column of ``tight``
    (unknowns: the weights and that payment), if unique and non-negative."""
    size = len(support)
    matrix = [[payoff[i][j] for i in support] + [-1] for j in tight]
    matrix.append([1] * size + [0])
    solution = solve_linear(matrix, [0] * size + [1])
    if solution is None or any(weight < 0 for weight in solution[:size]):
        return None
    return dict(zip(support, solution))


# --------------------------------------------------------------------------- categories


def _rules(rows: int, columns: int) -> str:
    return (f"Two players move simultaneously. The row player chooses one of "
            f"{labels(ROWS[:rows])}; the column player chooses one of {labels(COLUMNS[:columns])}. "
            "Each cell shows (row player's payoff, column player's payoff):")


def _draw_pure(rows: int, columns: int):
    def draw(rng: random.Random, difficulty: int) -> Instance:
        low, high = PAYOFFS[difficulty]
        first = random_matrix(rng, rows, columns, low, high)
        second = random_matrix(rng, rows, columns, low, high)
        answer = [[ROWS[i], COLUMNS[j]] for i, j in pure_equilibria(first, second)]
        question = (f"{_rules(rows, columns)}\n\n{payoff_table(first, second)}\n\n"
                    "Find all pure-strategy Nash equilibria (weak ones included: a strategy "
                    "only has to be a best reply, ties allowed).")
        return Instance((first, second), question, answer)

    return draw


def _draw_mixed(rng: random.Random, difficulty: int) -> Instance:
    low, high = MIXED_PAYOFFS[difficulty]
    while True:
        first = random_matrix(rng, 2, 2, low, high)
        second = random_matrix(rng, 2, 2, low, high)
        untied = (first[0][0] != first[1][0] and first[0][1] != first[1][1]
                  and second[0][0] != second[0][1] and second[1][0] != second[1][1])
        if untied and not pure_equilibria(first, second):
            break
    p, q = mixed_equilibrium_2x2(first, second)
    question = (f"{_rules(2, 2)}\n\n{payoff_table(first, second)}\n\n"
                "This game has exactly one Nash equilibrium, and in it both players mix. Let p "
                "be the probability that the row player plays A, and q the probability that "
                "the column player plays W. Find p and q.")
    return Instance((first, second), question, {"p": exact(p), "q": exact(q)})


def _draw_zero_sum(rng: random.Random, difficulty: int) -> Instance:
    rows, columns, low, high = ZERO_SUM[difficulty]
    payoff = random_matrix(rng, rows, columns, low, high)
    while difficulty == 3 and saddle_value(payoff) is not None:  # hard: optimal play mixes
        payoff = random_matrix(rng, rows, columns, low, high)
    table = grid(["", *COLUMNS[:columns]],
                 [[ROWS[i], *map(str, payoff[i])] for i in range(rows)])
    question = (f"A two-player zero-sum game: the row player chooses one of "
                f"{labels(ROWS[:rows])}, the column player one of {labels(COLUMNS[:columns])}, "
                "simultaneously. Each cell is the amount the column player pays the row "
                "player (negative: the row player pays):\n\n"
                f"{table}\n\nBoth players may use mixed strategies. What is the value of the "
                "game to the row player (the expected payoff when both play optimally)?")
    return Instance(payoff, question, exact(zero_sum_value(payoff)))


CATEGORIES = (
    *(Category(f"normal_form_{r}x{c}", _draw_pure(r, c),
               Profiles((ROWS[:r], COLUMNS[:c]), "(row strategy, column strategy)"))
      for r, c in SIZES),
    Category("mixed_2x2", _draw_mixed, Vector(("p", "q"), Fraction(1, 1000), probabilities=True)),
    Category("zero_sum", _draw_zero_sum, Number()),
)
