"""Cooperative games: Shapley values of a characteristic-function game.

Rules. Players 1..n; every coalition S has a worth v(S), with v(empty set) = 0. Player i's
Shapley value is their average marginal contribution over the n! orders in which players can
join:  phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S)).

Worths: each player brings a stand-alone amount and each coalition of two or more adds a
random surplus. Difficulty 1: 3 players, small numbers; 2: 4 players; 3: 4 players with
larger numbers and negative stand-alone amounts.
"""

from __future__ import annotations

import random
from fractions import Fraction
from itertools import combinations
from math import factorial

from tasks.gametheory.base import Category, Instance, exact
from tasks.gametheory.formats import Vector

# players, stand-alone worth range, surplus per extra member
SETTINGS = {1: (3, (0, 4), 4), 2: (4, (0, 5), 6), 3: (4, (-5, 10), 15)}

Coalition = tuple[int, ...]  # sorted player numbers, from 1
Worths = dict[Coalition, int]


def coalitions(players: int) -> list[Coalition]:
    """Every non-empty coalition of players 1..``players``, by size, then lexicographically."""
    return [group for size in range(1, players + 1)
            for group in combinations(range(1, players + 1), size)]


def shapley_values(players: int, worth: Worths) -> list[Fraction]:
    """Each player's Shapley value, by the coalition-weight formula."""
    def v(group: Coalition) -> int:
        return worth[group] if group else 0

    values = []
    for player in range(1, players + 1):
        others = [p for p in range(1, players + 1) if p != player]
        total = 0  # the sum, times n!
        for size in range(players):
            weight = factorial(size) * factorial(players - size - 1)
            for group in combinations(others, size):
                total += weight * (v(tuple(sorted((*group, player)))) - v(group))
        values.append(Fraction(total, factorial(players)))
    return values


def random_worths(rng: random.Random, players: int, alone: tuple[int, int],
                  surplus: int) -> Worths:
    own = {p: rng.randint(*alone) for p in range(1, players + 1)}
    return {group: sum(own[p] for p in group)
            + (rng.randint(0, surplus * (len(group) - 1)) if len(group) > 1 else 0)
            for group in coalitions(players)}


def _draw(rng: random.Random, difficulty: int) -> Instance:
    players, alone, surplus = SETTINGS[difficulty]
    worth = random_worths(rng, players, alone, surplus)
    lines = [f"  v({{{', '.join(map(str, group))}}}) = {value}" for group, value in worth.items()]
    question = (f"A cooperative game with {players} players, numbered 1 to {players}. The worth "
                "v(S) of each coalition S is (the empty coalition is worth 0):\n\n"
                + "\n".join(lines) + "\n\nFind each player's Shapley value.")
    answer = [exact(value) for value in shapley_values(players, worth)]
    return Instance(tuple(worth.items()), question, answer)


CATEGORIES = (Category("cooperative", _draw, Vector()),)
