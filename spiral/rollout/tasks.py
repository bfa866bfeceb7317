"""Task rollout: each problem of a step answered ``group_size`` times in one generation call.

``draw_problems`` turns a seed into a stream of problems: problem ``i`` depends only on (task,
seed, split, i), so the first k problems of a longer draw are the problems of a draw of k, and a
rank can tell which problems are its share without anyone sending them. ``attempt`` renders each
problem's prompt once, asks the actor for ``group_size`` responses to each in one batched call,
and verifies every response with the task. The responses to one problem are a group: the
group-relative baseline of ``spiral.learning.grpo`` compares them with each other.

A response cut at the token limit scores 0 (not formatted, not correct), as a cut move is an
invalid move in a game; with ``parse_cut`` it is verified as it stands, as SPIRAL does.

Data parallelism (``shard=(rank, world)``): every rank draws the same problems, takes the
``rank``-th contiguous slice of them (whole groups: a group never spans ranks) and samples
with a stream of its own; ``Attempt.group`` is the problem's index in the whole step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from spiral.distributed import shard_range
from spiral.records import Attempt
from spiral.rollout.actor import Actor, Generation
from spiral.rollout.selfplay import RolloutStats
from tasks.core import NO_ANSWER, Problem, Task

PromptFn = Callable[[str], list[int]]  # problem text -> prompt ids (e.g. a spiral Prompter)


def draw_problems(task: Task, n: int, seed: int, split: str = "train",
                  categories: Sequence[str] | None = None,
                  difficulty: int | None = None) -> list[Problem]:
    """``n`` problems of ``task`` from ``split``, deterministic in the arguments.

    ``categories=None`` leaves the category to the task (its own mix); given, the problems are
    stratified over them: every block of ``len(categories)`` consecutive problems holds each
    category once, in an order shuffled by the seed, so each gets ``n / len(categories)``
    problems (one more or less). ``difficulty=None`` lets the task draw it from the seed.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if categories is not None:
        unknown = sorted(set(categories) - set(task.categories))
        if unknown or not categories:
            raise ValueError(f"categories of {task.task_id} must be a non-empty subset of "
                             f"{', '.join(task.categories)}; got {list(categories)}")
    return [_problem(task, seed, split, i, categories, difficulty) for i in range(n)]


def _problem(task: Task, seed: int, split: str, i: int, categories: Sequence[str] | None,
             difficulty: int | None) -> Problem:
    rng = random.Random(f"problems/{task.task_id}/{seed}/{split}/{i}")
    category = None
    if categories is not None:
        order = list(categories)
        random.Random(f"strata/{task.task_id}/{seed}/{split}/{i // len(order)}").shuffle(order)
        category = order[i % len(order)]
    return task.generate(rng.randrange(2**31), split, category, difficulty)


def attempt(actor: Actor, prompter: PromptFn, task: Task, problems: list[Problem],
            group_size: int, seed: int, temperature: float | None = None,
            parse_cut: bool = False, *, shard: tuple[int, int] = (0, 1),
            stats: RolloutStats | None = None) -> list[Attempt]:
    """``group_size`` verified responses to each problem (this rank's share), problem by
    problem: attempts ``[g * group_size, (g + 1) * group_size)`` answer the g-th problem taken.

    One ``actor.generate`` call covers every response. ``shard=(index, count)`` takes the
    ``index``-th of ``count`` contiguous slices of ``problems`` with a sampling stream of its
    own (as ``spiral.rollout.selfplay.play`` does with matches); ``stats`` accumulates timings.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    started = time.perf_counter()
    index, count = shard
    lo, hi = shard_range(len(problems), index, count)
    rng = random.Random(f"tasks/{seed}" if count == 1 else f"tasks/{seed}/shard{index}")
    mine = list(enumerate(problems))[lo:hi]
    prompts = [prompter(problem.prompt) for _, problem in mine]
    batch = [ids for ids in prompts for _ in range(group_size)]
    generations: list[Generation] = []
    gen_started = time.perf_counter()
    if batch:
        generations = actor.generate(batch, seed=rng.randrange(2**31), temperature=temperature)
    generate_seconds = time.perf_counter() - gen_started
    out = []
    for k, gen in enumerate(generations):
        group, problem = mine[k // group_size]
        out.append(_verified(task, problem, group, batch[k], gen, parse_cut))
    if stats is not None:
        stats.seconds += time.perf_counter() - started
        stats.generate_seconds += generate_seconds
        stats.generations += len(batch)
    return out


def _verified(task: Task, problem: Problem, group: int, prompt_ids: list[int], gen: Generation,
              parse_cut: bool) -> Attempt:
    score = task.verify(problem, gen.text) if gen.finished or parse_cut else NO_ANSWER
    return Attempt(
        task_id=problem.task_id, key=problem.key, category=problem.category,
        difficulty=problem.difficulty, prompt_ids=prompt_ids, response_ids=gen.token_ids,
        logprobs=gen.logprobs, text=gen.text, cut=not gen.finished, reward=float(score.reward),
        correct=score.correct, formatted=score.formatted, group=group,
    )
