"""The rollout with scripted actors: penalties, truncation, records, fixed opponents."""

import random

import pytest

from spiral.config import EnvConfig
from spiral.rollout.actor import Generation
from spiral.rollout.opponents import named_opponent
from spiral.rollout.selfplay import play


class ScriptedActor:
    """Answers with a function of the prompt; records each batch size."""

    def __init__(self, answer, finished=True):
        self.answer, self.finished, self.batches = answer, finished, []

    def generate(self, prompts, seed, temperature=None):
        self.batches.append(len(prompts))
        rng = random.Random(seed)
        return [Generation([7, 8], [-0.1, -0.2], self.answer(p, rng), self.finished)
                for p in prompts]


def prompter(observation):
    return [hash(observation) % 1000]


class TextPrompter:
    """Keeps the observation so a scripted actor can read it."""

    def __init__(self):
        self.seen = {}

    def __call__(self, observation):
        key = len(self.seen)
        self.seen[key] = observation
        return [key]


def test_garbage_answers_are_invalid_with_spiral_penalty():
    env = EnvConfig(games=("KuhnPoker-v1", "TicTacToe-v1"))
    episodes = play(ScriptedActor(lambda p, r: "I fold?!"), prompter, env, 8, seed=0)
    assert len(episodes) == 8
    for ep in episodes:
        assert ep.invalid_player == 0  # seat 0 moves first and blunders
        assert ep.returns == (-1.5, 0.5)
        assert ep.outcome(0) == "invalid" and ep.outcome(1) == "win"
        assert len(ep.turns) == 1 and ep.turns[0].action is None


def test_answer_cut_at_length_limit_is_invalid_even_if_it_parses():
    env = EnvConfig(games=("KuhnPoker-v1",))
    actor = ScriptedActor(lambda p, r: "\\boxed{[check]}", finished=False)
    episodes = play(actor, prompter, env, 4, seed=0)
    assert all(ep.invalid_player == 0 for ep in episodes)
    assert all(ep.turns[0].cut for ep in episodes)  # told apart from an unparseable answer


def test_cut_answers_are_counted_apart_from_unparseable_ones_in_metrics_and_transcripts():
    from spiral.rollout.selfplay import RolloutStats
    from spiral.rollout.transcripts import transcript
    from spiral.training.rundir import summarize

    env = EnvConfig(games=("KuhnPoker-v1",))
    cut = play(ScriptedActor(lambda p, r: "\\boxed{[check]}", finished=False), prompter, env,
               4, seed=0)
    garbage = play(ScriptedActor(lambda p, r: "I fold?!"), prompter, env, 4, seed=0)
    mixed = summarize(cut + garbage, RolloutStats())
    assert mixed["rollout/invalid_rate"] == 1.0 and mixed["rollout/cut_rate"] == 0.5
    assert [t["cut"] for t in transcript(cut[0], 1)["turns"]] == [True]
    assert [t["cut"] for t in transcript(garbage[0], 1)["turns"]] == [False]


def test_self_play_records_both_seats_and_batches_all_games_per_tick():
    env = EnvConfig(games=("KuhnPoker-v1",))
    actor = ScriptedActor(lambda p, r: r.choice(["\\boxed{[check]}", "[bet]", "call", "fold"]))
    episodes = play(actor, prompter, env, 16, seed=3)
    assert actor.batches[0] == 16  # one generation call for all live games
    finished = [ep for ep in episodes if ep.invalid_player is None]
    assert finished, "some games should finish legally"
    for ep in finished:
        assert {t.player for t in ep.turns} == {0, 1}
        assert sum(ep.returns) == 0
        assert [t.turn for t in ep.turns] == list(range(len(ep.turns)))
        assert all(t.response_ids == [7, 8] and t.logprobs == [-0.1, -0.2] for t in ep.turns)


def test_max_turns_truncation_is_a_draw():
    env = EnvConfig(games=("TicTacToe-v1",), max_turns=2)
    prompts = TextPrompter()

    def first_free_cell(prompt, rng):
        observation = prompts.seen[prompt[0]]
        moves = observation.split("Valid moves: ")[1].split("\n")[0]
        return moves.split(", ")[0]

    episodes = play(ScriptedActor(first_free_cell), prompts, env, 3, seed=0)
    for ep in episodes:
        assert ep.truncated and ep.returns == (0.0, 0.0) and len(ep.moves) == 2
        assert ep.outcome(0) == "draw"


def test_fixed_opponent_alternates_seats_and_only_policy_turns_are_recorded():
    env = EnvConfig(games=("TicTacToe-v1",))
    prompts = TextPrompter()

    def random_cell(prompt, rng):
        observation = prompts.seen[prompt[0]]
        moves = observation.split("Valid moves: ")[1].split("\n")[0].split(", ")
        return rng.choice(moves)

    episodes = play(ScriptedActor(random_cell), prompts, env, 20, seed=1,
                    opponent=named_opponent("optimal"))
    for i, ep in enumerate(episodes):
        assert ep.model_players == (i % 2,)
        assert all(t.player == i % 2 for t in ep.turns)
        assert ep.outcome(i % 2) in ("loss", "draw")  # minimax never loses
    assert any(ep.outcome(ep.model_players[0]) == "loss" for ep in episodes)


@pytest.mark.parametrize("game_id", ["SimpleNegotiation-v1", "KuhnPoker-v1"])
def test_rollout_is_deterministic_for_a_seed(game_id):
    env = EnvConfig(games=(game_id,))
    actor = ScriptedActor(lambda p, r: r.choice(["[Deny]", "[check]", "[bet]", "[call]"]))
    a = play(actor, prompter, env, 6, seed=9)
    b = play(actor, prompter, env, 6, seed=9)
    assert [(e.moves, e.returns) for e in a] == [(e.moves, e.returns) for e in b]
