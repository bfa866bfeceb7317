"""The task registry (make, list_tasks, register, spec, clear errors), the split rule, and
tasks.check_task: it accepts every registered task and rejects broken ones by rule."""

import itertools
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest

import tasks
from tasks import core
from tasks.check import TaskCheckError, main
from tasks.gametheory import GameTheory

GAME_THEORY = GameTheory()


def test_registered_tasks_are_listed_and_made():
    assert "GameTheory-v1" in tasks.list_tasks()
    task = tasks.make("GameTheory-v1")
    assert isinstance(task, tasks.Task)
    assert task.task_id == "GameTheory-v1"
    assert tasks.spec("GameTheory-v1").entry_point == "tasks.gametheory:GameTheory"


def test_unknown_id_lists_registered_ids():
    with pytest.raises(KeyError) as err:
        tasks.make("NoSuchTask-v9")
    assert "NoSuchTask-v9" in str(err.value)
    for task_id in tasks.list_tasks():
        assert task_id in str(err.value)


def test_register_refuses_duplicates_and_bad_entry_points():
    with pytest.raises(ValueError, match="already registered"):
        tasks.register("GameTheory-v1", "tasks.gametheory:GameTheory")
    with pytest.raises(ValueError, match="module:Class"):
        tasks.register("Broken-v1", "tasks.gametheory.GameTheory")
    assert "Broken-v1" not in tasks.list_tasks()


def test_register_is_lazy_and_keeps_default_kwargs(monkeypatch):
    monkeypatch.setattr(core, "_REGISTRY", dict(core._REGISTRY))
    tasks.register("Missing-v1", "no_such_module_anywhere:Task")  # not imported yet
    assert "Missing-v1" in tasks.list_tasks()
    with pytest.raises(ModuleNotFoundError):
        tasks.make("Missing-v1")
    tasks.register("ZeroSum-v1", "tasks.gametheory:GameTheory", categories=("zero_sum",))
    assert tasks.make("ZeroSum-v1").categories == ("zero_sum",)
    assert tasks.make("ZeroSum-v1", categories=("auction",)).categories == ("auction",)


def test_split_of_is_a_fixed_hash_with_a_fifth_in_test():
    keys = [f"category/d1/{i}" for i in range(20_000)]
    test = [key for key in keys if core.split_of(key) == "test"]
    assert abs(len(test) / len(keys) - core.TEST_PERCENT / 100) < 0.01
    assert core.split_of("zero_sum/d2/a504a013f4b4aec0") == "train"  # pinned: never moves
    # the identity decides, not the labels: the same game at two difficulties is in one split
    data = ((1, 2), (3, 4))
    assert all(core.split_of(core.instance_key("c", 1, (data, i)))
               == core.split_of(core.instance_key("c", 3, (data, i))) for i in range(200))
    assert len({core.split_of(f"{label}/same") for label in ("a", "b/d1", "c/d3")}) == 1


def test_splits_never_share_an_instance():
    drawn = {split: [GAME_THEORY.generate(seed, split) for seed in range(2000)]
             for split in ("train", "test")}
    for field in ("key", "prompt"):
        train, test = ({getattr(p, field) for p in drawn[s]} for s in ("train", "test"))
        assert not train & test
    assert all(core.split_of(p.key) == split for split in drawn for p in drawn[split])
    assert {p.category for p in drawn["test"]} == set(GAME_THEORY.categories)
    assert {p.difficulty for p in drawn["test"]} == {1, 2, 3}


def test_generate_in_split_redraws_and_gives_up_on_a_tiny_space():
    def draw(rng):
        return tasks.Problem("T", f"k/{rng.randrange(10**9)}", "\\boxed{}", 0, "c", 1)

    for split in core.SPLITS:
        assert core.split_of(core.generate_in_split("salt", 3, split, draw).key) == split
    key = next(f"k/{i}" for i in itertools.count() if core.split_of(f"k/{i}") == "train")

    def stuck(rng):
        return tasks.Problem("T", key, "\\boxed{}", 0, "c", 1)

    with pytest.raises(RuntimeError, match="too small"):
        core.generate_in_split("salt", 0, "test", stuck)
    with pytest.raises(ValueError, match="split"):
        core.generate_in_split("salt", 0, "dev", draw)


def test_categories_narrow_the_mix():
    only = tasks.make("GameTheory-v1", categories=["zero_sum", "auction"])
    assert {only.generate(seed).category for seed in range(50)} == {"zero_sum", "auction"}
    with pytest.raises(ValueError, match="unknown GameTheory-v1 categories"):
        tasks.make("GameTheory-v1", categories=["chess"])
    with pytest.raises(ValueError, match="difficulty"):
        GAME_THEORY.generate(0, difficulty=4)
    with pytest.raises(ValueError, match="split"):
        GAME_THEORY.generate(0, split="validation")


# --------------------------------------------------------------------------- check_task


# Deduction-v1's largest puzzles take ~0.2 s each to generate and prove unique; its own tests
# (tests/test_deduction.py) check thousands of instances against a brute force.
CHECKED = {"Deduction-v1": 40}


