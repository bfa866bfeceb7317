"""Typed, validated configuration of ``python -m spiral.sft``, and the one source of its defaults.

The same pattern as `spiral.config`: every default lives in the dataclasses below (registered
with Hydra by `spiral.sft`; ``configs/sft.yaml`` and ``configs/sft_exp/*.yaml`` hold only what
differs), ranges are declared with each field (``ranged``), `spiral.config.from_mapping` builds
the frozen config and refuses a bad key, type or range in one line naming the key. The model,
actor and learner keys are training's own (`ModelConfig`, `ActorConfig`, `LearnerConfig`), so
their choices and rules (`spiral.config.CHOICES`, ``RELATIONS``) apply here too; the keys of
this command add `CHOICES` and `RELATIONS` of their own, checked by `to_sft_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spiral.config import (
    ActorConfig,
    LearnerConfig,
    ModelConfig,
    TrackingConfig,
    from_mapping,
    ranged,
)
from spiral.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Where the SFT targets come from (``mode=sft``), or the task EI samples (``mode=expert_
    iteration``)."""

    kind: str = "task"  # "chat" (a JSONL file), "task" (generated solutions) or "games"
    # (moves of the game's optimal player)
    path: str | None = None  # kind=chat: a JSONL file, one {"messages": [...]} per line
    task: str = "GameTheory-v1"  # kind=task, and expert iteration: a registered task id
    task_kwargs: dict[str, Any] = field(default_factory=dict)  # options of tasks.make(task)
    difficulty: int | None = ranged(None, "[1, 3]")  # task problems' difficulty; None: drawn
    game: str = "KuhnPoker-v1"  # kind=games: a game that registers an "optimal" opponent
    game_kwargs: dict[str, Any] = field(default_factory=dict)  # options of envs.make(game)
    opponent: str = "optimal"  # kind=games: the other seat, "optimal" (both seats are targets)
    # or "random" (only the optimal seat's moves are targets)
    examples: int = ranged(1024, ">= 1")  # examples generated (task, games) or read at most (chat)


@dataclass(frozen=True)
class ExpertIterationConfig:
    """Each step: sample answers to train-split problems, keep the correct ones, SFT on them."""

    questions_per_step: int = ranged(16, ">= 1")  # problems drawn per step (all ranks together)
    samples_per_question: int = ranged(4, ">= 1")  # answers sampled per problem
    max_kept_per_question: int = ranged(1, ">= 1")  # distinct correct answers kept per problem


@dataclass(frozen=True)
class SFTEvalConfig:
    every: int = ranged(10, ">= 0")  # evaluate every N steps (0: never); also at 0 and the end
    tasks: tuple[str, ...] = ()  # task ids whose test-split accuracy is measured
    task_problems: int = ranged(64, ">= 1")  # test problems per task
    games: tuple[str, ...] = ()  # game ids played against `opponents` (+ their exact metrics)
    opponents: tuple[str, ...] = ("random", "optimal")  # fixed opponents of the games
    matches: int = ranged(64, ">= 1")  # matches per (game, opponent), seats alternated
    exact: bool = True  # exact metrics (Kuhn exploitability...) of games that register them
    exact_policy: str = "logprob"  # policy from answer log-probs, or "sample" (reasoning models)
    exact_samples: int = ranged(64, ">= 1")  # answers per position with exact_policy=sample
    temperature: float = ranged(1.0, ">= 0", "0 is greedy")  # sampling temperature of answers
    top_p: float = ranged(1.0, "(0, 1]")  # nucleus sampling of evaluation answers


@dataclass(frozen=True)
class SFTConfig:
    mode: str = "sft"  # "sft" (fixed targets from `data`) or "expert_iteration"
    steps: int = ranged(100, ">= 1")  # total steps; a resumed run continues up to this
    seed: int = ranged(0, ">= 0")  # data, batches and sampling derive from (seed, step)
    out_dir: str = "runs/sft"  # run directory (resumes when it holds a checkpoint)
    batch_size: int = ranged(32, ">= 1")  # mode=sft: examples per step (all ranks together)
    checkpoint_every: int = ranged(10, ">= 1")  # steps between checkpoints (and one at the end)
    keep_checkpoints: int = ranged(2, ">= 1")  # newest checkpoints kept on disk
    progress: bool = True  # show a progress bar
    resume_force: bool = False  # relaunch even if a must-not-change key differs
    data: DataConfig = field(default_factory=DataConfig)
    ei: ExpertIterationConfig = field(default_factory=ExpertIterationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)  # EI sampling and evaluation
    learner: LearnerConfig = field(default_factory=LearnerConfig)  # lr, epochs per step, ...
    eval: SFTEvalConfig = field(default_factory=SFTEvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # TensorBoard, W&B


MODES = ("sft", "expert_iteration")
CHOICES = {
    "mode": MODES,
    "data.kind": ("chat", "task", "games"),
    "data.opponent": ("optimal", "random"),
}
# Rules joining keys: (key, test on the whole config, what the key needs).
RELATIONS = (
    ("mode", lambda c: c.mode != "expert_iteration" or c.data.kind == "task",
     "needs data.kind=task (expert iteration samples and verifies answers to data.task)"),
    ("data.path", lambda c: c.data.kind != "chat" or c.data.path is not None,
     "needs a JSONL file with data.kind=chat (data.path=/path/to/file.jsonl)"),
    ("actor.backend", lambda c: c.actor.backend == "hf",
     "spiral.sft samples with the hf actor; allowed: hf"),
)


def to_sft_config(data: dict[str, Any]) -> SFTConfig:
    """A plain mapping (the composed Hydra config) as a validated `SFTConfig`."""
    cfg = from_mapping(SFTConfig, data)
    for key, allowed in CHOICES.items():
        value = lookup(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    for key, holds, needs in RELATIONS:
        if not holds(cfg):
            raise ConfigError(f"{key}={lookup(cfg, key)!r}: {needs}")
    return cfg


def lookup(cfg: Any, key: str) -> Any:
    """The value of dotted ``key`` (``data.kind``) in ``cfg``."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
