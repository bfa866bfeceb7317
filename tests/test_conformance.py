"""One checker over every registered game (built-ins and the adapted samples)."""

import random

import pytest

import envs

GAMES = envs.list_games()


def random_move(game, rng):
    legal = game.legal_actions()
    return rng.choice(legal) if legal is not None else game.sample_action(rng)


def play_random(game_id, seed, max_moves=None):
    game = envs.make(game_id)
    game.reset(seed=seed)
    rng = random.Random(seed)
    limit = max_moves or envs.spec(game_id).max_turns or 500
    observations = []
    for _ in range(limit):
        if game.is_terminal():
            break
        observations.append(game.observe(game.current_player()))
        game.step(random_move(game, rng))
    return game, observations


@pytest.mark.parametrize("game_id", GAMES)
def test_random_play_terminates_with_zero_sum_returns(game_id):
    for seed in range(3):
        game, _ = play_random(game_id, seed, max_moves=2000)
        assert game.is_terminal(), f"{game_id} did not end in 2000 random moves"
        assert sum(game.returns()) == pytest.approx(0.0, abs=1e-9)
        assert len(game.returns()) == game.num_players == 2


@pytest.mark.parametrize("game_id", GAMES)
def test_legal_moves_round_trip_and_illegal_moves_raise(game_id):
    game = envs.make(game_id)
    game.reset(seed=5)
    rng = random.Random(5)
    moves = 0
    while not game.is_terminal() and moves < 30:
        legal = game.legal_actions()
        if legal is not None:
            assert legal, "no legal moves in a live state"
            for action in legal:
                assert game.parse_action(action) == action
                assert game.parse_action(f"I choose \\boxed{{{action}}}.") == action
        move = random_move(game, rng)
        assert game.parse_action(move) == move
        with pytest.raises(ValueError):
            game.step("[definitely not a move]")
        assert isinstance(game.render(), str)
        game.step(move)
        moves += 1


@pytest.mark.parametrize("game_id", GAMES)
def test_same_seed_same_observations(game_id):
    _, first = play_random(game_id, seed=11, max_moves=20)
    _, second = play_random(game_id, seed=11, max_moves=20)
    assert first == second and first


@pytest.mark.parametrize("game_id", GAMES)
def test_step_after_end_raises(game_id):
    game, _ = play_random(game_id, seed=2, max_moves=2000)
    if not game.is_terminal():
        pytest.fail(f"{game_id} did not end")
    with pytest.raises(ValueError):
        game.step("[bet]")