def test_check_task_accepts_every_registered_task():
    for task_id in tasks.list_tasks():
        n = CHECKED.get(task_id, 200)
        report = tasks.check_task(task_id, n=n)
        assert report.problems >= 2 * n


def test_check_task_accepts_an_instance_and_a_class():
    assert tasks.check_task(GameTheory(categories=("auction",)), n=10).task == "GameTheory-v1"
    assert tasks.check_task(GameTheory, n=10).problems > 20


def test_check_command_line(capsys):
    assert main(["GameTheory-v1", "-n", "5"]) == 0
    assert main(["NoSuchTask-v9"]) == 1
    out = capsys.readouterr().out
    assert "GameTheory-v1: ok" in out and "unknown task id 'NoSuchTask-v9'" in out


_draws = itertools.count()


class NonDeterministic(GameTheory):
    def generate(self, seed, split="train", category=None, difficulty=None):
        return super().generate(seed + next(_draws), split, category, difficulty)


class OverlappingSplits(GameTheory):
    def generate(self, seed, split="train", category=None, difficulty=None):
        return super().generate(seed, "train", category, difficulty)


class VerifyRaises(GameTheory):
    def verify(self, problem, response):
        return super().verify(problem, response.strip())  # None has no .strip()


class WrongAnswer(GameTheory):
    def answer_text(self, problem):
        return "\\boxed{(A, W), (A, X), (B, W), (B, X)}"


class NoFormatInPrompt(GameTheory):
    def generate(self, seed, split="train", category=None, difficulty=None):
        problem = super().generate(seed, split, category, difficulty)
        return tasks.Problem(**{**vars(problem), "prompt": "Solve this game."})


class UnformattedSample(GameTheory):
    def sample_answer(self, problem, rng):
        return f"Probably {rng.randint(0, 9)}."


class JunkIsCorrect(GameTheory):
    def verify(self, problem, response):
        return tasks.Score(1.0, True, True)


class RewardOutOfRange(GameTheory):
    def verify(self, problem, response):
        score = super().verify(problem, response)
        return tasks.Score(2 * score.reward, score.correct, score.formatted)


class IgnoresCategory(GameTheory):
    def generate(self, seed, split="train", category=None, difficulty=None):
        return super().generate(seed, split, None, difficulty)


class FractionAnswer(GameTheory):
    def generate(self, seed, split="train", category=None, difficulty=None):
        problem = super().generate(seed, split, category, difficulty)
        return tasks.Problem(**{**vars(problem), "answer": Fraction(1, 2)})


class NoCategories(GameTheory):
    categories = ()

    def __init__(self):
        pass


@pytest.mark.parametrize("broken, rule", [
    (NonDeterministic, "deterministic"),
    (OverlappingSplits, "splits-disjoint"),
    (VerifyRaises, "verify-never-raises"),
    (WrongAnswer, "answer-correct"),
    (NoFormatInPrompt, "prompt"),
    (UnformattedSample, "sample-formatted"),
    (JunkIsCorrect, "verify-never-raises"),
    (RewardOutOfRange, "score"),
    (IgnoresCategory, "requested"),
    (FractionAnswer, "problem"),
    (NoCategories, "protocol"),
])
def test_check_task_rejects_broken_tasks(broken, rule):
    with pytest.raises(TaskCheckError) as err:
        tasks.check_task(broken, n=20)
    assert err.value.rule == rule
    assert str(err.value).startswith(f"GameTheory-v1: rule '{rule}' violated: ")


def test_check_task_refuses_what_is_not_a_task():
    with pytest.raises(TypeError, match="task id, a task"):
        tasks.check_task(42)


def test_sample_answers_are_seeded_by_the_rng_only():
    task = tasks.make("GameTheory-v1")
    problem = task.generate(0, category="cooperative", difficulty=3)
    first = [task.sample_answer(problem, random.Random(5)) for _ in range(2)]
    assert first[0] == first[1]
    assert {task.sample_answer(problem, random.Random(seed)) for seed in range(20)} != {first[0]}


def test_the_docs_example_prompts_are_what_generate_gives():
    """docs/tasks.md pastes generated prompts; they must not drift from the generator."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text("utf-8")
    examples = re.findall(r'`(?:tasks\.make\("([\w-]+)"\)\.)?generate\((\d+), "(\w+)", "(\w+)", '
                          r'(\d)\)`\n\n```text\n(.*?)\n```', docs, re.DOTALL)
    assert {e[3] for e in examples if not e[0]} == set(GAME_THEORY.categories) - {
        "normal_form_2x2", "normal_form_3x4", "normal_form_4x4"}
    assert {e[0] for e in examples} == {"", "Math-v1"}  # "": GameTheory-v1's examples
    for task_id, seed, split, category, difficulty, prompt in examples:
        task = tasks.make(task_id) if task_id else GAME_THEORY
        assert task.generate(int(seed), split, category, int(difficulty)).prompt == prompt
