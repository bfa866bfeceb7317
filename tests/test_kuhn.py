"""KuhnPoker against open_spiel's kuhn_poker and the exact facts of the game."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pyspiel
import pytest

import envs
from envs.kuhn import (
    CARDS,
    INFOSTATES,
    PASS_ACTIONS,
    KuhnPoker,
    action_for,
    infostate_game,
    infostate_of,
)

DEALS = list(itertools.permutations(CARDS, 2))  # (player 0's card, player 1's card)


def new_game(deal: tuple[str, str], history: str = "", rounds: int = 1) -> KuhnPoker:
    game = KuhnPoker(rounds=rounds)
    game.reset(seed=0, deal=deal)
    for letter in history:
        game.step(action_for(letter, game.legal_actions()))
    return game


def letter(action: str) -> str:
    return "p" if action in PASS_ACTIONS else "b"


def betting_lines(deal: tuple[str, str]) -> list[str]:
    """Every betting history of one hand (terminal ones included), depth first."""
    lines, stack = [], [""]
    while stack:
        history = stack.pop()
        lines.append(history)
        game = new_game(deal, history)
        stack.extend(history + letter(a) for a in game.legal_actions())
    return lines


@pytest.mark.parametrize("deal", DEALS)
def test_every_betting_line_matches_open_spiel(deal):
    spiel = pyspiel.load_game("kuhn_poker")
    histories = betting_lines(deal)
    assert sorted(histories) == sorted(["", "p", "b", "pp", "pb", "bp", "bb", "pbp", "pbb"])
    for history in histories:
        ours, theirs = new_game(deal, history), spiel.new_initial_state()
        chance = [CARDS.index(deal[0]), CARDS.index(deal[1])]
        for action in chance + ["pb".index(x) for x in history]:
            theirs.apply_action(action)
        assert ours.is_terminal() == theirs.is_terminal(), history
        if theirs.is_terminal():
            assert ours.returns() == tuple(theirs.returns()), (deal, history)
            assert ours.legal_actions() == []
            continue
        assert ours.current_player() == theirs.current_player()
        mapped = sorted("pb".index(letter(a)) for a in ours.legal_actions())
        assert mapped == theirs.legal_actions(), (deal, history)
        assert infostate_of(ours) == "JQK"[int(theirs.information_state_string()[0])] + history
        assert ours.returns() == (0.0, 0.0)


def test_legal_sets_are_check_bet_then_call_fold():
    assert new_game(("J", "Q")).legal_actions() == ["[check]", "[bet]"]
    assert new_game(("J", "Q"), "p").legal_actions() == ["[check]", "[bet]"]
    assert new_game(("J", "Q"), "b").legal_actions() == ["[call]", "[fold]"]
    assert new_game(("J", "Q"), "pb").legal_actions() == ["[call]", "[fold]"]
    assert new_game(("K", "J"), "pbb").returns() == (2.0, -2.0)
    assert new_game(("K", "J"), "pbp").returns() == (-1.0, 1.0)


def uniform_value(game_history: str, deal: tuple[str, str]) -> Fraction:
    game = new_game(deal, game_history)
    if game.is_terminal():
        return Fraction(game.returns()[0])
    legal = game.legal_actions()
    return sum(uniform_value(game_history + letter(a), deal) for a in legal) / len(legal)


def test_uniform_random_value_is_one_eighth_exactly_and_by_monte_carlo():
    assert sum(uniform_value("", deal) for deal in DEALS) / len(DEALS) == Fraction(1, 8)
    game, rng, total, games = KuhnPoker(), random.Random(7), 0.0, 20_000
    for seed in range(games):
        game.reset(seed)
        while not game.is_terminal():
            game.step(rng.choice(game.legal_actions()))
        total += game.returns()[0]
    assert abs(total / games - 0.125) < 0.04  # standard error is about 0.01


def test_reset_is_seeded_and_deals_every_card_pair():
    seen = set()
    for seed in range(200):
        game_a, game_b = KuhnPoker(), KuhnPoker()
        game_a.reset(seed)
        game_b.reset(seed)
        assert game_a.render() == game_b.render()
        seen.add((game_a.private_card(0), game_a.private_card(1)))
    assert seen == set(DEALS)


def play_random_match(rounds: int, seed: int) -> tuple[KuhnPoker, list[int]]:
    """Random play; returns the finished game and the first player of each hand."""
    game, rng, openers = KuhnPoker(rounds=rounds), random.Random(seed), []
    game.reset(seed)
    while not game.is_terminal():
        if game.hand_history() == "":
            openers.append(game.current_player())
        game.step(rng.choice(game.legal_actions()))
    return game, openers


def test_multi_hand_match_alternates_opener_and_returns_sign_of_chips():
    outcomes = set()
    for seed in range(60):
        game, openers = play_random_match(rounds=4, seed=seed)
        assert openers == [0, 1, 0, 1]
        chips = game.chips()
        assert chips[0] + chips[1] == 0
        expected = (chips[0] > 0) - (chips[0] < 0)
        assert game.returns() == (float(expected), float(-expected))
        outcomes.add(expected)
    assert outcomes == {-1, 0, 1}


def test_multi_hand_observation_shows_hand_number_and_chips():
    game = KuhnPoker(rounds=3)
    game.reset(seed=5)
    game.step("[bet]")
    game.step("[fold]")  # player 0 wins the antes of hand 1
    text = game.observe(1)
    assert "Hand 2 of 3." in text and "Player 0: +1, Player 1: -1" in text
    assert game.current_player() == 1 and "Betting so far this hand: none." in text


def all_states(rounds: int = 1):
    """(deal, history, game) for every state of a single hand, terminal ones included."""
    for deal in DEALS:
        for history in betting_lines(deal):
            yield deal, history, new_game(deal, history, rounds)


@pytest.mark.parametrize("rounds", [1, 3])
def test_observation_never_reveals_the_opponent_card(rounds):
    for deal, history, game in all_states(rounds):
        if game.is_terminal() or game.hand_history() != history:
            continue  # the next hand has begun (rounds > 1) or the match is over
        for player in (0, 1):
            text = game.observe(player)
            assert f"Your card: {deal[player]}\n" in text
            assert text.count("Your card:") == 1
            swapped = list(deal)
            swapped[1 - player] = next(c for c in CARDS if c not in deal)
            twin = new_game(tuple(swapped), history, rounds)
            assert twin.observe(player) == text, (deal, history, player)


def test_observation_lists_betting_and_moves():
    game = new_game(("Q", "K"), "pb")
    text = game.observe(0)
    assert "You are Player 0." in text and "Your card: Q" in text
    assert "Player 0: [check]\nPlayer 1: [bet]" in text
    assert "Valid moves: [call], [fold]" in text and "\\boxed{MOVE}" in text
    assert "Valid moves" not in game.observe(1)


def test_infostates_round_trip():
    assert INFOSTATES == "J Q K Jp Qp Kp Jb Qb Kb Jpb Qpb Kpb".split()
    for key in INFOSTATES:
        observations = set()
        for other in (c for c in CARDS if c != key[0]):
            game = infostate_game(key, opponent_card=other)
            assert infostate_of(game) == key
            assert game.private_card(game.current_player()) == key[0]
            observations.add(game.observe(game.current_player()))
        assert len(observations) == 1, key
    with pytest.raises(ValueError, match="Kx"):
        infostate_game("Kx")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("bet", "[bet]"),
        ("[Bet]", "[bet]"),
        ("\\boxed{bet}", "[bet]"),
        ("\\boxed{[bet]}", "[bet]"),
        ("I will bet.", None),
        ("bet!", "[bet]"),
        ("call", None),
        ("", None),
        (None, None),
        (3, None),
    ],
)
def test_parse_action(text, expected):
    game = new_game(("J", "K"))
    assert game.parse_action(text) == expected


def test_illegal_steps_raise():
    game = new_game(("J", "K"))
    for bad in ("[call]", "bet", "[BET]", None, 1):
        with pytest.raises(ValueError):
            game.step(bad)
    game.step("[bet]")
    game.step("[fold]")
    with pytest.raises(ValueError, match="over"):
        game.step("[check]")
    with pytest.raises(ValueError):
        KuhnPoker(rounds=0)
    with pytest.raises(ValueError):
        KuhnPoker().reset(seed=0, deal=("J", "J"))


def test_registered_and_fast():
    import time

    game = envs.make("KuhnPoker-v1")
    assert isinstance(game, KuhnPoker) and game.rounds == 1
    rng, steps, start = random.Random(0), 0, time.perf_counter()
    for seed in range(4000):
        game.reset(seed)
        while not game.is_terminal():
            game.step(rng.choice(game.legal_actions()))
            steps += 1
    assert steps / (time.perf_counter() - start) > 20_000
