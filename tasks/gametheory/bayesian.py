"""Bayesian games: the pure Bayesian Nash equilibria of a game with one-sided private types.

Rules. Player 2 (the column player) is of type 1 with probability ``prior`` and of type 2
otherwise; they know their type, Player 1 (the row player) knows only the prior. Both move
at the same time: Player 1 picks a row (``A``, ``B``, ...), Player 2 a column (``W`` or ``X``).
Payoffs depend on the type: type t's bimatrix ``games[t]``.

A pure strategy of Player 2 says what each type plays, so a pure profile is (row, type 1's
column, type 2's column). It is a Bayesian Nash equilibrium when each type's column is a best
reply to the row in that type's game, and the row maximises Player 1's expected payoff
(over the prior) against the two types' columns; ties allowed (weak equilibria count).
Difficulty 1: 2x2, prior 1/2; 2: 2x2, other priors; 3: 3x2, payoffs with more spread.
"""

from __future__ import annotations

import random
from fractions import Fraction

from tasks.gametheory.base import (
    COLUMNS,
    ROWS,
    Category,
    Instance,
    Matrix,
    labels,
    payoff_table,
    random_matrix,
)
from tasks.gametheory.formats import Profiles

SETTINGS = {  # rows, payoff range, priors of type 1
    1: (2, (0, 5), ((1, 2),)),
    2: (2, (-5, 9), ((1, 4), (1, 3), (2, 3), (3, 4))),
    3: (3, (-9, 9), ((1, 5), (2, 5), (3, 5), (4, 5), (1, 3), (2, 3))),
}
TYPE_COLUMNS = COLUMNS[:2]

Bimatrix = tuple[Matrix, Matrix]  # (Player 1's payoffs, Player 2's payoffs)


def pure_bayesian_equilibria(prior: Fraction,
                             games: tuple[Bimatrix, Bimatrix]) -> list[tuple[int, int, int]]:
    """Every (row, type 1's column, type 2's column) that is a Bayesian Nash equilibrium."""
    (first_1, second_1), (first_2, second_2) = games
    rows, columns = range(len(first_1)), range(len(first_1[0]))
    found = []
    for row in rows:
        for col_1 in (c for c in columns if second_1[row][c] == max(second_1[row])):
            for col_2 in (c for c in columns if second_2[row][c] == max(second_2[row])):
                expected = [prior * first_1[r][col_1] + (1 - prior) * first_2[r][col_2]
                            for r in rows]
                if expected[row] == max(expected):
                    found.append((row, col_1, col_2))
    return found


def _draw(rng: random.Random, difficulty: int) -> Instance:
    rows, (low, high), priors = SETTINGS[difficulty]
    prior = Fraction(*rng.choice(priors))
    games = tuple((random_matrix(rng, rows, 2, low, high), random_matrix(rng, rows, 2, low, high))
                  for _ in range(2))
    answer = [[ROWS[r], TYPE_COLUMNS[c1], TYPE_COLUMNS[c2]]
              for r, c1, c2 in pure_bayesian_equilibria(prior, games)]
    question = (
        f"Player 2 has a private type: type 1 with probability {prior}, type 2 with "
        f"probability {1 - prior}. Player 2 knows their type; Player 1 knows only these "
        f"probabilities. At the same time, Player 1 chooses a row ({labels(ROWS[:rows])}) and "
        f"Player 2 a column ({labels(TYPE_COLUMNS)}). Each cell shows (Player 1's payoff, "
        "Player 2's payoff).\n\nIf Player 2 is type 1:\n\n"
        f"{payoff_table(*games[0])}\n\nIf Player 2 is type 2:\n\n{payoff_table(*games[1])}\n\n"
        "Find all pure-strategy Bayesian Nash equilibria (weak ones included). A strategy of "
        "Player 2 says which column each type plays.")
    return Instance(((prior.numerator, prior.denominator), games), question, answer)


CATEGORIES = (Category("bayesian", _draw, Profiles(
    (ROWS[:3], TYPE_COLUMNS, TYPE_COLUMNS),
    "(Player 1's row, type 1's column, type 2's column)")),)
