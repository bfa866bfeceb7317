"""The pieces of SPIRAL's recipe (docs/paper_recipe.md): parsing cut answers, invalid-move
reasons, the "reason" instruction, batches counted in turn samples, Kuhn positions of a 5-hand
match, and greedy exact policies."""

import dataclasses

import pytest

import envs
from envs.core import ANSWER_FORMAT
from spiral.config import AlgoConfig, EnvConfig, RunConfig
from spiral.distributed import Dist
from spiral.learning.advantages import RoleBaselines
from spiral.models.prompting import REASON_FORMAT, REASON_INTRO, Prompter, instructed
from spiral.rollout.selfplay import RolloutStats, play
from spiral.training.collect import collect
from spiral.training.rundir import summarize
from tests.test_rollout import ScriptedActor, prompter

CHECK = "\\boxed{[check]}"


def test_parse_cut_keeps_a_cut_answer_that_already_boxed_its_move():
    cut = ScriptedActor(lambda p, r: CHECK, finished=False)
    strict = play(cut, prompter, EnvConfig(), 4, seed=0)
    lenient = play(cut, prompter, EnvConfig(parse_cut=True), 4, seed=0)
    assert all(ep.invalid_player == 0 for ep in strict)
    assert all(ep.invalid_player is None for ep in lenient)
    assert all(t.cut and t.action == "[check]" for ep in lenient for t in ep.turns)


def test_invalid_moves_are_counted_by_reason():
    env = EnvConfig()
    cut = play(ScriptedActor(lambda p, r: "Let me think", finished=False), prompter, env, 2, 0)
    unparseable = play(ScriptedActor(lambda p, r: "I fold?!"), prompter, env, 2, seed=0)
    illegal = play(ScriptedActor(lambda p, r: "\\boxed{[raise]}"), prompter, env, 4, seed=0)
    metrics = summarize(cut + unparseable + illegal, RolloutStats())
    prefix = "rollout/KuhnPoker-v1/invalid"
    assert metrics[f"{prefix}/cut"] == pytest.approx(2 / 8)
    assert metrics[f"{prefix}/unparseable"] == pytest.approx(2 / 8)
    assert metrics[f"{prefix}/illegal"] == pytest.approx(4 / 8)
    assert [t.invalid_reason() for t in cut[0].turns] == ["cut"]


def test_the_reason_instruction_replaces_think_briefly():
    game = envs.make("KuhnPoker-v1")
    game.reset(seed=0)
    observation = game.observe(0)
    assert instructed(observation, "brief") == observation
    text = instructed(observation, "reason")
    assert ANSWER_FORMAT in observation and ANSWER_FORMAT not in text
    assert text.startswith(REASON_INTRO) and text.endswith(REASON_FORMAT)
    assert "Valid moves: [check], [bet]" in text
    with pytest.raises(ValueError, match="instruction must be one of"):
        Prompter(tokenizer=None, instruction="verbose")


def samples_config(samples_per_step, games_per_step=2, drop_zero=True):
    return RunConfig(env=EnvConfig(samples_per_step=samples_per_step,
                                   games_per_step=games_per_step,
                                   game_kwargs={"KuhnPoker-v1": {"rounds": 5}}),
                     algo=AlgoConfig(drop_zero_advantage=drop_zero))


def test_samples_per_step_plays_rounds_until_enough_samples_then_keeps_exactly_that_many():
    actor = ScriptedActor(lambda p, r: CHECK)  # 5 hands x 2 checks: 10 turns per match
    episodes, samples, rounds = collect(samples_config(25), actor, prompter, RoleBaselines(),
                                        Dist(), seed=1)
    # 5 hands never tie, so every match gives 10 samples: 20 per round of 2 matches
    assert (len(samples), rounds, len(episodes)) == (25, 2, 4)
    assert len({id(s) for s in samples}) == 25  # drawn without replacement


def test_samples_per_step_is_deterministic_and_games_per_step_is_unchanged_without_it():
    actor = ScriptedActor(lambda p, r: r.choice([CHECK, "\\boxed{[bet]}", "\\boxed{[call]}"]))
    first = collect(samples_config(12), actor, prompter, RoleBaselines(), Dist(), seed=5)
    again = collect(samples_config(12), actor, prompter, RoleBaselines(), Dist(), seed=5)
    assert [s.advantage for s in first[1]] == [s.advantage for s in again[1]]
    plain = samples_config(None)
    episodes, _, rounds = collect(plain, actor, prompter, RoleBaselines(), Dist(), seed=5)
    direct = play(actor, prompter, plain.env, 2, seed=5)
    assert rounds == 1 and [ep.moves for ep in episodes] == [ep.moves for ep in direct]


def test_a_later_round_is_centred_by_the_baselines_the_earlier_round_moved():
    actor = ScriptedActor(lambda p, r: CHECK)
    baselines = RoleBaselines(decay=0.5)
    episodes, samples, rounds = collect(samples_config(40), actor, prompter, baselines, Dist(),
                                        seed=2)
    assert rounds == 2 and len(samples) == 40  # exactly two rounds' worth: kept in order
    moved = RoleBaselines(decay=0.5)
    for ep in episodes[:2]:
        for player in (0, 1):
            moved.update("KuhnPoker-v1", player, ep.returns[player])
    for index, sample in enumerate(samples):
        ep = episodes[index // 10]
        before = 0.0 if index < 20 else moved.get("KuhnPoker-v1", sample.player)
        assert sample.advantage == pytest.approx(ep.returns[sample.player] - before)


def test_kuhn_positions_of_a_match_are_its_first_hand():
    one = envs.spec("KuhnPoker-v1").exact_metrics().positions()
    five = envs.spec("KuhnPoker-v1").exact_metrics().positions(rounds=5)
    assert one.keys() == five.keys()
    for key in one:
        assert "Hand 1 of 5" in five[key].observe(five[key].current_player())
        assert five[key].legal_actions() == one[key].legal_actions()
        assert five[key].private_card(five[key].current_player()) == key[0]


def test_greedy_exact_policy_puts_all_mass_on_the_likeliest_answer(monkeypatch):
    from spiral.evaluate import exact

    positions = envs.spec("KuhnPoker-v1").exact_metrics().positions()

    def scores(model, prompts, continuations, pad_id, temperature, chunk):
        assert temperature == 1.0  # greedy reads the untempered scores
        return [[-0.2 - i for i in range(len(c))][::-1] for c in continuations]  # last best

    monkeypatch.setattr(exact, "continuation_logprobs", scores)
    tokenizer = type("T", (), {"encode": lambda self, t, add_special_tokens: [1],
                               "eos_token_id": 2, "pad_token_id": 0})()
    answer = envs.core.boxed_answer
    greedy, _ = exact.policy_logprob(None, tokenizer, lambda o: [1], positions, answer, 0.0)
    soft, _ = exact.policy_logprob(None, tokenizer, lambda o: [1], positions, answer, 1.0)
    for key, probs in greedy.items():
        assert list(probs.values()) == [0.0, 1.0]
        assert 0.5 < list(soft[key].values())[1] < 1.0


def test_samples_per_step_must_be_positive():
    from spiral.config import from_mapping
    from spiral.errors import ConfigError

    with pytest.raises(ConfigError, match="env.samples_per_step=0: must be >= 1 or null"):
        from_mapping(RunConfig, {"env": {"samples_per_step": 0}})
    assert dataclasses.replace(RunConfig()).env.samples_per_step is None
