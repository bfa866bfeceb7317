"""Tasks in the RL loop: problem streams, grouped attempts, group-relative advantages, the
advantage-estimator interface, task evaluation, and one GRPO update on the embedded model."""

import copy
import math
import random

import pytest
import torch

import tasks
from spiral.distributed import ONE_PROCESS
from spiral.evaluate.games import wilson_interval
from spiral.evaluate.tasks import evaluate_tasks, task_metrics
from spiral.learning.advantages import RoleBaselines, shared_advantages
from spiral.learning.grpo import (
    AdvantageEstimator,
    GroupEstimator,
    RAEEstimator,
    group_advantages,
    group_std,
)
from spiral.records import Attempt
from spiral.rollout.actor import Generation
from spiral.rollout.selfplay import RolloutStats
from spiral.rollout.tasks import attempt, draw_problems
from tasks.core import split_of
from tests.test_distributed import synthetic_episodes

TASK = "GameTheory-v1"


@pytest.fixture(scope="module")
def task():
    return tasks.make(TASK)


class TextPrompter:
    """Prompt ids are a key to the problem text, so a scripted actor can read it."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.texts: dict[int, str] = {}

    def __call__(self, text):
        key = self.ids.setdefault(text, len(self.ids))
        self.texts[key] = text
        return [key]


class ScriptedActor:
    """Answers ``answer(problem_text, index_in_batch, rng)``; records every call."""

    def __init__(self, prompter, answer, finished=True, tokens=2):
        self.prompter, self.answer, self.finished, self.tokens = prompter, answer, finished, tokens
        self.calls = []

    def generate(self, prompts, seed, temperature=None):
        self.calls.append((len(prompts), seed, temperature))
        rng = random.Random(seed)
        return [Generation(list(range(1, self.tokens + 1)), [-0.5] * self.tokens,
                           self.answer(self.prompter.texts[p[0]], k, rng), self.finished)
                for k, p in enumerate(prompts)]


def by_prompt(problems):
    return {p.prompt: p for p in problems}


def answering(task, problems, right):
    """An answer function: the canonical answer where ``right(problem, k)``, junk elsewhere."""
    lookup = by_prompt(problems)

    def answer(text, k, rng):
        problem = lookup[text]
        return task.answer_text(problem) if right(problem, k) else "I have no idea."
    return answer


def make_attempt(group, reward, key="p", task_id=TASK, tokens=(5, 6)):
    return Attempt(task_id, key, "zero_sum", 1, [1, 2, 3], list(tokens), [-1.0] * len(tokens),
                   "x", False, reward, reward == 1.0, True, group)


# --------------------------------------------------------------------------- problem streams


def test_problem_stream_is_deterministic_prefix_stable_and_in_its_split(task):
    ten = draw_problems(task, 10, seed=3)
    assert [p.key for p in draw_problems(task, 10, seed=3)] == [p.key for p in ten]
    assert [p.key for p in draw_problems(task, 4, seed=3)] == [p.key for p in ten[:4]]
    assert [p.key for p in draw_problems(task, 10, seed=4)] != [p.key for p in ten]
    assert all(split_of(p.key) == "train" for p in ten)
    test = draw_problems(task, 10, seed=3, split="test", difficulty=2)
    assert all(split_of(p.key) == "test" and p.difficulty == 2 for p in test)


def test_given_categories_are_stratified_in_a_seeded_order(task):
    cats = ("zero_sum", "auction", "sequential")
    problems = draw_problems(task, 8, seed=0, categories=cats)
    for block in (problems[0:3], problems[3:6]):
        assert sorted(p.category for p in block) == sorted(cats)
    counts = [sum(p.category == c for p in problems) for c in cats]
    assert sorted(counts) == [2, 3, 3]
    orders = {tuple(p.category for p in draw_problems(task, 3, seed=s, categories=cats))
              for s in range(8)}
    assert len(orders) > 1  # not always the same order
    with pytest.raises(ValueError, match="categories"):
        draw_problems(task, 2, seed=0, categories=("chess",))


# --------------------------------------------------------------------------- attempts


def test_attempts_are_grouped_by_problem_in_one_call_and_verified(task):
    problems = draw_problems(task, 3, seed=1)
    prompter = TextPrompter()
    actor = ScriptedActor(prompter, answering(task, problems, lambda p, k: k % 4 < 2))
    stats = RolloutStats()
    out = attempt(actor, prompter, task, problems, group_size=4, seed=0, temperature=0.7,
                  stats=stats)
    assert [c[0] for c in actor.calls] == [12] and actor.calls[0][2] == 0.7
    assert stats.generations == 12 and stats.seconds >= stats.generate_seconds > 0
    assert [a.group for a in out] == [0] * 4 + [1] * 4 + [2] * 4
    assert [a.reward for a in out] == [1.0, 1.0, 0.0, 0.0] * 3
    assert [a.correct for a in out] == [True, True, False, False] * 3
    assert all(a.formatted == a.correct and not a.cut for a in out)  # junk is unformatted
    for a in out:
        problem = problems[a.group]
        assert (a.task_id, a.key, a.category, a.difficulty) == (
            TASK, problem.key, problem.category, problem.difficulty)
        assert prompter.texts[a.prompt_ids[0]] == problem.prompt
        assert a.response_ids == [1, 2] and a.logprobs == [-0.5, -0.5]


def test_a_cut_response_scores_nothing_unless_parse_cut(task):
    problems = draw_problems(task, 2, seed=2)
    prompter = TextPrompter()
    actor = ScriptedActor(prompter, answering(task, problems, lambda p, k: True),
                          finished=False)
    cut = attempt(actor, prompter, task, problems, group_size=2, seed=0)
    assert all(a.cut and a.reward == 0.0 and not a.correct and not a.formatted for a in cut)
    parsed = attempt(actor, prompter, task, problems, group_size=2, seed=0, parse_cut=True)
    assert all(a.cut and a.reward == 1.0 and a.correct and a.formatted for a in parsed)


def test_shards_split_the_problems_without_overlap_and_sample_on_their_own(task):
    problems = draw_problems(task, 5, seed=5)
    prompter = TextPrompter()
    answer = lambda text, k, rng: f"\\boxed{{{rng.randrange(10**6)}}}"  # noqa: E731
    whole = attempt(ScriptedActor(prompter, answer), prompter, task, problems, 2, seed=9)

    def run(rank, world):
        return attempt(ScriptedActor(prompter, answer), prompter, task, problems, 2, seed=9,
                       shard=(rank, world))
    shards = [run(r, 3) for r in range(3)]
    assert [len(s) for s in shards] == [2, 4, 4]
    joined = [a for s in shards for a in s]
    assert [(a.group, a.key) for a in joined] == [(a.group, a.key) for a in whole]
    assert len({a.group for s in shards for a in s}) == 5
    for s in shards:  # whole groups on one rank
        assert len({a.group for a in s}) * 2 == len(s)
    assert [a.text for a in run(1, 3)] == [a.text for a in shards[1]]  # deterministic
    first = [shards[r][0].text for r in range(3)]
    assert len(set(first)) == 3  # each rank its own sampling stream
    assert run(0, 2)[0].group == 0 and run(1, 2)[0].group == 2
    idle = ScriptedActor(prompter, answer)  # 5 problems over 10 ranks: rank 0 gets none
    assert attempt(idle, prompter, task, problems, 2, seed=9, shard=(0, 10)) == []
    assert idle.calls == []


# --------------------------------------------------------------------------- advantages


def test_group_advantages_centre_each_group_on_its_mean():
    attempts = [make_attempt(0, r) for r in (1.0, 0.0, 0.0, 1.0)]
    attempts += [make_attempt(1, r, key="q") for r in (1.0, 1.0, 1.0, 0.0)]
    samples = group_advantages(attempts)
    assert [s.advantage for s in samples] == [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75]
    assert all(s.game_id == TASK and s.player == 0 for s in samples)
    assert samples[0].prompt_ids == [1, 2, 3] and samples[0].response_ids == [5, 6]
    assert samples[0].actor_logprobs == [-1.0, -1.0]


def test_std_scaling_divides_by_the_groups_sample_std():
    attempts = [make_attempt(0, r) for r in (1.0, 0.0, 0.0, 1.0)]
    std = math.sqrt(1 / 3)  # squares 4 x 0.25 = 1, over n - 1 = 3
    assert group_std([1.0, 0.0, 0.0, 1.0]) == pytest.approx(std)
    assert group_std([0.7]) == 0.0
    samples = group_advantages(attempts, scale="std", eps=1e-6)
    want = [0.5 / (std + 1e-6), -0.5 / (std + 1e-6)] * 2
    assert [s.advantage for s in samples] == pytest.approx([want[0], want[1], want[1], want[0]])
    with pytest.raises(ValueError, match="scale"):
        group_advantages(attempts, scale="max")


def test_groups_with_equal_rewards_are_dropped_unless_asked_to_keep_them():
    attempts = [make_attempt(0, 1.0) for _ in range(4)] + [make_attempt(1, 0.0, key="q")] * 3
    attempts += [make_attempt(2, r, key="s") for r in (0.0, 1.0)]
    assert [s.advantage for s in group_advantages(attempts)] == [-0.5, 0.5]
    kept = group_advantages(attempts, drop_zero=False, scale="std")
    assert [s.advantage for s in kept][:7] == [0.0] * 7 and len(kept) == 9


def test_partial_credit_keeps_a_mixed_groups_zero_advantages():
    attempts = [make_attempt(0, r) for r in (1.0, 0.5, 0.5, 0.0)]
    assert [s.advantage for s in group_advantages(attempts)] == [0.5, 0.0, 0.0, -0.5]


def test_groups_are_told_apart_by_task_and_problem():
    attempts = [make_attempt(0, 1.0, task_id="A"), make_attempt(0, 0.0, task_id="A"),
                make_attempt(0, 1.0, task_id="B"), make_attempt(0, 1.0, task_id="B")]
    samples = group_advantages(attempts)
    assert [(s.game_id, s.advantage) for s in samples] == [("A", 0.5), ("A", -0.5)]


# --------------------------------------------------------------------------- estimators


def test_both_estimators_satisfy_one_interface():
    episodes = synthetic_episodes()
    rae = RAEEstimator(RoleBaselines(0.8), gamma=0.9)
    group = GroupEstimator(scale="std")
    assert isinstance(rae, AdvantageEstimator) and isinstance(group, AdvantageEstimator)
    reference = RoleBaselines(0.8)
    want = shared_advantages(episodes, reference, ONE_PROCESS, gamma=0.9)
    got = rae.samples(episodes, ONE_PROCESS)
    assert [s.advantage for s in got] == [s.advantage for s in want]
    assert rae.state_dict() == reference.state_dict() and reference.values
    attempts = [make_attempt(0, r) for r in (1.0, 0.0)]
    assert [s.advantage for s in group.samples(attempts, ONE_PROCESS)] == pytest.approx(
        [0.5 / (math.sqrt(0.5) + 1e-6), -0.5 / (math.sqrt(0.5) + 1e-6)])


def test_estimator_state_round_trips_through_a_checkpoint():
    rae = RAEEstimator(RoleBaselines(0.8))
    rae.samples(synthetic_episodes(), ONE_PROCESS)
    saved = copy.deepcopy(rae.state_dict())
    held = RoleBaselines(0.5)
    resumed = RAEEstimator(held)
    resumed.load_state_dict(saved)
    assert held.values == rae.baselines.values and held.decay == 0.8  # restored in place
    group = GroupEstimator()
    group.load_state_dict(group.state_dict())
    with pytest.raises(ValueError, match="no state"):
        group.load_state_dict(saved)
    with pytest.raises(ValueError, match="scale"):
        GroupEstimator(scale="mean")


# --------------------------------------------------------------------------- evaluation


RIGHT = {"zero_sum", "auction", "cooperative"}


def spy_on_problems(monkeypatch):
    """Record every problem evaluation draws, so a scripted actor can look it up."""
    import spiral.evaluate.tasks as module

    seen, calls = {}, []

    def spy(*args, **kwargs):
        problems = draw_problems(*args, **kwargs)
        calls.append(kwargs)
        seen.update(by_prompt(problems))
        return problems
    monkeypatch.setattr(module, "draw_problems", spy)
    return seen, calls


def test_evaluation_reports_known_accuracy_with_intervals_and_strata(task, monkeypatch):
    seen, calls = spy_on_problems(monkeypatch)
    prompter = TextPrompter()

    def answer(text, k, rng):  # right on the first of two samples, in three categories only
        problem = seen[text]
        right = problem.category in RIGHT and k % 2 == 0
        return task.answer_text(problem) if right else "I don't know"
    actor = ScriptedActor(prompter, answer, tokens=3)
    metrics = evaluate_tasks(actor, prompter, [TASK], n=20, seed=0, samples=2, temperature=0.5)
    prefix = f"eval/tasks/{TASK}"
    assert calls[0]["split"] == "test" and actor.calls[0][0] == 40 and actor.calls[0][2] == 0.5
    problems = list(seen.values())
    assert len(problems) == 20 and all(split_of(p.key) == "test" for p in problems)
    assert sorted(p.category for p in problems) == sorted(task.categories * 2)
    assert metrics[f"{prefix}/accuracy"] == pytest.approx(0.15)  # 6 of 20 problems, 1 of 2
    assert metrics[f"{prefix}/reward"] == metrics[f"{prefix}/format_rate"] == pytest.approx(0.15)
    low, high = wilson_interval(3, 20)
    assert metrics[f"{prefix}/accuracy_ci_low"] == pytest.approx(low)
    assert metrics[f"{prefix}/accuracy_ci_high"] == pytest.approx(high)
    assert metrics[f"{prefix}/cut_rate"] == 0.0
    assert metrics[f"{prefix}/response_tokens_mean"] == 3.0
    assert (metrics[f"{prefix}/problems"], metrics[f"{prefix}/samples"]) == (20, 2)
    for category in task.categories:
        want = 0.5 if category in RIGHT else 0.0
        assert metrics[f"{prefix}/{category}/accuracy"] == want, category
    for d in sorted({p.difficulty for p in problems}):
        drawn = [p for p in problems if p.difficulty == d]
        want = sum(0.5 for p in drawn if p.category in RIGHT) / len(drawn)
        assert metrics[f"{prefix}/d{d}/accuracy"] == pytest.approx(want)
    again = evaluate_tasks(ScriptedActor(prompter, answer, tokens=3), prompter, [TASK], n=20,
                           seed=0, samples=2, temperature=0.5)
    assert again == metrics


def test_evaluation_counts_cut_answers_and_refuses_unknown_tasks(task, monkeypatch):
    seen, _ = spy_on_problems(monkeypatch)
    prompter = TextPrompter()
    actor = ScriptedActor(prompter, lambda text, k, rng: task.answer_text(seen[text]),
                          finished=False)
    prefix = f"eval/tasks/{TASK}"
    cut = evaluate_tasks(actor, prompter, [TASK], n=5, seed=1)
    assert cut[f"{prefix}/cut_rate"] == 1.0 and cut[f"{prefix}/accuracy"] == 0.0
    assert cut[f"{prefix}/format_rate"] == 0.0
    parsed = evaluate_tasks(actor, prompter, [TASK], n=5, seed=1, parse_cut=True)
    assert parsed[f"{prefix}/accuracy"] == 1.0 and parsed[f"{prefix}/accuracy_ci_high"] == 1.0
    calls = len(actor.calls)
    with pytest.raises(KeyError, match="GameTheory-v1"):
        evaluate_tasks(actor, prompter, [TASK, "NoSuchTask-v1"], n=5, seed=1)
    assert len(actor.calls) == calls  # refused before any generation


def test_task_metrics_use_the_exact_wilson_interval_for_one_sample():
    attempts = [make_attempt(i, 1.0 if i < 7 else 0.0, key=str(i)) for i in range(10)]
    metrics = task_metrics(attempts, "eval/tasks/X", problems=10, samples=1)
    assert metrics["eval/tasks/X/accuracy"] == 0.7
    assert (metrics["eval/tasks/X/accuracy_ci_low"],
            metrics["eval/tasks/X/accuracy_ci_high"]) == pytest.approx(wilson_interval(7, 10))
    assert metrics["eval/tasks/X/zero_sum/accuracy"] == metrics["eval/tasks/X/d1/accuracy"]
    with pytest.raises(ValueError, match="attempts"):
        task_metrics(attempts, "eval/tasks/X", problems=10, samples=2)


# --------------------------------------------------------------------------- end to end


def test_one_grpo_update_on_the_embedded_model(task, monkeypatch, one_torch_thread):
    """attempt -> GroupEstimator -> learner.update: real prompts, sampled tokens and
    log-probs; the verifier is replaced by a reward pattern (the tiny model cannot solve)."""
    from spiral.config import ActorConfig, AlgoConfig, LearnerConfig, ModelConfig
    from spiral.learning.learner import make_learner
    from spiral.models.loading import load_model, load_tokenizer
    from spiral.models.prompting import Prompter
    from spiral.models.tiny import SHIPPED
    from spiral.rollout.actor import HFActor

    tokenizer = load_tokenizer(str(SHIPPED))
    model = load_model(str(SHIPPED), ModelConfig(), torch.device("cpu"))
    actor = HFActor(copy.deepcopy(model), tokenizer, ActorConfig(max_new_tokens=6))
    small = tasks.make(TASK, categories=["zero_sum"])
    verified = []

    def pattern(problem, response):  # every other response right
        verified.append(response)
        return tasks.Score(float(len(verified) % 2), len(verified) % 2 == 1, True)
    monkeypatch.setattr(small, "verify", pattern)
    problems = draw_problems(small, 2, seed=0)
    attempts = attempt(actor, Prompter(tokenizer), small, problems, group_size=4, seed=0,
                       parse_cut=True)  # every response verified, cut at 6 tokens or not
    assert len(attempts) == len(verified) == 8
    assert all(1 <= len(a.response_ids) == len(a.logprobs) <= 6 for a in attempts)
    samples = GroupEstimator().samples(attempts, ONE_PROCESS)
    assert [s.advantage for s in samples] == [0.5, -0.5] * 4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learner = make_learner(model, LearnerConfig(lr=1e-3, device="cpu"), AlgoConfig(),
                           pad_id=tokenizer.pad_token_id, temperature=1.0, norm_tokens=6)
    stats = learner.update(samples)
    assert math.isfinite(stats["train/loss"]) and stats["train/skipped_updates"] == 0
    assert stats["train/samples"] == len(samples)
    changed = [k for k, v in learner.weights().items() if not torch.equal(v, before[k])]
    assert changed
