"""Fixed opponents for evaluation and training: uniform random and (near-)optimal play.

An opponent answers ``act(game, rng) -> str`` with text that ``game.parse_action`` maps to a
legal action of ``game.current_player()`` (it returns the canonical action itself). All of its
randomness comes from the ``rng`` it is given. Opponents may read the game's internal state, but
only the acting player's own information: the public history plus its own private card (Kuhn),
the public board (TicTacToe), its own holdings and values (negotiation).

- ``random``: uniform over ``legal_actions()``; for open-ended games (``None``) it asks the game
  for ``game.sample_action(rng)``. Works for every game.
- ``optimal``: KuhnPoker-v1 plays the Nash equilibrium ``kuhn_equilibrium_policy()`` on its own
  information state of the current hand; TicTacToe-v1 plays perfect minimax with a random
  tie-break among the best moves; SimpleNegotiation-v1 uses the rule-based negotiator of
  ``envs.negotiation``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

from envs.core import Game
from envs.exploitability import Policy, kuhn_equilibrium_policy
from envs.kuhn import infostate_of
from envs.tictactoe import ACTIONS, EMPTY, LINES, MARKS


class Opponent(Protocol):
    """A fixed policy that plays the current player's move."""

    name: str

    def act(self, game: Game, rng: random.Random) -> str:
        """Text that ``game.parse_action`` maps to a legal action of the current player."""


@dataclass
class RandomOpponent:
    """Uniform over the legal actions; open-ended games supply ``sample_action(rng)``."""

    name: str = "random"

    def act(self, game: Game, rng: random.Random) -> str:
        legal = game.legal_actions()
        if legal is None:
            return game.sample_action(rng)
        if not legal:
            raise ValueError("no legal action: the game is over")
        return rng.choice(legal)


@dataclass
class KuhnEquilibriumOpponent:
    """Samples the Nash equilibrium policy at its own information state (own card + betting)."""

    name: str = "optimal"
    policy: Policy = field(default_factory=kuhn_equilibrium_policy)

    def act(self, game: Game, rng: random.Random) -> str:
        probabilities = self.policy[infostate_of(game)]
        actions = list(probabilities)
        return rng.choices(actions, weights=[probabilities[a] for a in actions])[0]


@dataclass
class TicTacToeMinimaxOpponent:
    """Perfect play: a move of best minimax value, ties broken uniformly with ``rng``."""

    name: str = "optimal"

    def act(self, game: Game, rng: random.Random) -> str:
        return ACTIONS[rng.choice(best_cells(game.board()))]


def best_cells(board: str) -> list[int]:
    """The free cells whose minimax value is best for the player to move on ``board``."""
    values = {cell: -_negamax(_play(board, cell)) for cell in _free_cells(board)}
    best = max(values.values())
    return [cell for cell, value in values.items() if value == best]


def minimax_value(board: str) -> int:
    """The value (+1 win, 0 draw, -1 loss) of ``board`` for the player to move."""
    return _negamax(board)


@cache
def _negamax(board: str) -> int:
    if _has_line(board):  # the previous mover just completed a line
        return -1
    free = _free_cells(board)
    if not free:
        return 0
    return max(-_negamax(_play(board, cell)) for cell in free)


def _free_cells(board: str) -> list[int]:
    return [cell for cell, mark in enumerate(board) if mark == EMPTY]


def _play(board: str, cell: int) -> str:
    mark = MARKS[(9 - board.count(EMPTY)) & 1]  # X on even move counts
    return board[:cell] + mark + board[cell + 1 :]


def _has_line(board: str) -> bool:
    return any(board[a] != EMPTY and board[a] == board[b] == board[c] for a, b, c in LINES)


_OPTIMAL_GAMES = ("KuhnPoker-v1", "SimpleNegotiation-v1", "TicTacToe-v1")
NAMES = ("optimal", "random")


def make_opponent(name: str, game_id: str) -> Opponent:
    """The opponent ``name`` for game ``game_id``; unsupported pairs raise ``ValueError``.

    ``random`` plays any game; ``optimal`` exists for ``_OPTIMAL_GAMES``."""
    if name == "random":
        return RandomOpponent()
    if name != "optimal":
        raise ValueError(f"unknown opponent {name!r}; available: {', '.join(NAMES)}")
    if game_id == "KuhnPoker-v1":
        return KuhnEquilibriumOpponent()
    if game_id == "TicTacToe-v1":
        return TicTacToeMinimaxOpponent()
    if game_id == "SimpleNegotiation-v1":
        from envs.negotiation import RuleBasedNegotiator

        return RuleBasedNegotiator()
    raise ValueError(
        f"no 'optimal' opponent for {game_id!r}; it exists for {', '.join(_OPTIMAL_GAMES)} "
        "('random' plays every game)"
    )
