"""Data-parallel PPO updates: each rank holds its own samples, the update is the global one.

One update on N ranks equals one update of a single process on the union of the ranks' samples
(``TorchLearner`` with the same ``minibatches=1`` batch; with more minibatches each global
minibatch is the union of the ranks' minibatches):

- each rank splits its samples into exactly ``minibatches`` minibatches (some may be empty) of
  length-sorted micro-batches, and the ranks pad to one micro-batch count with zero-weight dummy
  micro-batches: DDP and DeepSpeed (ZeRO-2 reduces in every backward, ZeRO-3 gathers weights in
  every forward) need every rank to run the same collectives;
- a minibatch's loss is normalised by its *global* number of sequences (one all-reduce of the
  counts), and gradients are summed over ranks: DDP and DeepSpeed average them, so each rank's
  loss is scaled by the world size;
- statistics are all-reduced, so every rank returns the global numbers.

``ParallelPPO`` is that loop; an engine supplies forward/backward/step: ``DDPEngine`` here (torch
DistributedDataParallel, gradients all-reduced once per optimizer step) and
``spiral.learning.deepspeed_engine.DeepSpeedEngine``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from spiral.config import AlgoConfig
from spiral.distributed import Dist, all_reduce
from spiral.learning.learner import (
    TorchLearner,
    micro_batches,
    old_logprobs_in_same_pass,
    response_logprobs,
)
from spiral.learning.loss import LossTerms, ppo_clip_loss
from spiral.models import checkpoint
from spiral.records import Sample


class LogprobModel(torch.nn.Module):
    """The causal LM behind a forward that returns response log-probs (B, R) and mask (B, R).

    DDP and DeepSpeed hook the forward of the module they wrap; routing the learner's forward
    through this one keeps their bookkeeping (gradient sync, ZeRO-3 weight gathering) intact.
    """

    def __init__(self, model, pad_id: int, temperature: float):
        super().__init__()
        self.model = model
        self.pad_id, self.temperature = pad_id, temperature

    def forward(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        return response_logprobs(self.model, samples, self.pad_id, self.temperature)


@dataclass
class Minibatch:
    groups: list[list[Sample]]  # micro-batches; the same count on every rank
    real: list[bool]  # False for a padding micro-batch (its loss is multiplied by 0)
    num_sequences: int  # sequences in this minibatch over all ranks


def dummy_group(pad_id: int) -> list[Sample]:
    """A one-token micro-batch that runs the collectives and contributes nothing."""
    return [Sample(prompt_ids=[pad_id], response_ids=[pad_id], advantage=0.0,
                   actor_logprobs=[0.0])]


def plan(samples: list[Sample], minibatches: int, token_budget: int, dist: Dist,
         rng: random.Random, pad_id: int) -> list[Minibatch]:
    """Shuffle, split into exactly ``minibatches`` parts, micro-batch, pad to a common count."""
    samples = list(samples)
    rng.shuffle(samples)
    size = max(1, math.ceil(len(samples) / minibatches))
    parts = [samples[i * size : (i + 1) * size] for i in range(minibatches)]
    local_groups = [micro_batches(part, token_budget) for part in parts]
    totals = all_reduce([float(len(p)) for p in parts], dist, "sum")
    widest = all_reduce([float(len(g)) for g in local_groups], dist, "max")
    out = []
    for groups, total, width in zip(local_groups, totals, widest):
        pad = int(width) - len(groups)
        out.append(Minibatch(groups + [dummy_group(pad_id)] * pad,
                             [True] * len(groups) + [False] * pad, int(total)))
    return out


class GradEngine(Protocol):
    """Forward/backward/step of one data-parallel rank."""

    module: LogprobModel  # the unwrapped model behind the forward

    def forward(self, group: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def backward(self, loss: torch.Tensor, last: bool) -> None: ...

    def step(self) -> float: ...  # optimizer step; returns the global gradient norm

    def sync_context(self, last: bool): ...  # wraps forward + backward of one micro-batch


class ParallelPPO:
    """PPO-clip epochs over the ranks' samples (the loop of ``TorchLearner.update``)."""

    def __init__(self, engine: GradEngine, algo: AlgoConfig, dist: Dist, *, epochs: int,
                 minibatches: int, micro_batch_tokens: int, pad_id: int, norm_tokens: int,
                 reference: LogprobModel | None = None):
        self.engine, self.algo, self.dist = engine, algo, dist
        self.epochs, self.minibatches, self.budget = epochs, minibatches, micro_batch_tokens
        self.pad_id, self.norm_tokens, self.reference = pad_id, norm_tokens, reference

    def update(self, samples: list[Sample], rng: random.Random) -> dict[str, float]:
        started = time.perf_counter()
        batches = plan(samples, self.minibatches, self.budget, self.dist, rng, self.pad_id)
        batches = [b for b in batches if b.num_sequences > 0]  # the same on every rank
        counts = all_reduce([float(len(samples)),
                             float(sum(len(s.response_ids) for s in samples))], self.dist)
        if not batches:
            return {"train/samples": 0}
        old = [self._old(b) for b in batches]
        ref = [self._fixed(self.reference, b) for b in batches] if self.reference else None
        totals = [0.0] * 4  # loss, clip_fraction, approx_kl, ref_kl (shares of the global sum)
        grad_norm = 0.0
        for _ in range(self.epochs):
            for m, batch in enumerate(batches):
                local = self._step(batch, old[m], ref[m] if ref else None)
                totals = [t + v for t, v in zip(totals, local[:4])]
                grad_norm += local[4]
        totals = all_reduce(totals, self.dist)
        steps = self.epochs * len(batches)
        names = ("loss", "clip_fraction", "approx_kl", "ref_kl")
        out = {f"train/{k}": v / steps for k, v in zip(names, totals)}
        out["train/grad_norm"] = grad_norm / steps
        out["train/samples"] = int(counts[0])
        out["train/response_tokens"] = int(counts[1])
        out["time/learner_s"] = time.perf_counter() - started
        return out

    def _device(self) -> torch.device:
        return next(self.engine.module.parameters()).device

    def _old(self, batch: Minibatch) -> list[torch.Tensor | None]:
        """Per micro-batch: the sampling weights' log-probs, or None for "this pass's own"."""
        if old_logprobs_in_same_pass(self.epochs, self.minibatches, self.algo.old_logprobs):
            return [None] * len(batch.groups)
        if self.algo.old_logprobs == "recompute":
            return self._fixed(self.engine.module, batch)
        return [_actor_logprobs(g, self._device()) for g in batch.groups]

    @torch.no_grad()
    def _fixed(self, module: LogprobModel, batch: Minibatch) -> list[torch.Tensor]:
        module.eval()
        return [module(group)[0] for group in batch.groups]

    def _step(self, batch: Minibatch, old, ref) -> list[float]:
        self.engine.module.train()
        sums = [0.0] * 4
        last = len(batch.groups) - 1
        for i, (group, real) in enumerate(zip(batch.groups, batch.real)):
            with self.engine.sync_context(i == last):
                logp, mask = self.engine.forward(group)
                terms = self._loss(logp, mask, group, old[i], ref[i] if ref else None,
                                   batch.num_sequences)
                self.engine.backward(terms.loss * (1.0 if real else 0.0), i == last)
            if real:
                share = len(group) / batch.num_sequences
                sums = [sums[0] + terms.loss.item(), sums[1] + terms.clip_fraction * share,
                        sums[2] + terms.approx_kl * share, sums[3] + terms.ref_kl * share]
        return sums + [self.engine.step()]

    def _loss(self, logp, mask, group, old, ref, num_sequences) -> LossTerms:
        adv = torch.tensor([s.advantage for s in group], device=logp.device)
        old = logp.detach() if old is None else old
        return ppo_clip_loss(logp, old, adv, mask, clip_eps=self.algo.clip_eps,
                             norm_tokens=self.norm_tokens, num_sequences=num_sequences,
                             ref_logp=ref, kl_beta=self.algo.kl_beta)


