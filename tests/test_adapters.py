"""The open_spiel and TextArena adapters: sample games, hidden information, seeding, bad input."""

import random

import pyspiel
import pytest

import envs
from envs.core import ANSWER_FORMAT
from envs.openspiel_game import SAMPLE_MAX_TURNS, OpenSpielGame, action_labels

OPENSPIEL_SAMPLES = [f"openspiel/{name}" for name in SAMPLE_MAX_TURNS]
TEXTARENA_SAMPLES = ["textarena/TicTacToe-v0", "textarena/ConnectFour-v0", "textarena/Nim-v0"]


def play_random(game, seed: int) -> list[str]:
    """Play one seeded random match to the end; return every observation of the mover."""
    rng = random.Random(seed)
    game.reset(seed)
    seen = []
    while not game.is_terminal():
        seen.append(game.observe(game.current_player()))
        legal = game.legal_actions()
        action = rng.choice(legal) if legal is not None else game.sample_action(rng)
        assert game.parse_action(action) == action
        game.step(action)
    return seen


# --------------------------------------------------------------------------- open_spiel


def test_openspiel_samples_are_registered_with_open_spiel_max_length():
    for name, max_turns in SAMPLE_MAX_TURNS.items():
        assert f"openspiel/{name}" in envs.list_games()
        assert envs.spec(f"openspiel/{name}").max_turns == max_turns
        assert pyspiel.load_game(name).max_game_length() == max_turns


@pytest.mark.parametrize("game_id", OPENSPIEL_SAMPLES)
def test_openspiel_sample_random_play_is_zero_sum(game_id):
    max_turns = envs.spec(game_id).max_turns
    for seed in range(4):
        game = envs.make(game_id)
        moves = len(play_random(game, seed))
        assert 1 <= moves <= max_turns
        assert sum(game.returns()) == 0
        assert game.current_player() == -1
        assert game.legal_actions() == [] and game.parse_action("anything") is None
        with pytest.raises(ValueError, match="over"):
            game.step(game.render())


def test_openspiel_kuhn_first_observation_is_exact():
    game = envs.make("openspiel/kuhn_poker")
    game.reset(seed=0)
    own_card = game.render().split()[0]  # render(): "<card p0> <card p1> <history>"
    assert game.observe(0) == (
        "You are playing Kuhn Poker (open_spiel: kuhn_poker) as Player 0.\n"
        f"What you know: {own_card}\n"
        "Moves so far: none\n"
        f"Valid moves: [Pass], [Bet]\n{ANSWER_FORMAT}"
    )
    game.step("[Bet]")
    assert "Moves so far: Player 0 [Bet]\n" in game.observe(1)
    assert game.observe(0).endswith("Waiting for Player 1 to move.")


def test_openspiel_kuhn_observation_never_depends_on_the_opponent_card():
    views: dict[tuple, set[str]] = {}
    opponent_cards: dict[tuple, set[str]] = {}
    for seed in range(60):
        game = envs.make("openspiel/kuhn_poker")
        game.reset(seed)
        rng = random.Random(seed)
        while True:
            cards, history = game.render().split()[:2], tuple(game.render().split()[2:])
            for player in (0, 1):
                key = (player, cards[player], history)
                views.setdefault(key, set()).add(game.observe(player))
                opponent_cards.setdefault(key, set()).add(cards[1 - player])
            if game.is_terminal():
                break
            game.step(rng.choice(game.legal_actions()))
    assert all(len(observations) == 1 for observations in views.values())
    assert any(len(cards) == 2 for cards in opponent_cards.values())  # the test had a chance


def test_openspiel_tic_tac_toe_board_parsing_and_returns():
    game = envs.make("openspiel/tic_tac_toe")
    game.reset(seed=0)
    for text in ("x(1,1)", "[X(1,1)]", r"\boxed{x(1,1)}", r"\boxed{[x(1,1)]}.", " x(1,1) !"):
        assert game.parse_action(text) == "[x(1,1)]"
    for text in ("x(3,3)", "o(1,1)", "", None, 5, r"\boxed{}"):
        assert game.parse_action(text) is None
    with pytest.raises(ValueError, match="illegal"):
        game.step("x(1,1)")  # not canonical
    game.step("[x(1,1)]")
    assert "What you know:\n...\n.x.\n...\nMoves so far: Player 0 [x(1,1)]\n" in game.observe(1)
    with pytest.raises(ValueError, match="illegal"):
        game.step("[o(1,1)]")  # occupied
    for seed in range(10):
        play_random(game, seed)
        assert game.returns() in {(1.0, -1.0), (0.0, 0.0), (-1.0, 1.0)}


def test_openspiel_same_seed_same_match_and_chance_uses_the_seed():
    first, again = envs.make("openspiel/leduc_poker"), envs.make("openspiel/leduc_poker")
    assert play_random(first, seed=3) == play_random(again, seed=3)
    assert first.render() == again.render()
    deals = set()
    for seed in range(10):
        first.reset(seed)
        deals.add(first.render().splitlines()[4])  # "Cards (public player_0 player_1): ..."
    assert len(deals) > 3


def test_openspiel_hidden_moves_stay_hidden():
    game = envs.make("openspiel/dark_hex")
    game.reset(seed=0)
    game.step("[a1]")
    assert "Moves so far: none" in game.observe(1)
    assert "Moves so far: Player 0 [a1]" in game.observe(0)
    game.step("[b2]")
    assert "Moves so far: Player 1 [b2]" in game.observe(1)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("matrix_rps", "SIMULTANEOUS"),
        ("kuhn_poker(players=3)", "3 players"),
        ("first_sealed_auction", "GENERAL_SUM"),
        ("kuhn_poker(no_such_parameter=1)", "Unknown parameter"),
        ("no_such_game", "unknown open_spiel game"),
    ],
)
def test_openspiel_unsupported_games_raise_value_error(name, reason):
    with pytest.raises(ValueError, match=reason):
        OpenSpielGame(name)


