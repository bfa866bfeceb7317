"""Fixed opponents for evaluation and training: uniform random and (near-)optimal play.

An opponent answers ``act(game, rng) -> str`` with text that ``game.parse_action`` maps to a
legal action of ``game.current_player()`` (it returns the canonical action itself). All of its
randomness comes from the ``rng`` it is given. Opponents may read the game's internal state, but
only the acting player's own information: the public history plus its own private card (Kuhn),
the public board (TicTacToe), its own holdings and values (negotiation).

- ``random``: uniform over ``legal_actions()``; for open-ended games (``None``) it asks the game
  for ``game.sample_action(rng)``. Works for every game.
- any other name (``optimal``) is registered with the game (``register(..., opponents=...)``):
  Kuhn Poker's Nash equilibrium (``envs.exploitability``), TicTacToe's minimax
  (``envs.tictactoe_solver``), Simple Negotiation's rule-based negotiator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from envs.core import Game, OpenEndedGame, list_games, spec


class Opponent(Protocol):
    """A fixed policy that plays the current player's move."""

    name: str

    def act(self, game: Game, rng: random.Random) -> str:
        """Text that ``game.parse_action`` maps to a legal action of the current player."""


@dataclass
class RandomOpponent:
    """Uniform over the legal actions; open-ended games draw a move themselves
    (``envs.OpenEndedGame.sample_action``)."""

    name: str = "random"

    def act(self, game: Game, rng: random.Random) -> str:
        legal = game.legal_actions()
        if legal is None:
            if not isinstance(game, OpenEndedGame):
                raise TypeError(f"{type(game).__name__} has free-text moves but no "
                                "sample_action(rng) (see envs.OpenEndedGame)")
            return game.sample_action(rng)
        if not legal:
            raise ValueError("no legal action: the game is over")
        return rng.choice(legal)



def make_opponent(name: str, game_id: str) -> Opponent:
    """The opponent ``name`` for game ``game_id``; unsupported pairs raise ``ValueError``.

    ``random`` plays any game; other names are those the game registered (``optimal``: its
    reference player, e.g. Kuhn's Nash equilibrium or TicTacToe's minimax)."""
    if name == "random":
        return RandomOpponent()
    try:
        return spec(game_id).opponent(name)
    except ValueError as err:
        having = [g for g in list_games() if name in spec(g).opponents]
        where = f"registered for {', '.join(having)}" if having else "registered for no game"
        raise ValueError(f"{err} ({name!r} is {where})") from None
