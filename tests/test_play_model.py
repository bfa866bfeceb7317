"""Playing a model in the terminal: its full response is shown, training's penalties apply."""

import random

import pytest

import envs
from spiral.config import EnvConfig
from spiral.play import main, play_match
from spiral.rollout.actor import Generation


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs tiny models: see conftest.one_torch_thread."""


class Scripted:
    """An actor answering from a list, in order; records the prompts."""

    def __init__(self, answers, finished=True):
        self.answers, self.finished, self.prompts = list(answers), finished, []

    def generate(self, prompts, seed, temperature=None):
        self.prompts += prompts
        return [Generation([1], [0.0], self.answers.pop(0), self.finished) for _ in prompts]


def run_match(game_id, seed, seat, actor, typed):
    game = envs.make(game_id)
    game.reset(seed)
    lines, inputs = [], iter(typed)
    mine = play_match(game, actor, lambda obs: [len(obs)], seat, random.Random(0),
                      envs.spec(game_id).max_turns, EnvConfig(), lambda _: next(inputs),
                      lines.append)
    return mine, "\n".join(lines), game


def test_model_reasoning_is_shown_and_its_moves_played():
    actor = Scripted(["Center is strongest. \\boxed{4}", "Block the row: \\boxed{[2]}",
                      "Then \\boxed{6}"])
    # you are O: X takes 4, you 0, X 2, you 1 (no), then 6 completes 2-4-6 for X
    mine, shown, game = run_match("TicTacToe-v1", 0, 1, actor, ["0", "oops", "1", "8"])
    assert mine == -1.0 and game.is_terminal()
    assert "Center is strongest. \\boxed{4}" in shown and "Block the row: \\boxed{[2]}" in shown
    assert "Player 0 (model) plays [4]" in shown and "Player 0 (model) plays [6]" in shown
    assert "Invalid move 'oops'" in shown
    assert "Returns: you (Player 1) -1, the model +1. You lose." in shown


def test_invalid_model_answer_ends_the_match_with_the_training_penalty():
    mine, shown, _ = run_match("KuhnPoker-v1", 3, 1, Scripted(["I check, I think."]), [])
    assert mine == 0.5
    assert "I check, I think." in shown and "not a legal move" in shown
    assert "Returns: you (Player 1) +0.5, the model -1.5. You win." in shown
    cut = Scripted(["\\boxed{[check]}"], finished=False)
    mine, shown, _ = run_match("KuhnPoker-v1", 3, 1, cut, [])
    assert mine == 0.5 and "cut at max_new_tokens" in shown


def test_command_plays_the_micro_model(micro):
    lines = []
    typed = iter(["check", "call", "check", "call"] * 3)
    status = main([f"checkpoint={micro}", "game=KuhnPoker-v1", "seat=1", "matches=2",
                   "max_new_tokens=12", "device=cpu"], lambda _: next(typed), lines.append)
    shown = "\n".join(lines)
    assert status == 0
    assert shown.count("the model (Player 0) answers:") >= 2  # the model opens every match
    assert shown.count("Returns: you (Player 1)") == 2
    assert "Your total return over 2 matches" in shown


def test_command_reports_bad_options_and_missing_input():
    lines = []
    assert main(["game=Chess-v9"], print_fn=lines.append) == 2
    assert "unknown game id 'Chess-v9'" in lines[-1]
    assert main(["seat=2"], print_fn=lines.append) == 2 and "seat must be 0 or 1" in lines[-1]
    assert main(["colour=red"], print_fn=lines.append) == 2
    assert "unknown config key 'colour'" in lines[-1]


def test_command_stops_when_input_runs_out(micro):
    lines = []

    def no_input(_):
        raise EOFError

    status = main([f"checkpoint={micro}", "game=TicTacToe-v1", "seat=0", "device=cpu"],
                  no_input, lines.append)
    assert status == 1 and "No more input" in lines[-1]