def test_openspiel_namespace_resolves_any_supported_game():
    assert "openspiel/nim" not in envs.list_games()
    assert envs.spec("openspiel/nim").max_turns == 16
    game = envs.make("openspiel/nim(pile_sizes=1;2)")
    game.reset(seed=0)
    assert game.legal_actions() == ["[pile:1, take:1;]", "[pile:2, take:1;]", "[pile:2, take:2;]"]
    assert game.parse_action("pile:2, take:2") == "[pile:2, take:2;]"
    play_random(game, seed=1)
    assert sum(game.returns()) == 0
    with pytest.raises(ValueError, match="SIMULTANEOUS"):
        envs.make("openspiel/matrix_rps")
    with pytest.raises(KeyError, match="unknown open_spiel game"):
        envs.make("openspiel/no_such_game")


class LookalikeState:
    """A stand-in open_spiel state whose actions 7 and 9 print alike after normalisation."""

    def current_player(self):
        return 0

    def legal_actions(self):
        return [3, 7, 9]

    def action_to_string(self, player, action):
        return {3: "Pass", 7: "Take", 9: "take."}[action]


def test_openspiel_lookalike_action_labels_get_their_ids():
    assert action_labels(LookalikeState()) == {"[Pass]": 3, "[Take #7]": 7, "[take. #9]": 9}


# --------------------------------------------------------------------------- TextArena


@pytest.mark.parametrize("game_id", TEXTARENA_SAMPLES)
def test_textarena_samples_play_offline_to_zero_sum(game_id):
    max_turns = envs.spec(game_id).max_turns
    for seed in range(3):
        game = envs.make(game_id)
        moves = len(play_random(game, seed))
        assert 1 <= moves <= max_turns
        assert game.returns() in {(1.0, -1.0), (0.0, 0.0), (-1.0, 1.0)}


def test_textarena_tic_tac_toe_moves_and_observation():
    game = envs.make("textarena/TicTacToe-v0")
    game.reset(seed=0)
    assert game.legal_actions() == [f"[{cell}]" for cell in range(9)]
    assert game.parse_action(r"\boxed{4}") == "[4]"
    assert game.parse_action("[9]") is None
    game.step("[4]")
    assert "Player 0 placed their symbol (O) in cell 4." in game.observe(1)
    assert game.legal_actions() == ["[0]", "[1]", "[2]", "[3]", "[5]", "[6]", "[7]", "[8]"]
    assert game.observe(1).endswith(ANSWER_FORMAT)
    with pytest.raises(ValueError, match="illegal"):
        game.step("[4]")


def test_textarena_invalid_moves_leave_the_match_untouched():
    game = envs.make("textarena/Breakthrough-v0-tiny")  # open-ended: TextArena validates
    game.reset(seed=0)
    assert game.legal_actions() is None
    before = (game.observe(0), game.observe(1), game.render())
    for bad in ("[a2a5]", "[zz]", "[a2a5]"):  # TextArena alone would end the game on the 2nd
        assert game.parse_action(bad) is None
        with pytest.raises(ValueError, match="textarena rejected"):
            game.step(bad)
    with pytest.raises(ValueError, match="bracketed"):
        game.step("a2a3")
    assert (game.observe(0), game.observe(1), game.render()) == before
    assert game.parse_action(r"\boxed{a2a3}") == "[a2a3]"
    game.step("[a2a3]")
    assert game.current_player() == 1 and not game.is_terminal()
    with pytest.raises(NotImplementedError):
        game.sample_action(random.Random(0))


def test_textarena_seeding_is_per_match_and_leaves_global_random_alone():
    random.seed(123)
    expected_global = random.random()
    random.seed(123)
    first, other, again = (envs.make("textarena/KuhnPoker-v0") for _ in range(3))
    for game, seed in ((first, 7), (other, 8), (again, 7)):
        game.reset(seed)
    rng_first, rng_other, rng_again = random.Random(1), random.Random(2), random.Random(1)
    while not first.is_terminal():  # interleaved: each match replays from its own seed
        first.step(first.sample_action(rng_first))
        if not other.is_terminal():
            other.step(other.sample_action(rng_other))
        again.step(again.sample_action(rng_again))
        assert [first.observe(p) for p in (0, 1)] == [again.observe(p) for p in (0, 1)]
    assert random.random() == expected_global


def test_textarena_kuhn_poker_hides_the_opponent_card():
    for seed in range(5):
        game = envs.make("textarena/KuhnPoker-v0")
        game.reset(seed)
        card_lines = [
            {line for line in game.observe(p).splitlines() if "Your card is" in line}
            for p in (0, 1)
        ]
        assert len(card_lines[0]) == len(card_lines[1]) == 1 and card_lines[0] != card_lines[1]
        assert not card_lines[0] & set(game.observe(1).splitlines())
        assert not card_lines[1] & set(game.observe(0).splitlines())


def test_textarena_bad_ids():
    with pytest.raises(KeyError, match="unknown textarena env"):
        envs.make("textarena/NoSuchGame-v0")
    game = envs.make("textarena/TowerOfHanoi-v0")  # a one-player puzzle
    with pytest.raises(ValueError, match="2 players"):
        game.reset(seed=0)
