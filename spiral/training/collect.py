"""A training step's batch: matches played, then turned into learner samples by RAE; and task
problems answered, then turned into samples by the group baseline (GRPO, `collect_tasks`).

Two ways to size it (``env``):

- ``games_per_step`` matches (the default): every turn of them with a non-zero advantage.
- ``samples_per_step`` turn samples, as SPIRAL counts its batch: rounds of ``games_per_step``
  matches are played until that many turns with a non-zero advantage are in hand, then a
  random subset of exactly that size is kept (SPIRAL subsamples without replacement too).
  The baselines move after every round, so a later round is centred by the earlier ones' returns,
  closer to SPIRAL's per-game update than one update per step.

Under data parallelism each rank collects its share of ``samples_per_step`` and all ranks play
the same number of rounds (they agree after each round), since every round's baseline update
is a collective.
"""

from __future__ import annotations

import logging
import random

import tasks
from spiral import distributed
from spiral.config import RunConfig
from spiral.learning.advantages import RoleBaselines, shared_advantages
from spiral.learning.grpo import GroupEstimator
from spiral.records import Attempt, Episode, Sample
from spiral.rollout.selfplay import RolloutStats, play
from spiral.rollout.tasks import attempt, draw_problems

MAX_ROUNDS = 64  # rounds of matches a step may play to find its samples (then it takes fewer)
log = logging.getLogger(__name__)


def collect(cfg: RunConfig, actor, prompter, baselines: RoleBaselines, dist: distributed.Dist,
            *, seed: int, opponent=None, stats: RolloutStats | None = None
            ) -> tuple[list[Episode], list[Sample], int]:
    """This rank's episodes and samples of one step, and the rounds of matches played."""
    need = _share(cfg.env.samples_per_step, dist) if cfg.env.samples_per_step else None
    episodes: list[Episode] = []
    samples: list[Sample] = []
    for round_ in range(MAX_ROUNDS):
        played = play(actor, prompter, cfg.env, cfg.env.games_per_step,
                      seed=_round_seed(seed, round_), opponent=opponent, stats=stats,
                      shard=(dist.rank, dist.world_size))
        episodes += played
        samples += shared_advantages(  # the same baselines on every rank
            played, baselines, dist, rae=cfg.algo.rae, gamma=cfg.algo.gamma,
            drop_zero=cfg.algo.drop_zero_advantage)
        if need is None or _everyone_has(len(samples) >= need, dist):
            break
    else:
        log.warning("%d rounds of matches gave %d of the %d samples asked for; training on them",
                    MAX_ROUNDS, len(samples), need)
    if need is not None and len(samples) > need:
        samples = random.Random(f"subsample/{seed}/{dist.rank}").sample(samples, need)
    return episodes, samples, round_ + 1


def _share(total: int, dist: distributed.Dist) -> int:
    """This rank's part of ``total`` samples (the parts differ by at most one)."""
    return total * (dist.rank + 1) // dist.world_size - total * dist.rank // dist.world_size


def _everyone_has(enough: bool, dist: distributed.Dist) -> bool:
    return distributed.all_reduce([float(enough)], dist, "min")[0] > 0


def _round_seed(seed: int, round_: int) -> int:
    """Round 0 plays exactly the matches of a ``games_per_step`` step; later rounds new ones."""
    return seed if round_ == 0 else (seed + 7_777_777 * round_) % 2**31


def collect_tasks(cfg: RunConfig, actor, prompter, dist: distributed.Dist, *, seed: int,
                  stats: RolloutStats | None = None) -> tuple[list[Attempt], list[Sample]]:
    """This rank's answers to the step's task problems, and their GRPO samples.

    Every rank draws the same ``tasks.problems_per_step`` problems per task and answers its
    slice, ``tasks.group_size`` times each, so a problem's group stays on one rank."""
    attempts: list[Attempt] = []
    for index, task_id in enumerate(cfg.tasks.ids):
        task = tasks.make(task_id, **cfg.tasks.kwargs.get(task_id, {}))
        task_seed = (seed + 1_000_033 * (index + 1)) % 2**31
        problems = draw_problems(task, cfg.tasks.problems_per_step, seed=task_seed,
                                 difficulty=cfg.tasks.difficulty)
        attempts += attempt(actor, prompter, task, problems, cfg.tasks.group_size,
                            seed=task_seed, parse_cut=cfg.env.parse_cut,
                            shard=(dist.rank, dist.world_size), stats=stats)
    return attempts, GroupEstimator(scale=cfg.tasks.scale).samples(attempts, dist)
