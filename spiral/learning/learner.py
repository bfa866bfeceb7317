"""The learner: one PPO-clip loop (``spiral.learning.ppo``) over an engine, whatever the backend.

``make_learner`` picks the engine from the config: torch (one process, or DDP under torchrun)
or DeepSpeed ZeRO. Every learner satisfies the ``Learner`` protocol the trainer is typed by:
``update`` a batch of samples, hand ``weights`` to the actor, follow the lr and KL schedules,
refresh the KL reference, write and resume checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any, Protocol

import torch

from spiral.config import AlgoConfig, LearnerConfig
from spiral.distributed import ONE_PROCESS, Dist
from spiral.learning.engines import Engine, TorchEngine
from spiral.learning.ppo import PPO
from spiral.models import checkpoint, lora
from spiral.models.logprobs import LogprobModel
from spiral.records import Sample


class Learner(Protocol):
    """What the trainer needs of a learner, on every backend."""

    model: Any  # the HF model being trained (under ZeRO-3 its forward is a collective)
    optimizer: Any  # state_dict() / load_state_dict() in torch AdamW layout
    rng: random.Random  # minibatch shuffling; saved with checkpoints

    def update(self, samples: list[Sample]) -> dict[str, float]: ...

    def weights(self) -> dict[str, torch.Tensor]: ...

    def set_lr(self, lr: float) -> None: ...

    def set_kl_beta(self, beta: float) -> None: ...

    def refresh_reference(self) -> None: ...

    def save_checkpoint(self, run_dir, step: int, tokenizer, state: dict, keep: int): ...

    def load_extra_state(self, path) -> None: ...


class PPOLearner:
    """The policy, its KL reference and the PPO loop over one engine."""

    def __init__(self, engine: Engine, cfg: LearnerConfig, algo: AlgoConfig, *, pad_id: int,
                 temperature: float, norm_tokens: int, dist: Dist = ONE_PROCESS, seed: int = 0,
                 reference=None):
        self.engine, self.cfg, self.dist = engine, cfg, dist
        self.rng = random.Random(seed)
        # when kl_beta > 0: a frozen copy of the initial policy or, training a LoRA adapter,
        # the model itself with the adapter disabled (`lora.AdapterOff`), which is never saved
        self.reference = reference
        scorer = LogprobModel(reference, pad_id, temperature) if reference is not None else None
        self.ppo = PPO(engine, algo, dist, epochs=cfg.epochs, minibatches=cfg.minibatches,
                       micro_batch_tokens=cfg.micro_batch_tokens, pad_id=pad_id,
                       norm_tokens=norm_tokens, reference=scorer)

    @property
    def copied_reference(self) -> bool:
        """Whether the KL reference is a copy of its own (saved with checkpoints)."""
        return self.reference is not None and not isinstance(self.reference, lora.AdapterOff)

    @property
    def model(self):
        return self.engine.module.model

    @property
    def optimizer(self):
        return self.engine.optimizer

    @property
    def algo(self) -> AlgoConfig:
        return self.ppo.algo

    def update(self, samples: list[Sample]) -> dict[str, float]:
        """PPO epochs over ``samples``; every rank returns the same global statistics.

        One process shuffles with the learner's RNG; ranks take one draw each (the same on
        every rank, so the saved RNG state is valid for all) and derive their own stream."""
        rng = self.rng
        if self.dist.world_size > 1:
            rng = random.Random(f"{self.rng.getrandbits(64)}/{self.dist.rank}")
        return self.ppo.update(samples, rng)

    def weights(self) -> dict[str, torch.Tensor]:
        """What the actor loads: full weights in HF names or, training a LoRA adapter, the
        adapter's tensors (a collective under ZeRO-3)."""
        return self.engine.weights()

    def set_lr(self, lr: float) -> None:
        """The learning rate for the next updates (schedules)."""
        self.engine.set_lr(lr)

    def set_kl_beta(self, beta: float) -> None:
        """The KL weight for the next updates (annealing schedules)."""
        self.ppo.algo = dataclasses.replace(self.ppo.algo, kl_beta=beta)

    def refresh_reference(self) -> None:
        """Move the KL anchor to the current policy (a magnet update, as in mirror descent)."""
        if isinstance(self.reference, lora.AdapterOff):
            raise ValueError("a LoRA run's KL reference is its base model: algo.ref_update_every "
                             "needs learner.lora.rank=0")
        if self.reference is not None:
            self.reference.load_state_dict(self.weights())

    def save_checkpoint(self, run_dir, step: int, tokenizer, state: dict, keep: int):
        """Write checkpoint ``step``: HF weights, optimizer tensors, the KL reference and
        ``state``. Every rank calls it (gathering is collective); rank 0 writes. A non-finite
        tensor raises `checkpoint.CheckpointError` on every rank and nothing is written."""
        model, optimizer = self.engine.checkpoint_view()
        extra = {"reference": self.reference.state_dict()} if self.copied_reference else {}
        if not self.dist.is_main:  # refuse a non-finite tensor where rank 0's save refuses it
            checkpoint.check_finite(step, model, optimizer, extra)
            return None
        return checkpoint.save(run_dir, step, model, tokenizer, optimizer, state, keep=keep,
                               extra=extra)

    def load_extra_state(self, path) -> None:
        """The KL reference travels with checkpoints: on resume it is not the loaded policy."""
        if self.copied_reference:
            saved = checkpoint.load_extra(path, "reference")
            if saved is None:
                raise FileNotFoundError(f"{path} has no reference.safetensors (kl_beta > 0)")
            self.reference.load_state_dict(saved)


def make_learner(model, cfg: LearnerConfig, algo: AlgoConfig, *, pad_id: int,
                 temperature: float, norm_tokens: int, dist: Dist = ONE_PROCESS, bf16: bool = False,
                 seed: int = 0) -> PPOLearner:
    """The learner of ``cfg.backend`` around ``model`` (which it trains in place)."""
    reference = None
    if algo.kl_beta > 0.0 and lora.is_adapter(model):
        reference = lora.AdapterOff(model)  # the base itself: no copy
    elif algo.kl_beta > 0.0:
        if cfg.shards_weights:
            raise ValueError("algo.kl_beta > 0 needs a full reference copy; use "
                             "learner.deepspeed.zero_stage <= 2")
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    if cfg.backend == "deepspeed":
        from spiral.learning.deepspeed_engine import DeepSpeedEngine

        engine = DeepSpeedEngine(model, cfg, dist, pad_id=pad_id, temperature=temperature,
                                 bf16=bf16)
    else:
        engine = TorchEngine(model, cfg, dist, pad_id=pad_id, temperature=temperature)
    return PPOLearner(engine, cfg, algo, pad_id=pad_id, temperature=temperature,
                      norm_tokens=norm_tokens, dist=dist, seed=seed, reference=reference)
