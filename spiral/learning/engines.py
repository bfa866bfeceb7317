"""Engines: forward, backward and optimizer step of one rank, under the one PPO loop.

``spiral.learning.ppo.PPO`` drives an engine; ``spiral.learning.learner.PPOLearner`` adds the
rest of a learner (weights for the actor, schedules, the KL reference, checkpoints). Engines:

- ``TorchEngine``: torch AdamW on one process (CPU or one GPU) or, under torchrun, torch
  DistributedDataParallel (gradients all-reduced once per optimizer step);
- ``spiral.learning.deepspeed_engine.DeepSpeedEngine``: DeepSpeed ZeRO stage 0-3, bf16.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Protocol

import torch

from spiral.config import LearnerConfig
from spiral.distributed import Dist, all_reduce
from spiral.models.logprobs import LogprobModel
from spiral.models.lora import actor_weights
from spiral.records import Sample


class Engine(Protocol):
    """Forward/backward/step of one data-parallel rank, and what a learner needs besides."""

    module: LogprobModel  # the unwrapped model behind the forward
    optimizer: Any  # state_dict() / load_state_dict() in torch AdamW layout (checkpoints)

    def forward(self, group: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def backward(self, loss: torch.Tensor, last: bool) -> None: ...

    def step(self, skip: bool = False) -> tuple[float, bool]:
        """The optimizer step, taken on every rank or on none: none when any rank passes
        ``skip`` (its loss was non-finite) or the global gradient norm is non-finite. Gradients
        are zeroed either way. Returns (global gradient norm, whether the step was taken)."""

    def sync_context(self, last: bool): ...  # wraps forward + backward of one micro-batch

    def set_lr(self, lr: float) -> None: ...

    def weights(self) -> dict[str, torch.Tensor]: ...  # what the actor loads (a collective):
    # full HF weights, or a LoRA adapter's tensors

    def checkpoint_view(self) -> tuple[Any, Any]: ...  # (model, optimizer) to save; collective


def trainable(model) -> list[torch.nn.Parameter]:
    """The parameters the optimizer updates, in ``model.parameters()`` order: all of them, or a
    LoRA adapter's alone (its base is frozen). Optimizer state is indexed by this list."""
    return [p for p in model.parameters() if p.requires_grad]


def adamw(model, cfg: LearnerConfig, kind=torch.optim.AdamW) -> torch.optim.AdamW:
    return kind(trainable(model), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


class TorchEngine:
    """torch AdamW; DistributedDataParallel around ``LogprobModel`` when the world is larger
    than one. The gradient sync runs once per optimizer step (``no_sync`` on every micro-batch
    but the last) and sums over ranks."""

    def __init__(self, model, cfg: LearnerConfig, dist: Dist, *, pad_id: int,
                 temperature: float):
        self.module = LogprobModel(model, pad_id, temperature)
        self.optimizer = adamw(model, cfg)
        self.grad_clip, self.dist = cfg.grad_clip, dist
        self.ddp = None
        if dist.world_size > 1:
            device_ids = [dist.local_rank] if next(model.parameters()).is_cuda else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.module,
                                                                 device_ids=device_ids)

    def forward(self, group):
        return (self.ddp or self.module)(group)

    def sync_context(self, last: bool):
        return self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        (loss * self.dist.world_size).backward()  # DDP averages; the global loss is a sum

    def step(self, skip: bool = False) -> tuple[float, bool]:
        """Under DDP the gradients (so the norm) are already global; the all-reduced flag makes
        the decision one all the same."""
        norm = float(torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip))
        bad = all_reduce([float(skip or not math.isfinite(norm))], self.dist, "max")[0] > 0
        if not bad:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, not bad

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def weights(self) -> dict[str, torch.Tensor]:
        return actor_weights(self.module.model)

    def checkpoint_view(self):
        return self.module.model, self.optimizer
