"""Conformance checker for tasks: ``tasks.check_task``, as ``envs.check_game`` is for games.

Run it on a registered id or on your own task (an instance, or a zero-argument callable that
returns one, such as its class)::

    python -c "import tasks; tasks.check_task('GameTheory-v1')"
    python -m tasks.check GameTheory-v1        # prints "ok" per task, or why not

The first violation raises ``TaskCheckError``, whose message names the task, the rule and
where, e.g. ``MyTask-v1: rule 'splits-disjoint' violated: key 'x/d1/ab' is in both splits``.

- ``protocol``: ``task_id`` is a str, ``categories`` a non-empty tuple of str, and every
  method of ``tasks.Task`` exists.
- ``deterministic``: the same (seed, split, category, difficulty) gives the same problem, and
  ``sample_answer`` with equally seeded rngs gives the same text.
- ``problem``: each problem is a ``Problem`` of this task, with a known category, difficulty
  1..3, a non-empty key and a JSON-serialisable answer (it survives a JSON round trip).
- ``requested``: asking for a category and difficulty gives a problem of that category and
  difficulty, for every category, difficulty and split.
- ``splits-disjoint``: over ``n`` seeds, no key and no prompt is drawn in both splits.
- ``prompt``: a non-empty str that states the answer format (it mentions ``\\boxed``).
- ``answer-correct``: ``answer_text(problem)``, alone or at the end of some prose, verifies
  as correct and formatted with reward 1.
- ``sample-formatted``: ``sample_answer(problem, rng)`` verifies as formatted.
- ``verify-never-raises``: ``verify`` on junk (empty, a broken ``\\boxed{``, random unicode,
  10k characters, ``None``) returns a Score, and never a correct one.
- ``score``: every Score has a finite reward in [0, 1]; a correct one is formatted with
  reward 1, an unformatted one has reward 0.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.core import SPLITS, Problem, Score, Task, spec

DIFFICULTIES = (1, 2, 3)
METHODS = tuple(name for name, value in vars(Task).items()
                if callable(value) and not name.startswith("_"))


def _junk() -> list[Any]:
    """Responses no task may choke on or count as correct (drawn once from Random(0))."""
    rng = random.Random(0)
    unicode = ["".join(chr(rng.randrange(0x20, 0xD800)) for _ in range(40)) for _ in range(3)]
    return ["", "   ", "\\boxed{", "\\boxed{}", "\\boxed{\\boxed{}", "}}}{{{", "\\boxed{}}}",
            "\\boxed{1/0}", "\\boxed{\\frac{1}{0}}", "\\boxed{1e999999999}",
            "\\boxed{" + "9" * 5000 + "}", "\\boxed{(,)}", "None", "NaN", "\x00", "💥" * 20,
            "x" * 10_000, "\\boxed{" + "(" * 500 + "}", *unicode, None, 3, b"\\boxed{1}"]


JUNK = _junk()


class TaskCheckError(AssertionError):
    """A task broke a conformance rule; ``rule`` names it, the message says how and where."""

    def __init__(self, task: str, rule: str, detail: str) -> None:
        super().__init__(f"{task}: rule '{rule}' violated: {detail}")
        self.task, self.rule, self.detail = task, rule, detail


class Violation(Exception):
    """Raised by a rule with what went wrong; ``check_task`` adds the task, rule and where."""


class BadScore(Violation):
    """A Score broke rule ``score``, whichever rule was checking the response."""


@dataclass(frozen=True)
class CheckReport:
    """What a passing ``check_task`` covered."""

    task: str
    problems: int  # problems generated and verified


# --------------------------------------------------------------------------- rules


def protocol(task: Task) -> None:
    if not isinstance(getattr(task, "task_id", None), str):
        raise Violation(f"task_id is {getattr(task, 'task_id', None)!r}, not a str")
    categories = getattr(task, "categories", None)
    if not (isinstance(categories, tuple) and categories
            and all(isinstance(c, str) for c in categories)):
        raise Violation(f"categories is {categories!r}, not a non-empty tuple of str")
    missing = [name for name in METHODS if not callable(getattr(task, name, None))]
    if missing:
        raise Violation(f"missing Task methods: {', '.join(missing)}")


def well_formed(task: Task, problem: Problem) -> None:
    if not isinstance(problem, Problem):
        raise Violation(f"generate returned a {type(problem).__name__}, not a Problem")
    if problem.task_id != task.task_id:
        raise Violation(f"problem.task_id is {problem.task_id!r}, not {task.task_id!r}")
    if problem.category not in task.categories or problem.difficulty not in DIFFICULTIES:
        raise Violation(f"category {problem.category!r} / difficulty {problem.difficulty!r} "
                        f"is not one of {task.categories} / {DIFFICULTIES}")
    if not (isinstance(problem.key, str) and problem.key):
        raise Violation(f"key {problem.key!r} is not a non-empty str")
    if json.loads(json.dumps(problem.answer)) != problem.answer:
        raise Violation(f"answer {problem.answer!r} does not survive a JSON round trip")


def prompt(problem: Problem) -> None:
    if not (isinstance(problem.prompt, str) and problem.prompt.strip()):
        raise Violation(f"prompt {problem.prompt!r} is not a non-empty str")
    if "\\boxed" not in problem.prompt:
        raise Violation("the prompt does not state the answer format (no \\boxed in it)")


def same(first: Any, second: Any, what: str) -> None:
    if first != second:
        raise Violation(f"{what} differs between two identical calls: {_short(first)}, "
                        f"then {_short(second)}")


def score(result: Any, response: Any) -> Score:
    """``result`` is a valid Score of verify(problem, response); returned for more checks."""
    if not isinstance(result, Score):
        raise BadScore(f"verify({_short(response)}) returned {_short(result)}, not a Score")
    reward = result.reward
    if not (isinstance(reward, int | float) and math.isfinite(reward) and 0 <= reward <= 1):
        raise BadScore(f"verify({_short(response)}) gave reward {reward!r}, not in [0, 1]")
    if result.correct and not (result.formatted and reward == 1):
        raise BadScore(f"verify({_short(response)}) is correct but {result}")
    if not result.formatted and reward != 0:
        raise BadScore(f"verify({_short(response)}) is unformatted but has reward {reward}")
    return result


def answer_correct(task: Task, problem: Problem) -> None:
    text = task.answer_text(problem)
    for response in (text, f"Let me work it out step by step.\n\nSo the answer is {text}."):
        result = score(task.verify(problem, response), response)
        if not result.correct:
            raise Violation(f"the canonical answer {_short(response)} verified as {result}")


def sample_formatted(task: Task, problem: Problem, seed: int) -> None:
    text = task.sample_answer(problem, random.Random(seed))
    same(text, task.sample_answer(problem, random.Random(seed)), "sample_answer")
    result = score(task.verify(problem, text), text)
    if not result.formatted:
        raise Violation(f"sample_answer gave {_short(text)}, which verified as {result}")


def verify_never_raises(task: Task, problem: Problem) -> None:
    for response in JUNK:
        try:
            result = task.verify(problem, response)
        except Exception as err:  # noqa: BLE001 - any exception is the violation
            raise Violation(f"verify({_short(response)}) raised {_error(err)}") from err
        if score(result, response).correct:
            raise Violation(f"junk {_short(response)} verified as correct")


def splits_disjoint(drawn: dict[str, list[Problem]]) -> None:
    train, test = drawn["train"], drawn["test"]
    for field in ("key", "prompt"):
        shared = {getattr(p, field) for p in train} & {getattr(p, field) for p in test}
        if shared:
            raise Violation(f"{field} {_short(min(shared))} is in both splits")


def requested(problem: Problem, category: str, difficulty: int) -> None:
    if (problem.category, problem.difficulty) != (category, difficulty):
        raise Violation(f"asked for {category!r} at difficulty {difficulty}, got "
                        f"{problem.category!r} at difficulty {problem.difficulty}")


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class _Subject:
    name: str
    task: Task

    def enforce(self, rule: str, where: str, check: Callable[..., Any], *args: Any) -> Any:
        """``check(*args)``; a Violation or any exception becomes a TaskCheckError."""
        try:
            return check(*args)
        except BadScore as violation:
            rule, detail = "score", str(violation)
        except Violation as violation:
            detail = str(violation)
        except Exception as err:  # noqa: BLE001 - a crash inside a rule breaks that rule
            name = getattr(check, "__name__", "check")
            raise TaskCheckError(self.name, rule, f"{name} raised {_error(err)} ({where})") from err
        raise TaskCheckError(self.name, rule, f"{detail} ({where})")

    def generate(self, where: str, seed: int, split: str, *request: Any) -> Problem:
        """A problem, checked for determinism, well-formedness and its prompt."""
        task = self.task
        problem = self.enforce("problem", where, task.generate, seed, split, *request)
        again = self.enforce("deterministic", where, task.generate, seed, split, *request)
        self.enforce("deterministic", where, same, problem, again, "generate")
        self.enforce("problem", where, well_formed, task, problem)
        self.enforce("prompt", where, prompt, problem)
        return problem


def check_task(task_or_id: str | Task | Callable[[], Task], n: int = 200) -> CheckReport:
    """Check a task against every conformance rule (see the module docstring) over seeds
    0..n-1 of both splits, and a few seeds of every category and difficulty.

    ``task_or_id`` is a registered id, a task, or a zero-argument callable returning one (such
    as its class). Raises ``TaskCheckError`` naming the first violated rule; returns a
    ``CheckReport`` otherwise."""
    subject = _subject(task_or_id)
    subject.enforce("protocol", "the task", protocol, subject.task)
    drawn: dict[str, list[Problem]] = {split: [] for split in SPLITS}
    for seed in range(n):
        for split in SPLITS:
            drawn[split].append(subject.generate(f"seed {seed}, {split}", seed, split))
    for category in subject.task.categories:
        for difficulty in DIFFICULTIES:
            for seed, split in enumerate(SPLITS):
                where = f"seed {seed}, {split}, {category!r}, difficulty {difficulty}"
                problem = subject.generate(where, seed, split, category, difficulty)
                subject.enforce("requested", where, requested, problem, category, difficulty)
                drawn[split].append(problem)
    subject.enforce("splits-disjoint", f"seeds 0..{n - 1}", splits_disjoint, drawn)
    problems = [p for split in SPLITS for p in drawn[split]]
    for index, problem in enumerate(problems):
        _check_answers(subject, problem, index)
    return CheckReport(subject.name, len(problems))


def _check_answers(subject: _Subject, problem: Problem, index: int) -> None:
    where, task = f"problem {problem.key!r}", subject.task
    subject.enforce("answer-correct", where, answer_correct, task, problem)
    subject.enforce("sample-formatted", where, sample_formatted, task, problem, index)
    if index % 10 == 0:  # junk is answer-independent: a sample of problems is enough
        subject.enforce("verify-never-raises", where, verify_never_raises, task, problem)


def _subject(task_or_id: str | Task | Callable[[], Task]) -> _Subject:
    if isinstance(task_or_id, str):
        return _Subject(task_or_id, spec(task_or_id).build())
    task = task_or_id
    if isinstance(task_or_id, type) or not hasattr(task_or_id, "generate"):
        if not callable(task_or_id):
            raise TypeError("check_task takes a task id, a task, or a zero-argument callable "
                            f"returning one, not {type(task_or_id).__name__}")
        task = task_or_id()
    return _Subject(str(getattr(task, "task_id", type(task).__name__)), task)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} chars)"


def _error(err: Exception) -> str:
    text = str(err) if len(str(err)) <= 80 else f"{str(err)[:80]}..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.check", description="Check tasks against check_task's rules."
    )
    parser.add_argument("ids", nargs="+", metavar="ID", help="registered task ids")
    parser.add_argument("-n", type=int, default=200, help="seeds per split (default 200)")
    args = parser.parse_args(argv)
    failed = False
    for task_id in args.ids:
        try:
            report = check_task(task_id, n=args.n)
        except (TaskCheckError, KeyError) as err:
            print(err.args[0], flush=True)
            failed = True
        else:
            print(f"{task_id}: ok ({report.problems} problems)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
