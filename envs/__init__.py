"""spiral's game arena: two-player zero-sum text games behind one protocol and one registry.

>>> import envs
>>> game = envs.make("KuhnPoker-v1")
>>> game.reset(seed=0)
>>> print(game.observe(game.current_player()))
"""

from envs.core import (
    ExactMetrics,
    Game,
    GameSpec,
    OpenEndedGame,
    list_games,
    make,
    match_action,
    register,
    register_namespace,
    spec,
)

__all__ = [
    "ExactMetrics",
    "Game",
    "GameCheckError",
    "GameSpec",
    "OpenEndedGame",
    "check_game",
    "list_games",
    "make",
    "match_action",
    "register",
    "register_namespace",
    "spec",
]


def __getattr__(name: str):
    """``check_game`` and ``GameCheckError`` load on first use, so that ``python -m envs.check``
    runs its module once."""
    if name in ("check_game", "GameCheckError"):
        from envs import check

        return getattr(check, name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


# Built-in games: our own implementations of the rules.
# Each registration carries what training and evaluation need to know about the game.
register("KuhnPoker-v1", "envs.kuhn:KuhnPoker", answer="envs.kuhn:answer_text",
         opponents={"optimal": "envs.exploitability:KuhnEquilibriumOpponent"},
         exact="envs.exploitability:EXACT")
register("TicTacToe-v1", "envs.tictactoe:TicTacToe",
         opponents={"optimal": "envs.tictactoe_solver:TicTacToeMinimaxOpponent"},
         exact="envs.tictactoe_solver:EXACT")
register("SimpleNegotiation-v1", "envs.negotiation:SimpleNegotiation", max_turns=10,
         opponents={"optimal": "envs.negotiation:RuleBasedNegotiator"})

# Adapters: any open_spiel / textarena two-player game as "openspiel/<name>", "textarena/<id>".
from envs import openspiel_game, textarena_game  # noqa: E402  (registration order matters)

openspiel_game.register_adapter()
textarena_game.register_adapter()
