"""Thousands of random and adversarial strings into every parse_action: never an exception."""

import random
import string

import pytest

import envs
from tests.test_conformance import random_move

ADVERSARIAL = [
    "", " ", "\\boxed{", "\\boxed{}", "\\boxed{{{{", "}}}}", "\\boxed{\\boxed{[bet]}", "[", "]",
    "[]", "[[bet]]", "\x00", "💥" * 50, "\\boxed{" * 1000, "9" * 5000, "[Offer: -> ]",
    "[Offer: 99999999999999999999 Wheat -> 1 Ore]", "None", "null", "\n\n\n", "\\boxed{[0]}}",
    "<|im_end|>", "[Accept] [Deny]", "-1", "[-1]", "[9]", "[10]", "1e9", "nan",
]


def random_text(rng):
    alphabet = string.printable + "[]{}\\→💥é"
    pieces = [rng.choice(["\\boxed{", "[", "]", "}", "bet", "Offer:", "->", " ", "Wheat"])
              for _ in range(rng.randint(0, 6))]
    noise = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    return "".join(pieces) + noise


def states_of_a_random_match(game_id, seed):
    """The game at its start and after each move of a uniformly random match (one object,
    stepped after the caller is done with each state)."""
    game = envs.make(game_id)
    game.reset(seed=seed)
    rng, moves = random.Random(seed), []
    while not game.is_terminal() and len(moves) < 40:
        yield game
        move = random_move(game, rng)
        game.step(move)
        moves.append(move)


@pytest.mark.parametrize("game_id", envs.list_games())
def test_parse_action_never_raises(game_id):
    """Every state of a random match (opening, middle and end game) gets its share of the
    inputs: legality changes as a match goes on, and parsing must keep up."""
    rng = random.Random(game_id)
    inputs = ADVERSARIAL + [random_text(rng) for _ in range(2000)] + [None, 3, b"[bet]", ["x"]]
    states = 0
    for index, game in enumerate(states_of_a_random_match(game_id, seed=0)):
        states += 1
        legal = game.legal_actions()
        share = inputs if index == 0 else rng.sample(inputs, 300)
        for text in share + (legal or []):
            result = game.parse_action(text)
            assert result is None or isinstance(result, str)
            if result is not None and legal is not None:
                assert result in legal
    assert states >= 2
