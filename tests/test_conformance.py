"""One checker over every registered game (built-ins and the adapted samples): the public
``envs.check_game`` rules, plus what they leave out (``render`` is a debug string)."""

import random

import pytest

import envs
from envs.opponents import RandomOpponent

GAMES = envs.list_games()


def random_move(game, rng):
    """The random opponent's move (also used by test_parse_fuzz)."""
    return RandomOpponent().act(game, rng)


@pytest.mark.parametrize("game_id", GAMES)
def test_check_game(game_id):
    report = envs.check_game(game_id)
    assert report.game == game_id and report.states > 0


@pytest.mark.parametrize("game_id", GAMES)
def test_render_is_a_string_in_every_state(game_id):
    game = envs.make(game_id)
    game.reset(seed=5)
    rng = random.Random(5)
    while not game.is_terminal():
        assert isinstance(game.render(), str) and game.render()
        game.step(random_move(game, rng))
    assert isinstance(game.render(), str)
