"""Deduction-v1 against an independent brute force that reads each puzzle back from its prompt.

The brute force never sees the generator's clue objects or its solver: it parses the clue and
question sentences into predicates over a world ``W`` (``W.w[s]``, ``W.r[s]``, ``W.t[s]``: the
weapon, room and hour index of suspect ``s``; ``W.m``: the murderer), enumerates every world
(the murderer, then one permutation per attribute, pruning on clues already decidable), and
checks that exactly one survives and that it answers the questions as ``problem.answer`` does.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.core import split_of
from tasks.deduction import CATEGORIES, Deduction, World, make_clues, sentence

TASK = Deduction()
COUNTS = {1: 2000, 2: 200, 3: 100}  # instances per difficulty, each solved by brute force
LISTS = {"Suspects": "s", "Weapons": "w", "Rooms": "r", "Times": "t"}
ASKED = {"who": "s", "what": "w", "where": "r", "when": "t"}
PREDICATES = (  # prefix, negated, the subject that names the same suspect
    ("did not have the ", True, "the person with the "),
    ("had the ", False, "the person with the "),
    ("was not in the ", True, "the person in the "),
    ("was in the ", False, "the person in the "),
    ("did not arrive at ", True, "the person who arrived at "),
    ("arrived at ", False, "the person who arrived at "),
    ("was not ", True, ""),
    ("was ", False, ""),
)
ROOT = Path(__file__).resolve().parents[1]


class Puzzle:
    """A prompt read back: ``clues`` as ``(holds(W), attributes read)``, ``questions`` as
    ``answer(W)``, and the name lists by attribute (``"s"`` for the suspects)."""

    def __init__(self, prompt: str):
        self.names = {LISTS[label]: items.split(", ") for label, items in
                      re.findall(r"^(Suspects|Weapons|Rooms|Times): (.*)$", prompt, re.M)}
        clues = re.search(r"\nClues:\n(.*?)\n\n", prompt, re.S)[1].splitlines()
        questions = re.search(r"\nQuestions:\n(.*?)\n\n", prompt, re.S)[1].splitlines()
        self.clues = [self.clue(re.sub(r"^\d+\. ", "", line)) for line in clues]
        self.questions = [self.question(re.sub(r"^\d+\. ", "", line)) for line in questions]

    def subject(self, text: str):
        """``(suspect(W), attributes read)`` for a subject phrase, or None."""
        for attr, prefix in (("w", "the person with the "), ("r", "the person in the "),
                             ("t", "the person who arrived at ")):
            if text.lower().startswith(prefix) and text[len(prefix):] in self.names[attr]:
                value = self.names[attr].index(text[len(prefix):])
                return (lambda W, attr=attr, value=value: getattr(W, attr).index(value)), {attr}
        if text.lower() == "the murderer":
            return (lambda W: W.m), {"m"}
        if text not in self.names["s"]:
            return None
        suspect = self.names["s"].index(text)
        return (lambda W: suspect), set()

    def predicate(self, text: str):
        """``(negated, (suspect(W), attributes))`` ("had the rope" names the rope's holder)."""
        for prefix, negated, subject in PREDICATES:
            if text.startswith(prefix) and (named := self.subject(subject + text[len(prefix):])):
                return negated, named
        return None

    def statement(self, text: str):
        """``(holds(W), attributes read)`` of "<subject> <predicate>", split where both read."""
        splits = ((self.subject(text[:i]), self.predicate(text[i + 1:]))
                  for i, char in enumerate(text) if char == " ")
        found = next(((subject, predicate) for subject, predicate in splits
                      if subject and predicate), None)
        assert found, f"unread statement {text!r}"
        (who, read), (negated, (other, read_too)) = found
        return (lambda W: (who(W) == other(W)) != negated), read | read_too

    def clue(self, text: str):
        text = text.removesuffix(".")
        if text.startswith("At least one of these is true: "):
            (first, read), (second, read_too) = map(self.statement, text[31:].split("; "))
            return (lambda W: first(W) or second(W)), read | read_too
        before, after = " arrived before ", " arrived exactly one hour after "
        if before in text:
            (a, read), (b, read_too) = map(self.subject, text.split(before))
            return (lambda W: W.t[a(W)] < W.t[b(W)]), read | read_too | {"t"}
        if after in text:
            (a, read), (b, read_too) = map(self.subject, text.split(after))
            return (lambda W: W.t[a(W)] == W.t[b(W)] + 1), read | read_too | {"t"}
        if " either " in text:
            subject, _, options = text.partition(" either ")
            (who, read), options = self.subject(subject), options.split(" or ")
            options = [self.predicate(option) for option in options]
            assert len(options) == 2 and not any(negated for negated, _ in options)
            (b, read_b), (c, read_c) = (option for _, option in options)
            return (lambda W: who(W) in (b(W), c(W))), read | read_b | read_c
        return self.statement(text)

    def question(self, text: str):
        if match := re.fullmatch(r"Who (.+)\?", text):
            negated, (who, _) = self.predicate(match[1])
            assert not negated
            return lambda W: self.names["s"][who(W)]
        for attr, pattern in (("w", r"Which weapon did (.+) have\?"),
                              ("r", r"In which room was (.+)\?"),
                              ("t", r"At what time did (.+) arrive\?")):
            if match := re.fullmatch(pattern, text):
                who, _ = self.subject(match[1])
                return lambda W, attr=attr, who=who: self.names[attr][getattr(W, attr)[who(W)]]
        raise AssertionError(f"unread question {text!r}")


def worlds(clues, n: int):
    """Every world satisfying ``clues``, by brute force: the murderer ranges over the suspects
    and each attribute over all permutations, those failing a clue that reads it alone dropped
    first; attributes are set in the order that decides most clues soonest, and every other
    clue is checked as soon as all it reads is set."""
    world, order = SimpleNamespace(), []
    while len(order) < 4:
        order.append(max(sorted(set("mwrt") - set(order)), key=lambda attr: sum(
            read <= {attr, *order} and not read <= set(order) for _, read in clues)))
    domains = {}
    for attr in order:
        domains[attr] = []
        for value in range(n) if attr == "m" else itertools.permutations(range(n)):
            setattr(world, attr, value)
            if all(holds(world) for holds, read in clues if read == {attr}):
                domains[attr].append(value)
    stages = [[holds for holds, read in clues if len(read) != 1 and read <= set(order[:i + 1])
               and not (read and read <= set(order[:i]))] for i in range(len(order))]

    def search(stage: int):
        if stage == len(order):
            yield SimpleNamespace(**vars(world))
            return
        for value in domains[order[stage]]:
            setattr(world, order[stage], value)
            if all(holds(world) for holds in stages[stage]):
                yield from search(stage + 1)

    return search(0)


def arguments(seed: int, level: int) -> tuple:
    """The generate arguments of the fixture's ``seed``: a third test, every category."""
    return seed, "test" if seed % 3 == 2 else "train", (*CATEGORIES, None)[seed // 3 % 6], level


@pytest.fixture(scope="module")
def problems():
    """``(split, problem)`` by difficulty."""
    return {level: [(arguments(seed, level)[1], TASK.generate(*arguments(seed, level)))
                    for seed in range(count)] for level, count in COUNTS.items()}


def test_no_clues_leave_every_world():
    assert sum(1 for _ in worlds([], 3)) == 3 * 6 ** 3  # murderer x weapons x rooms x hours
    assert sum(1 for _ in worlds([], 4)) == 4 * 24 ** 3


@pytest.mark.parametrize("level", [1, 2, 3])
def test_brute_force_finds_exactly_the_stored_answer(problems, level):
    for _, problem in problems[level]:
        puzzle = Puzzle(problem.prompt)
        assert len(puzzle.names["s"]) == level + 2 == len(puzzle.names["t"])
        found = list(worlds(puzzle.clues, level + 2))
        assert len(found) == 1, problem.key
        assert [answer(found[0]) for answer in puzzle.questions] == problem.answer, problem.key
        assert len(problem.answer) == level + 1 and problem.difficulty == level
        if problem.category in ASKED:
            assert set(problem.answer) <= set(puzzle.names[ASKED[problem.category]])


@pytest.mark.parametrize("level, count", [(2, 30), (3, 3)])
def test_no_clue_is_redundant_from_difficulty_2(problems, level, count):
    for _, problem in problems[level][:count]:
        clues = Puzzle(problem.prompt).clues
        for i in range(len(clues)):
            rest = clues[:i] + clues[i + 1:]
            assert len(list(itertools.islice(worlds(rest, level + 2), 2))) == 2, (problem.key, i)


def test_splits_are_disjoint_and_read_off_the_key(problems):
    every = [pair for level in problems for pair in problems[level]]
    assert all(split_of(problem.key) == split for split, problem in every)
    train = {problem.key for split, problem in every if split == "train"}
    test = {problem.key for split, problem in every if split == "test"}
    assert len(train) + len(test) == len(every) == 2300 and len(test) > 700
    assert not train & test
    prompts = {split: {p.prompt for s, p in every if s == split} for split in ("train", "test")}
    assert not prompts["train"] & prompts["test"]


def test_generation_is_deterministic(problems):
    for level in (1, 2, 3):
        for seed in (0, 2, 5):
            assert TASK.generate(*arguments(seed, level)) == problems[level][seed][1]
    code = ("from tasks.deduction import Deduction; "
            "print(Deduction().generate(7, 'test', None, 3).prompt)")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed})
               .stdout for seed in ("1", "2")}  # str hashes differ; the puzzle must not
    assert outputs == {TASK.generate(7, "test", None, 3).prompt + "\n"}


