"""The fixed opponents: random plays legally everywhere, optimal is optimal."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from fractions import Fraction

import pytest

import envs
from envs.exploitability import KuhnEquilibriumOpponent, kuhn_equilibrium_policy
from envs.kuhn import CARDS, KuhnPoker, action_for, infostate_game, infostate_of
from envs.opponents import RandomOpponent, make_opponent
from envs.tictactoe import TicTacToe
from envs.tictactoe_solver import TicTacToeMinimaxOpponent


def play(game, seats, rng: random.Random, max_turns: int = 200):
    """Play one match with ``seats[p]`` choosing player p's moves; returns the returns."""
    for _ in range(max_turns):
        if game.is_terminal():
            break
        text = seats[game.current_player()].act(game, rng)
        action = game.parse_action(text)
        assert action is not None, text
        if game.legal_actions() is not None:
            assert action in game.legal_actions()
        game.step(action)
    return game.returns()


def test_minimax_self_play_always_draws():
    optimal = make_opponent("optimal", "TicTacToe-v1")
    for seed in range(50):
        game = TicTacToe()
        game.reset(seed)
        assert play(game, [optimal, optimal], random.Random(seed)) == (0.0, 0.0)


def test_minimax_never_loses_to_random():
    optimal, rand = make_opponent("optimal", "TicTacToe-v1"), make_opponent("random", "")
    wins = 0
    for seed in range(200):
        seat = seed % 2
        seats = [optimal, rand] if seat == 0 else [rand, optimal]
        game = TicTacToe()
        game.reset(seed)
        result = play(game, seats, random.Random(seed))[seat]
        assert result >= 0.0, seed
        wins += result == 1.0
    assert wins > 150  # random play loses most games against perfect play


def equilibrium_vs_uniform(game: KuhnPoker, optimal_seat: int) -> Fraction:
    """The optimal seat's exact expected chips from ``game`` against uniform random."""
    if game.is_terminal():
        return Fraction(game.returns()[optimal_seat])
    policy = kuhn_equilibrium_policy()
    legal = game.legal_actions()
    total = Fraction(0)
    for action in legal:
        if game.current_player() == optimal_seat:
            weight = Fraction(policy[infostate_of(game)][action]).limit_denominator(100)
        else:
            weight = Fraction(1, len(legal))
        if weight:
            child = replay(game, action)
            total += weight * equilibrium_vs_uniform(child, optimal_seat)
    return total


def replay(game: KuhnPoker, action: str) -> KuhnPoker:
    child = KuhnPoker()
    child.reset(seed=0, deal=(game.private_card(0), game.private_card(1)))
    for letter in game.hand_history():
        child.step(action_for(letter, child.legal_actions()))
    child.step(action)
    return child


@pytest.mark.parametrize("optimal_seat", [0, 1])
def test_kuhn_equilibrium_beats_random_exactly(optimal_seat):
    values = []
    for deal in itertools.permutations(CARDS, 2):
        game = KuhnPoker()
        game.reset(seed=0, deal=deal)
        values.append(equilibrium_vs_uniform(game, optimal_seat))
    assert sum(values) / len(values) == Fraction(1, 6)


def test_kuhn_opponent_samples_the_equilibrium_and_wins_by_monte_carlo():
    optimal = make_opponent("optimal", "KuhnPoker-v1")
    counts = Counter(optimal.act(infostate_game("J"), random.Random(i)) for i in range(3000))
    assert set(counts) == {"[bet]", "[check]"} and abs(counts["[bet]"] / 3000 - 1 / 3) < 0.03
    rng, total, games = random.Random(11), 0.0, 20_000
    for seed in range(games):
        game = KuhnPoker()
        game.reset(seed)
        seat = seed % 2
        seats = [optimal, RandomOpponent()] if seat == 0 else [RandomOpponent(), optimal]
        total += play(game, seats, rng)[seat]
    assert abs(total / games - 1 / 6) < 0.04  # standard error is about 0.01


def test_kuhn_opponent_plays_multi_hand_matches():
    optimal, rand = make_opponent("optimal", "KuhnPoker-v1"), RandomOpponent()
    results = Counter()
    for seed in range(100):
        game = KuhnPoker(rounds=5)
        game.reset(seed)
        results[play(game, [optimal, rand], random.Random(seed))[0]] += 1
    assert results[1.0] > results[-1.0]


@pytest.mark.parametrize("game_id", envs.list_games())
def test_random_plays_every_registered_game_legally(game_id):
    rand = make_opponent("random", game_id)
    for seed in range(3):
        game = envs.make(game_id)
        game.reset(seed)
        returns = play(game, [rand, rand], random.Random(seed))
        assert abs(sum(returns)) < 1e-9


def test_make_opponent_rejects_unknown_names_and_games():
    assert isinstance(make_opponent("optimal", "KuhnPoker-v1"), KuhnEquilibriumOpponent)
    assert isinstance(make_opponent("optimal", "TicTacToe-v1"), TicTacToeMinimaxOpponent)
    assert make_opponent("random", "openspiel/leduc_poker").name == "random"
    with pytest.raises(ValueError, match="random"):
        make_opponent("genius", "KuhnPoker-v1")
    with pytest.raises(ValueError, match="TicTacToe-v1"):
        make_opponent("optimal", "openspiel/leduc_poker")
