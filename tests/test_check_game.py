"""envs.check_game rejects broken games with a message naming the rule (it accepts every
registered game: see test_conformance)."""

import itertools

import pytest

import envs
from envs.check import main
from envs.core import match_action
from envs.negotiation import SimpleNegotiation
from envs.tictactoe import TicTacToe


class NotZeroSum(TicTacToe):
    def returns(self):
        return (1.0, 0.5) if self.is_terminal() else (0.0, 0.0)


class ParseRaises(TicTacToe):
    def parse_action(self, text):
        return match_action(text.strip(), self.legal_actions())  # None has no .strip()


class Endless(TicTacToe):
    """A full board starts a new one: the match never ends."""

    def step(self, action):
        super().step(action)
        if super().is_terminal():
            self.reset(seed=0)

    def is_terminal(self):
        return False


class AcceptsIllegal(TicTacToe):
    def step(self, action):
        if action in self.legal_actions():
            super().step(action)


_resets = itertools.count()


class ResetCounts(TicTacToe):
    """Observations show how many matches were reset so far: two replays differ."""

    def reset(self, seed):
        super().reset(seed)
        self.match = next(_resets)

    def observe(self, player):
        return f"{super().observe(player)}\nMatch {self.match}."


class ParsesOnlyBareMoves(TicTacToe):
    def parse_action(self, text):
        return text if self._state and text in self.legal_actions() else None


class Anonymous(TicTacToe):
    def observe(self, player):
        return super().observe(player).replace(f"Player {player}", "You")


class ThreePlayers(TicTacToe):
    num_players = 3


class NoSampleAction(SimpleNegotiation):
    sample_action = None


@pytest.mark.parametrize(
    "game, rule, detail",
    [
        (NotZeroSum, "zero-sum", "returns (1.0, 0.5) sum to 1.5, not 0 (seed 0)"),
        (ParseRaises, "parse-never-raises", "parse_action(None) raised AttributeError"),
        (Endless, "terminates", "random play did not end within 500 moves (seed 0)"),
        (AcceptsIllegal, "illegal-raises", "step('[definitely not a move]') in a live state "
                                           "was accepted"),
        (ResetCounts, "deterministic", "replays differ at move 0"),
        (ParsesOnlyBareMoves, "parse-round-trip", "parse_action('I choose \\\\boxed{[0]}.')"),
        (Anonymous, "observe", "observe(0) does not mention 'Player 0'"),
        (ThreePlayers, "protocol", "num_players is 3, not 2"),
        (NoSampleAction, "terminates", "open-ended games must provide it"),
    ],
)
def test_rejects_a_broken_game_naming_the_rule(game, rule, detail):
    with pytest.raises(envs.GameCheckError) as err:
        envs.check_game(game)
    message = str(err.value)
    assert message.startswith(f"{game.__name__}: rule '{rule}' violated: "), message
    assert detail in message, message
    assert err.value.rule == rule and isinstance(err.value, AssertionError)


def test_message_is_one_sentence_naming_game_rule_and_where():
    with pytest.raises(envs.GameCheckError) as err:
        envs.check_game(NotZeroSum)
    assert str(err.value) == (
        "NotZeroSum: rule 'zero-sum' violated: returns (1.0, 0.5) sum to 1.5, not 0 (seed 0)"
    )


def test_move_limit_and_seeds_are_parameters():
    with pytest.raises(envs.GameCheckError, match="did not end within 7 moves"):
        envs.check_game(Endless, max_moves=7)
    report = envs.check_game("TicTacToe-v1", seeds=[3])
    assert report.seeds == (3,) and 5 <= report.states <= 9


def test_accepts_a_class_or_factory_not_an_instance():
    assert envs.check_game(TicTacToe).game == "TicTacToe"
    assert envs.check_game(lambda: envs.make("KuhnPoker-v1", rounds=3)).states > 0
    with pytest.raises(TypeError, match="zero-argument callable"):
        envs.check_game(TicTacToe())


def test_command_line_prints_ok_or_the_violation(capsys):
    assert main(["TicTacToe-v1", "KuhnPoker-v1"]) == 0
    assert capsys.readouterr().out == "TicTacToe-v1: ok\nKuhnPoker-v1: ok\n"
    assert main(["TicTacToe-v1", "NoSuchGame-v9"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "TicTacToe-v1: ok" and "unknown game id 'NoSuchGame-v9'" in out[1]
