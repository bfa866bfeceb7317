"""The registry (fixed interface): make, list_games, register, namespaces and clear errors."""

import pytest

import envs
from envs.core import GameSpec, register_namespace


def test_builtins_listed_and_made():
    ids = envs.list_games()
    for game_id in ("KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1"):
        assert game_id in ids
        game = envs.make(game_id)
        game.reset(seed=0)
        assert game.num_players == 2
        assert isinstance(game, envs.Game)


def test_unknown_id_lists_registered_ids():
    with pytest.raises(KeyError) as err:
        envs.make("NoSuchGame-v9")
    message = str(err.value)
    assert "NoSuchGame-v9" in message
    for game_id in ("KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1"):
        assert game_id in message


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        envs.register("KuhnPoker-v1", "envs.kuhn:KuhnPoker")


def test_bad_entry_point_raises():
    with pytest.raises(ValueError, match="module:Class"):
        envs.register("Broken-v1", "envs.kuhn.KuhnPoker")
    assert "Broken-v1" not in envs.list_games()


def test_overrides_update_registered_kwargs():
    game = envs.make("KuhnPoker-v1", rounds=3)
    assert game.rounds == 3


def test_namespace_resolves_any_name():
    register_namespace("testns", lambda name: GameSpec(f"testns/{name}", "envs.kuhn:KuhnPoker"))
    game = envs.make("testns/anything")
    game.reset(seed=1)
    assert game.legal_actions() == ["[check]", "[bet]"]
    # a registered sample keeps its spec; a name only the namespace knows is resolved from
    # open_spiel's game (its longest game bounds the turns)
    assert envs.spec("openspiel/kuhn_poker").max_turns == 3
    import pyspiel

    want = pyspiel.load_game("nim").max_game_length()
    assert envs.spec("openspiel/nim").max_turns == want
    assert "openspiel/kuhn_poker" in envs.list_games()
