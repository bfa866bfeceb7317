"""TicTacToe against open_spiel's tic_tac_toe and the exact facts of the game."""

from __future__ import annotations

import random
import time
from fractions import Fraction

import pyspiel
import pytest

import envs
from envs.tictactoe import ACTIONS, TicTacToe
from envs.tictactoe_solver import best_cells, minimax_value


def game_after(moves: list[int]) -> TicTacToe:
    game = TicTacToe()
    game.reset(seed=0)
    for cell in moves:
        game.step(ACTIONS[cell])
    return game


def test_every_reachable_position_matches_open_spiel():
    spiel = pyspiel.load_game("tic_tac_toe")
    seen: set[str] = set()
    stack: list[list[int]] = [[]]
    while stack:
        moves = stack.pop()
        ours, theirs = game_after(moves), spiel.new_initial_state()
        for cell in moves:
            theirs.apply_action(cell)
        if ours.board() in seen:
            continue
        seen.add(ours.board())
        assert ours.is_terminal() == theirs.is_terminal(), moves
        if ours.is_terminal():
            assert ours.returns() == tuple(theirs.returns()), moves
            assert ours.legal_actions() == []
            continue
        assert ours.current_player() == theirs.current_player()
        assert ours.legal_actions() == [ACTIONS[a] for a in theirs.legal_actions()], moves
        assert ours.returns() == (0.0, 0.0)
        stack.extend(moves + [cell] for cell in theirs.legal_actions())
    assert len(seen) == 5478


def random_play_value(moves: list[int], memo: dict[str, Fraction]) -> Fraction:
    """Player 0's exact expected return under uniform random play after ``moves``."""
    game = game_after(moves)
    if game.board() not in memo:
        if game.is_terminal():
            value = Fraction(game.returns()[0])
        else:
            children = [moves + [ACTIONS.index(a)] for a in game.legal_actions()]
            value = sum(random_play_value(child, memo) for child in children) / len(children)
        memo[game.board()] = value
    return memo[game.board()]


def test_exact_value_of_uniform_random_play():
    value = random_play_value([], {})
    assert round(float(value), 4) == 0.2968
    assert abs(float(value) - 0.29682) < 1e-5


def test_minimax_values_and_best_moves():
    assert minimax_value("." * 9) == 0
    assert best_cells("." * 9) == list(range(9))  # every first move draws
    assert minimax_value("....X....") == 0 and best_cells("....X....") == [0, 2, 6, 8]
    assert minimax_value(".O..X....") == 1  # an edge reply to the centre loses
    assert minimax_value("XO.......") == 1  # an edge next to X's corner loses
    assert best_cells("X...O...X") == [1, 3, 5, 7]  # O must answer opposite corners on an edge
    assert best_cells("XX.OO....") == [2]  # X completes the top row


def test_observation_shows_board_and_moves():
    game = game_after([0, 4])
    text = game.observe(0)
    assert " X | 1 | 2 \n---+---+---\n 3 | O | 5 \n---+---+---\n 6 | 7 | 8 " in text
    assert "You are Player 0 (X)." in text
    assert "Valid moves: [1], [2], [3], [5], [6], [7], [8]" in text
    assert "Valid moves" not in game.observe(1)
    finished = game_after([0, 3, 1, 4, 2])
    assert finished.is_terminal() and finished.returns() == (1.0, -1.0)
    assert "Player 0 (X) wins." in finished.observe(1)


@pytest.mark.parametrize(
    "text, expected",
    [("4", "[4]"), ("[4]", "[4]"), ("\\boxed{4}", "[4]"), ("\\boxed{[4]}", "[4]"),
     ("4.", "[4]"), ("0", None), ("9", None), ("cell 4", None), (None, None), ("", None)],
)  # fmt: skip
def test_parse_action(text, expected):
    assert game_after([0]).parse_action(text) == expected


def test_illegal_steps_raise():
    game = game_after([0])
    for bad in ("[0]", "4", "[9]", None):
        with pytest.raises(ValueError):
            game.step(bad)
    finished = game_after([0, 3, 1, 4, 2])
    with pytest.raises(ValueError, match="over"):
        finished.step("[5]")


def test_draw_fills_the_board():
    game = game_after([0, 4, 8, 1, 7, 6, 2, 5, 3])
    assert game.is_terminal() and game.returns() == (0.0, 0.0)
    assert "draw" in game.observe(0)


def test_registered_and_fast():
    game = envs.make("TicTacToe-v1")
    assert isinstance(game, TicTacToe)
    rng, steps, start = random.Random(0), 0, time.perf_counter()
    for seed in range(2000):
        game.reset(seed)
        while not game.is_terminal():
            game.step(rng.choice(game.legal_actions()))
            steps += 1
    assert steps / (time.perf_counter() - start) > 20_000
