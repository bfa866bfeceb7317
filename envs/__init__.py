"""spiral's game arena: two-player zero-sum text games behind one protocol and one registry.

>>> import envs
>>> game = envs.make("KuhnPoker-v1")
>>> game.reset(seed=0)
>>> print(game.observe(game.current_player()))
"""

from envs.core import (
    Game,
    GameSpec,
    list_games,
    make,
    match_action,
    register,
    register_namespace,
    spec,
)

__all__ = [
    "Game",
    "GameSpec",
    "list_games",
    "make",
    "match_action",
    "register",
    "register_namespace",
    "spec",
]

# Built-in games: our own implementations of the rules.
register("KuhnPoker-v1", "envs.kuhn:KuhnPoker")
register("TicTacToe-v1", "envs.tictactoe:TicTacToe")
register("SimpleNegotiation-v1", "envs.negotiation:SimpleNegotiation", max_turns=10)

# Adapters: any open_spiel / textarena two-player game as "openspiel/<name>", "textarena/<id>".
from envs import openspiel_game, textarena_game  # noqa: E402  (registration order matters)

openspiel_game.register_adapter()
textarena_game.register_adapter()
