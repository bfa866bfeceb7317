"""Sequential games of perfect information, solved by backward induction.

Rules. Player 1 moves first, then Player 2, then (in depth-3 games) Player 1 again; each sees
every earlier move. At depth d the mover picks one of ``LEVELS[d][:branching[d]]``, whatever
was played before. After the last move the game ends and pays each player the amount listed
for that sequence of moves. Each player maximises their own payoff.

The answer is the subgame-perfect equilibrium path: the moves actually played when every
player, at every decision point, picks the move whose (backward-induced) continuation pays
them most. Payoffs to each player are distinct across outcomes, so no decision is ever tied
and the path is unique.
"""

from __future__ import annotations

import random
from itertools import product

from tasks.gametheory.base import Category, Instance, labels
from tasks.gametheory.formats import Sequence

LEVELS = ("ABC", "XYZ", "LMR")  # move labels by depth (Player 1, Player 2, Player 1)
BRANCHING = {1: (2, 2), 2: (2, 2, 2), 3: (3, 2, 2)}  # moves per decision point, by depth
PAYOFFS = {1: range(0, 10), 2: range(0, 20), 3: range(-10, 20)}  # distinct payoffs from here

History = tuple[str, ...]
Outcomes = dict[History, tuple[int, int]]  # full move sequence -> (Player 1's, Player 2's)


def mover(history: History) -> int:
    """The player to move after ``history``: 0 for Player 1, 1 for Player 2."""
    return len(history) % 2


def backward_induction(outcomes: Outcomes, history: History = ()) -> History:
    """The subgame-perfect path from ``history`` on: the full sequence of moves played."""
    if history in outcomes:
        return history
    depth = len(history)
    branching = len({path[depth] for path in outcomes if path[:depth] == history})
    paths = [backward_induction(outcomes, (*history, move))
             for move in LEVELS[depth][:branching]]
    player = mover(history)
    return max(paths, key=lambda path: outcomes[path][player])


def random_outcomes(rng: random.Random, branching: tuple[int, ...],
                    payoffs: range) -> Outcomes:
    """Each move sequence with payoffs drawn without replacement, separately per player."""
    paths = list(product(*(LEVELS[depth][:width] for depth, width in enumerate(branching))))
    first = rng.sample(payoffs, len(paths))
    second = rng.sample(payoffs, len(paths))
    return {path: (a, b) for path, a, b in zip(paths, first, second)}


def _describe(branching: tuple[int, ...]) -> str:
    players = ("Player 1", "Player 2")
    steps = [f"{players[0]} moves first, choosing {labels(LEVELS[0][:branching[0]])}."]
    for depth in range(1, len(branching)):
        steps.append(f"Then {players[depth % 2]}, having seen every earlier move, chooses "
                     f"{labels(LEVELS[depth][:branching[depth]])}.")
    return " ".join(steps)


def _draw(rng: random.Random, difficulty: int) -> Instance:
    branching = BRANCHING[difficulty]
    outcomes = random_outcomes(rng, branching, PAYOFFS[difficulty])
    lines = [f"  {', '.join(path)}: ({a}, {b})" for path, (a, b) in outcomes.items()]
    question = (f"A two-player game of perfect information. {_describe(branching)} Then the "
                "game ends, paying (Player 1's payoff, Player 2's payoff) according to the "
                "moves made:\n\n" + "\n".join(lines) + "\n\nEach player maximises their own "
                "payoff, and both know everything above. Find the subgame-perfect equilibrium "
                "outcome by backward induction: which moves are actually played?")
    data = tuple((path, pay) for path, pay in outcomes.items())
    return Instance(data, question, list(backward_induction(outcomes)))


CATEGORIES = (Category("sequential", _draw, Sequence(LEVELS)),)
