"""Expert iteration (rejection-sampling fine-tuning) on a verifiable task::

    for step in range(start + 1, steps + 1):
        problems = draw_problems(task, questions_per_step, seed=(seed, step), split="train")
        attempts = attempt(actor, prompter, task, problems, samples_per_question)  # verified
        kept = keep_correct(attempts, max_kept_per_question)  # distinct correct answers
        learner.update(kept)          # SFT on them: learner.epochs passes (spiral.learning.sft)
        actor.load_weights(learner.weights())

A problem with at least one correct answer contributes at least one example (up to
``max_kept_per_question`` distinct ones, in sampling order); a problem with none contributes
nothing, so the model only ever imitates its own verified successes. Under data parallelism each
rank answers a contiguous slice of the problems (``spiral.rollout.tasks.attempt``), keeps its
own correct answers and trains on them; the statistics are global.

Logged per step (`ei_metrics`): ``ei/accuracy``, ``ei/reward_mean``, ``ei/format_rate`` and
``ei/cut_rate`` of every sampled answer, ``ei/kept`` (examples trained on),
``ei/questions_solved`` (problems with a correct answer), ``ei/response_tokens_mean`` and
``ei/entropy``: the mean over sampled response tokens of the entropy of the policy's full
next-token distribution at the sampling temperature, computed before the update with the hf
actor's model (the policy's weights; ``spiral.learning.sft.response_entropy``, chunked).
"""

from __future__ import annotations

from collections import Counter

from spiral import distributed
from spiral.learning.sft import Example, response_entropy
from spiral.records import Attempt
from spiral.rollout.selfplay import RolloutStats
from spiral.rollout.tasks import attempt, draw_problems
from spiral.sft_config import SFTConfig


def collect(cfg: SFTConfig, actor, prompter, task, seed: int,
            dist: distributed.Dist = distributed.ONE_PROCESS,
            stats: RolloutStats | None = None) -> tuple[list[Attempt], list[Attempt]]:
    """This rank's verified answers to the step's problems, and those kept for SFT."""
    problems = draw_problems(task, cfg.ei.questions_per_step, seed, split="train",
                             difficulty=cfg.data.difficulty)
    attempts = attempt(actor, prompter, task, problems, cfg.ei.samples_per_question, seed=seed,
                       shard=(dist.rank, dist.world_size), stats=stats)
    return attempts, keep_correct(attempts, cfg.ei.max_kept_per_question)


def keep_correct(attempts: list[Attempt], max_kept: int) -> list[Attempt]:
    """Per problem (``Attempt.group``), its first ``max_kept`` distinct correct answers (the
    same response tokens count once), in sampling order."""
    kept: list[Attempt] = []
    seen: set[tuple[int, tuple[int, ...]]] = set()
    per_problem: Counter[int] = Counter()
    for a in attempts:
        key = (a.group, tuple(a.response_ids))
        if a.correct and key not in seen and per_problem[a.group] < max_kept:
            seen.add(key)
            per_problem[a.group] += 1
            kept.append(a)
    return kept


def examples_of(attempts: list[Attempt]) -> list[Example]:
    return [(a.prompt_ids, a.response_ids) for a in attempts]


def ei_step_data(cfg: SFTConfig, actor, prompter, task, seed: int, *, pad_id: int,
                 dist: distributed.Dist = distributed.ONE_PROCESS
                 ) -> tuple[list[Example], dict[str, float]]:
    """This rank's SFT examples for one EI step, and the step's ``ei/...`` metrics (on rank 0;
    an empty dict elsewhere). ``actor.model`` (the hf actor's) scores the entropy."""
    stats = RolloutStats()
    attempts, kept = collect(cfg, actor, prompter, task, seed, dist, stats)
    entropy, tokens = response_entropy(actor.model, examples_of(attempts), pad_id,
                                       cfg.actor.temperature,
                                       token_budget=cfg.learner.micro_batch_tokens)
    entropy, tokens = distributed.all_reduce([entropy, float(tokens)], dist)
    gathered = distributed.gather_to_main((attempts, len(kept)), dist)
    metrics: dict[str, float] = {}
    if gathered is not None:
        everyone = [a for shard, _ in gathered for a in shard]
        metrics = ei_metrics(everyone, sum(n for _, n in gathered))
        metrics["ei/entropy"] = entropy / tokens if tokens else 0.0
        metrics["time/rollout_s"] = stats.seconds
    return examples_of(kept), metrics


def ei_metrics(attempts: list[Attempt], kept: int) -> dict[str, float]:
    """The ``ei/...`` metrics of one step's answers (all ranks'), ``kept`` of them trained on."""
    n = max(len(attempts), 1)
    solved = {a.group for a in attempts if a.correct}
    return {
        "ei/accuracy": sum(a.correct for a in attempts) / n,
        "ei/reward_mean": sum(a.reward for a in attempts) / n,
        "ei/format_rate": sum(a.formatted for a in attempts) / n,
        "ei/cut_rate": sum(a.cut for a in attempts) / n,
        "ei/response_tokens_mean": sum(len(a.response_ids) for a in attempts) / n,
        "ei/kept": kept,
        "ei/questions_solved": len(solved),
    }
