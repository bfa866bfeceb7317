"""Task evaluation: accuracy on held-out problems of each task, overall and per stratum.

For each task, ``n`` problems of its TEST split, stratified over its categories (every category
gets ``n / len(categories)`` problems, one more or less), each answered ``samples`` times
(``spiral.rollout.tasks``). Per task id::

    eval/tasks/<task>/accuracy                 mean of `correct` over problems x samples
    eval/tasks/<task>/accuracy_ci_low, _high   95% Wilson interval (as outcome_rates names it)
    eval/tasks/<task>/reward                   mean reward (partial credit where a task has it)
    eval/tasks/<task>/format_rate              share of answers in the required format
    eval/tasks/<task>/cut_rate                 share of answers cut at the token limit
    eval/tasks/<task>/response_tokens_mean
    eval/tasks/<task>/problems, samples
    eval/tasks/<task>/<category>/accuracy      per category drawn
    eval/tasks/<task>/d<k>/accuracy            per difficulty drawn

The interval counts problems, not answers: the answers to one problem are not independent, and
the binomial variance over problems bounds that of the mean per-problem rate, so with
``samples > 1`` the interval is conservative (with one sample it is the exact Wilson interval).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import tasks
from spiral.evaluate.games import wilson_interval
from spiral.evaluate.math_eval import with_sampling
from spiral.records import Attempt
from spiral.rollout.actor import Actor
from spiral.rollout.tasks import attempt, draw_problems


def evaluate_tasks(actor: Actor, prompter: Callable[[str], list[int]],
                   task_ids: tuple[str, ...] | list[str], n: int, seed: int, samples: int = 1,
                   temperature: float | None = None, *, top_p: float = 1.0,
                   max_new_tokens: int | None = None, parse_cut: bool = False,
                   task_kwargs: dict[str, dict] | None = None) -> dict[str, float]:
    """``eval/tasks/<task>/...`` metrics of every task in ``task_ids`` (see the module doc).

    ``temperature`` None keeps the actor's; ``top_p`` and ``max_new_tokens`` (None: the
    actor's) apply to a copy of an actor that carries an ``ActorConfig``, as in math
    evaluation. ``task_kwargs[task_id]`` are passed to ``tasks.make``. Unknown task ids raise
    ``KeyError`` naming the registered ones before any generation.
    """
    if n < 1 or samples < 1:
        raise ValueError(f"n and samples must be >= 1, got n={n}, samples={samples}")
    built = {tid: tasks.make(tid, **(task_kwargs or {}).get(tid, {})) for tid in task_ids}
    actor = with_sampling(actor, top_p, max_new_tokens)
    metrics: dict[str, float] = {}
    for task_id, task in built.items():
        problems = draw_problems(task, n, _seed(seed, task_id, "problems"), split="test",
                                 categories=task.categories)
        attempts = attempt(actor, prompter, task, problems, samples,
                           _seed(seed, task_id, "sampling"), temperature, parse_cut)
        metrics |= task_metrics(attempts, f"eval/tasks/{task_id}", problems=n, samples=samples)
    return metrics


def task_metrics(attempts: list[Attempt], prefix: str, *, problems: int,
                 samples: int) -> dict[str, float]:
    """Accuracy with its interval, reward, format and cut rates, lengths, and accuracy per
    category and difficulty of ``attempts`` (``problems`` x ``samples`` of them)."""
    if len(attempts) != problems * samples:
        raise ValueError(f"{prefix}: {len(attempts)} attempts for {problems} problems x "
                         f"{samples} samples")
    accuracy = _mean([a.correct for a in attempts])
    low, high = wilson_interval(accuracy * problems, problems)
    out = {
        f"{prefix}/accuracy": accuracy,
        f"{prefix}/accuracy_ci_low": low,
        f"{prefix}/accuracy_ci_high": high,
        f"{prefix}/reward": _mean([a.reward for a in attempts]),
        f"{prefix}/format_rate": _mean([a.formatted for a in attempts]),
        f"{prefix}/cut_rate": _mean([a.cut for a in attempts]),
        f"{prefix}/response_tokens_mean": _mean([len(a.response_ids) for a in attempts]),
        f"{prefix}/problems": problems,
        f"{prefix}/samples": samples,
    }
    strata: dict[str, list[bool]] = defaultdict(list)
    for a in attempts:
        strata[a.category].append(a.correct)
        strata[f"d{a.difficulty}"].append(a.correct)
    for name, correct in sorted(strata.items()):
        out[f"{prefix}/{name}/accuracy"] = _mean(correct)
    return out


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else 0.0


def _seed(seed: int, task_id: str, stream: str) -> int:
    return random.Random(f"eval-tasks/{seed}/{task_id}/{stream}").randrange(2**31)
