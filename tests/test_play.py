"""``python -m envs.play``: scripted human input against fixed opponents."""

import itertools
import random

import envs
from envs.opponents import make_opponent
from envs.play import main, play_match


class Script:
    """Feeds the given lines to ``input``; records every printed line and prompt."""

    def __init__(self, lines):
        self.lines = iter(lines)
        self.printed: list[str] = []

    def input(self, prompt: str) -> str:
        self.printed.append(prompt)
        line = next(self.lines, None)
        if line is None:
            raise EOFError
        return line

    def print(self, text: str = "") -> None:
        self.printed.extend(str(text).splitlines())


def test_kuhn_against_random_refuses_a_bad_line_and_reports_the_result():
    script = Script(["raise", r"\boxed{bet}"])  # the opener bets; the opponent calls or folds
    assert main(["KuhnPoker-v1", "--seed", "0"], script.input, script.print) == 0
    printed = script.printed
    assert "Invalid move 'raise'. Valid moves: [check], [bet]" in printed
    assert "Player 0 (you) plays [bet]" in printed
    reply = next(line for line in printed if line.startswith("Player 1 (opponent, random) plays"))
    assert reply.endswith(("[call]", "[fold]"))
    assert printed[-1].startswith("Returns: you (Player 0) ")
    assert printed[-1].endswith(("You win.", "You lose."))  # Kuhn has no draws
    assert printed.count("Your move: ") == 2


def test_kuhn_second_seat_against_optimal_over_two_matches():
    # As Player 1: "fold" ends a hand facing a bet; after a check it is refused and "check" ends it.
    script = Script(["fold", "check"] * 2)
    args = ["KuhnPoker-v1", "--opponent", "optimal", "--seat", "1", "--seed", "5", "--games", "2"]
    assert main(args, script.input, script.print) == 0
    assert sum(line.startswith("Returns: you (Player 1) ") for line in script.printed) == 2
    assert script.printed[-1].startswith("Your total return over 2 matches: ")


def test_textarena_tic_tac_toe_game_completes_with_refused_moves():
    cells = itertools.cycle(["9", *map(str, range(9))])  # "9" and taken cells are refused
    script = Script(cells)
    assert main(["textarena/TicTacToe-v0", "--seed", "2"], script.input, script.print) == 0
    assert any(line.startswith("Invalid move '9'. Valid moves: [0]") for line in script.printed)
    assert script.printed[-1].startswith("Returns: you (Player 0) ")


def test_turn_limit_ends_the_match_as_a_draw():
    game = envs.make("TicTacToe-v1")
    game.reset(seed=0)
    script = Script(["4"])
    opponent = make_opponent("random", "TicTacToe-v1")
    mine = play_match(game, opponent, 0, random.Random(0), 1, script.input, script.print)
    assert mine == 0.0 and not game.is_terminal()
    assert "Turn limit (1) reached: the match is a draw." in script.printed
    assert script.printed[-1] == "Returns: you (Player 0) +0, opponent +0. Draw."


def test_running_out_of_input_stops_with_status_1():
    script = Script([])
    assert main(["KuhnPoker-v1"], script.input, script.print) == 1
    assert script.printed[-1] == "No more input; stopping."


def test_unknown_game_or_opponent_exits_2_and_lists_the_choices():
    script = Script([])
    assert main(["NoSuchGame-v1"], script.input, script.print) == 2
    assert "unknown game id 'NoSuchGame-v1'" in script.printed[0]
    assert all(game_id in script.printed[0] for game_id in envs.list_games())
    assert main(["openspiel/kuhn_poker", "--opponent", "optimal"], script.input, script.print) == 2
    assert "no 'optimal' opponent" in script.printed[-1]
