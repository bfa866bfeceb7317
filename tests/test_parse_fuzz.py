"""Thousands of random and adversarial strings into every parse_action: never an exception."""

import random
import string

import pytest

import envs

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


@pytest.mark.parametrize("game_id", envs.list_games())
def test_parse_action_never_raises(game_id):
    rng = random.Random(game_id)
    game = envs.make(game_id)
    game.reset(seed=0)
    inputs = ADVERSARIAL + [random_text(rng) for _ in range(2000)] + [None, 3, b"[bet]", ["x"]]
    legal = game.legal_actions()
    for text in inputs:
        result = game.parse_action(text)
        assert result is None or isinstance(result, str)
        if result is not None and legal is not None:
            assert result in legal