def test_clues_of_a_fixed_world_are_pinned():
    """Clue search follows the solver's search order: a new python-constraint must not change
    the puzzles drawn for a seed unnoticed."""
    cast = {"suspect": ("Ann", "Bob", "Cat", "Dan"), "weapon": ("rope", "knife", "axe", "pipe"),
            "room": ("hall", "study", "attic", "cellar"), "time": ("7 pm", "8 pm", "9 pm", "10 pm")}
    world = World(4, (2, 0, 3, 1, 1, 3, 0, 2, 0, 1, 2, 3, 3))  # rope: Cat, knife: Ann, ...
    assert [sentence(clue, cast) for clue in make_clues(random.Random(0), world, 3)] == [
        "Ann was in the attic.",
        "Bob arrived exactly one hour after the person in the attic.",
        "The person with the pipe arrived exactly one hour after the person in the attic.",
        "Cat arrived at 9 pm.",
        "At least one of these is true: the person with the rope was in the cellar; Cat had the "
        "knife.",
        "At least one of these is true: Cat had the rope; Bob had the rope.",
        "The person who arrived at 8 pm either was in the hall or was in the attic.",
        "The person with the knife arrived before the person in the study.",
        "At least one of these is true: the person in the study arrived at 9 pm; Dan was the "
        "murderer.",
    ]