def _actor_logprobs(group: list[Sample], device: torch.device) -> torch.Tensor:
    width = max(len(s.actor_logprobs) for s in group)
    out = torch.zeros((len(group), width))
    for i, s in enumerate(group):
        out[i, : len(s.actor_logprobs)] = torch.tensor(s.actor_logprobs)
    return out.to(device)


class DDPEngine:
    """torch DistributedDataParallel around ``LogprobModel``; the gradient sync runs once per
    optimizer step (``no_sync`` on every micro-batch but the last) and sums over ranks."""

    def __init__(self, module: LogprobModel, optimizer, grad_clip: float, dist: Dist):
        self.module, self.optimizer, self.grad_clip, self.dist = module, optimizer, grad_clip, dist
        self.ddp = None
        if dist.world_size > 1:
            device_ids = [dist.local_rank] if next(module.parameters()).is_cuda else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    def forward(self, group):
        return (self.ddp or self.module)(group)

    def sync_context(self, last: bool):
        return self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        (loss * self.dist.world_size).backward()  # DDP averages; the global loss is a sum

    def step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)


class DDPLearner:
    """``TorchLearner`` made data-parallel: its model, optimizer, reference and RNG, with the
    update run by ``ParallelPPO`` over a ``DDPEngine``. Every rank holds the full weights."""

    def __init__(self, inner: TorchLearner, dist: Dist):
        self.inner, self.dist = inner, dist
        module = LogprobModel(inner.model, inner.pad_id, inner.temperature)
        self.engine = DDPEngine(module, inner.optimizer, inner.cfg.grad_clip, dist)
        reference = None
        if inner.reference is not None:
            reference = LogprobModel(inner.reference, inner.pad_id, inner.temperature)
        self.ppo = ParallelPPO(
            self.engine, inner.algo, dist, epochs=inner.cfg.epochs,
            minibatches=inner.cfg.minibatches, micro_batch_tokens=inner.cfg.micro_batch_tokens,
            pad_id=inner.pad_id, norm_tokens=inner.norm_tokens, reference=reference,
        )

    @property
    def model(self):
        return self.inner.model

    @property
    def optimizer(self):
        return self.inner.optimizer

    @property
    def rng(self) -> random.Random:
        return self.inner.rng

    def weights(self) -> dict[str, torch.Tensor]:
        return self.inner.weights()

    def update(self, samples: list[Sample]) -> dict[str, float]:
        """One data-parallel update; every rank returns the same global statistics."""
        # one draw per update on every rank keeps the saved RNG state valid for all of them
        local_rng = random.Random(f"{self.rng.getrandbits(64)}/{self.dist.rank}")
        return self.ppo.update(samples, local_rng)

    def save_checkpoint(self, run_dir, step: int, tokenizer, state: dict, keep: int):
        """Rank 0 writes the checkpoint (the weights are the same on every rank)."""
        if self.dist.is_main:
            return checkpoint.save(run_dir, step, self.model, tokenizer, self.optimizer, state,
                                   keep=keep, extra=self.inner.extra_state())
        return None

    def load_extra_state(self, path) -> None:
        self.inner.load_extra_state(path)

    def refresh_reference(self) -> None:
        self.inner.refresh_reference()

    def set_lr(self, lr: float) -> None:
        self.inner.set_lr(lr)

    def set_kl_beta(self, beta: float) -> None:
        self.ppo.algo = dataclasses.replace(self.ppo.algo, kl_beta=beta)
