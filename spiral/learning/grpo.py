"""Group-relative advantages (GRPO) for tasks, and the one interface every advantage estimator
satisfies.

A task problem is answered ``group_size`` times (``spiral.rollout.tasks.attempt``); the other
answers to the same problem are the baseline. For a group with rewards r_1..r_G:

    A_i = r_i - mean(r)                          scale="none" (default, Dr.GRPO)
    A_i = (r_i - mean(r)) / (std(r) + eps)       scale="std"  (GRPO; std over the group, n - 1)

The std division up-weights groups whose answers nearly all agree (a small std); Dr.GRPO drops
it and keeps the loss's constant normalisation (``norm_tokens`` per sequence, see
``spiral.learning.loss``), which the PPO loop already applies to every sample. A group whose
rewards are all equal has no signal: its advantages are all 0 and, with ``drop_zero``, its
samples are left out (the filter DAPO calls dynamic sampling). A zero advantage inside a mixed
group (a partial-credit reward equal to the mean) is kept: the group trains as a whole.

Every response to a problem is on one rank (the rollout shards by problem), so the groups need
no communication between ranks.

``AdvantageEstimator`` is what the training loop calls, whatever the records: ``RAEEstimator``
turns game episodes into samples with role-conditioned baselines (``spiral.learning.advantages``;
its baselines are training state), ``GroupEstimator`` turns task attempts into samples with the
group baseline (stateless).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Protocol, runtime_checkable

from spiral.distributed import Dist
from spiral.learning.advantages import RoleBaselines, shared_advantages
from spiral.records import Attempt, Episode, Sample

SCALES = ("none", "std")


@runtime_checkable
class AdvantageEstimator(Protocol):
    """Records of one step (this rank's) -> learner samples; state saved with checkpoints."""

    def samples(self, records: list, dist: Dist) -> list[Sample]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def group_advantages(attempts: list[Attempt], *, scale: str = "none", eps: float = 1e-6,
                     drop_zero: bool = True) -> list[Sample]:
    """One sample per attempt, its advantage relative to the other answers to its problem.

    Groups are the attempts sharing (task, group index, problem key); samples keep the order
    of the attempts. ``game_id`` of a sample is the task id (the learner groups micro-batches
    by it, so a task's shared prompt prefix runs once).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    groups: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        groups[a.task_id, a.group, a.key].append(i)
    advantages: dict[int, float] = {}
    for members in groups.values():
        rewards = [attempts[i].reward for i in members]
        if drop_zero and len(set(rewards)) == 1:
            continue
        for i, value in zip(members, _centred(rewards, scale, eps)):
            advantages[i] = value
    return [
        Sample(prompt_ids=a.prompt_ids, response_ids=a.response_ids, advantage=advantages[i],
               actor_logprobs=a.logprobs, game_id=a.task_id)
        for i, a in enumerate(attempts) if i in advantages
    ]


def _centred(rewards: list[float], scale: str, eps: float) -> list[float]:
    mean = sum(rewards) / len(rewards)
    centred = [r - mean for r in rewards]
    if scale == "none":
        return centred
    std = group_std(rewards)
    return [c / (std + eps) for c in centred]


def group_std(rewards: list[float]) -> float:
    """Sample standard deviation (n - 1, as torch.std in GRPO implementations); 0 for one."""
    if len(rewards) < 2:
        return 0.0
    mean = sum(rewards) / len(rewards)
    return math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))


class GroupEstimator:
    """Task attempts -> samples with group-relative advantages; keeps no state."""

    def __init__(self, scale: str = "none", eps: float = 1e-6, drop_zero: bool = True):
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        if not eps > 0.0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.scale, self.eps, self.drop_zero = scale, eps, drop_zero

    def samples(self, records: list[Attempt], dist: Dist) -> list[Sample]:
        """``dist`` is unused: a problem's whole group is on one rank."""
        return group_advantages(records, scale=self.scale, eps=self.eps,
                                drop_zero=self.drop_zero)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Only an empty state fits: a non-empty one was saved by another estimator."""
        if state:
            raise ValueError(f"GroupEstimator keeps no state; got keys {sorted(state)}")


class RAEEstimator:
    """Game episodes -> samples with role-conditioned advantages (SPIRAL's RAE).

    ``baselines`` advance with every rank's returns (``shared_advantages``) and are the state
    checkpoints carry; ``load_state_dict`` restores them in place, so anyone holding
    ``self.baselines`` sees the restored values.
    """

    def __init__(self, baselines: RoleBaselines, *, rae: bool = True, gamma: float = 1.0,
                 drop_zero: bool = True):
        self.baselines = baselines
        self.rae, self.gamma, self.drop_zero = rae, gamma, drop_zero

    def samples(self, records: list[Episode], dist: Dist) -> list[Sample]:
        return shared_advantages(records, self.baselines, dist, rae=self.rae, gamma=self.gamma,
                                 drop_zero=self.drop_zero)

    def state_dict(self) -> dict:
        return self.baselines.state_dict()

    def load_state_dict(self, state: dict) -> None:
        loaded = RoleBaselines.from_state_dict(state)
        self.baselines.decay, self.baselines.values = loaded.decay, loaded.values