def test_bad_arguments_raise():
    for kwargs in ({"split": "dev"}, {"category": "why"}, {"difficulty": 4}):
        with pytest.raises(ValueError):
            TASK.generate(0, **kwargs)


# --------------------------------------------------------------------------- verify


def boxed(parts) -> str:
    return "\\boxed{" + "; ".join(parts) + "}"


def equivalents(problem):
    answer = problem.answer
    numbered = [f"{i}: {a}" for i, a in enumerate(answer, 1)]
    hours = [re.sub(r"^(\d+) pm$", r"\1:00 P.M.", a) for a in answer]
    return [
        TASK.answer_text(problem),
        f"Reasoning first. \\boxed{{1: nobody}} Then: {boxed(numbered)}",
        boxed(reversed([f"{i}: {a.upper()}" for i, a in enumerate(answer, 1)])),
        "\\boxed{" + "\n".join(f"Q{i}. the  {a.lower()}" for i, a in enumerate(answer, 1)) + "}",
        "\\boxed{" + ", ".join(f"({i}) \\text{{{a}}}" for i, a in enumerate(hours, 1)) + "}",
        boxed(a.replace(" ", "") for a in answer),  # unnumbered, in order
    ]


def test_verify_accepts_the_answer_in_equivalent_forms(problems):
    for _, problem in problems[2][:60] + problems[3][:20]:
        for response in equivalents(problem):
            assert TASK.verify(problem, response).reward == 1.0, response
            assert TASK.verify(problem, response).correct


def test_verify_gives_partial_credit_and_rejects_near_misses(problems):
    for _, problem in problems[3][:40]:
        answer, count = problem.answer, len(problem.answer)
        lists = Puzzle(problem.prompt).names.values()
        wrong = next(name for names in lists if answer[0] in names for name in names
                     if name != answer[0])
        score = TASK.verify(problem, boxed(f"{i}: {a}" for i, a in
                                           enumerate([wrong, *answer[1:]], 1)))
        assert (score.reward, score.correct, score.formatted) == ((count - 1) / count, False, True)
        i, j = next((i, j) for i, j in itertools.combinations(range(count), 2)
                    if answer[i] != answer[j])
        swapped = list(answer)
        swapped[i], swapped[j] = answer[j], answer[i]
        assert TASK.verify(problem, boxed(swapped)).reward == (count - 2) / count
        hedged = [f"1: {answer[0]} or {wrong}", *(f"{k}: {a}" for k, a in enumerate(answer, 1))]
        assert TASK.verify(problem, boxed(hedged)).reward == (count - 1) / count  # 1 twice
        assert TASK.verify(problem, boxed(["1: " + answer[0], *answer[1:]])).formatted is False


def test_verify_never_raises_on_junk(problems):
    problem = problems[3][0][1]
    junk = ["", "\\boxed{", "\\boxed{}", "\\boxed{;;;}", "}" * 50, "\\boxed{" * 500, "x" * 10_000,
            "\\boxed{" + "1: a;" * 3000 + "}", "\\boxed{1: 名探偵; 2: 🔪}", "\\boxed{0: a; 99: b}",
            "\\boxed{\\text{\\boxed{1: a}}}", "\x00\\boxed{\ud800}", "\\boxed{1:}"]
    rng = random.Random(0)
    junk += ["".join(rng.choice("\\boxed{}:;1.) ab\n") for _ in range(200)) for _ in range(300)]
    for response in junk:
        score = TASK.verify(problem, response)
        assert 0.0 <= score.reward <= 1.0 and (score.formatted or score.reward == 0.0)
        assert not score.correct


def test_sample_answer_is_well_formed_but_unsolved(problems):
    rng = random.Random(0)
    scores = []
    for _, problem in problems[3]:
        names = Puzzle(problem.prompt).names
        response = TASK.sample_answer(problem, rng)
        given = re.fullmatch(r"\\boxed\{(.*)\}", response)[1].split("; ")
        assert [part.split(": ")[0] for part in given] == [str(i) for i in
                                                           range(1, len(problem.answer) + 1)]
        assert all(any(part.split(": ", 1)[1] in v for v in names.values()) for part in given)
        scores.append(TASK.verify(problem, response))
    assert all(score.formatted for score in scores)
    assert sum(score.correct for score in scores) < len(scores) // 2
