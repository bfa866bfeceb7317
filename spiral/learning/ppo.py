"""The PPO-clip loop every learner runs: minibatches of micro-batches over an engine.

One update on N data-parallel ranks equals one update of a single process on the union of the
ranks' samples (a world of one is the single-process learner):

- each rank splits its samples into exactly ``minibatches`` minibatches (some may be empty) of
  micro-batches, and the ranks pad to one micro-batch count with zero-weight dummy micro-batches:
  DDP and DeepSpeed (ZeRO-2 reduces in every backward, ZeRO-3 gathers weights in every forward)
  need every rank to run the same collectives;
- a minibatch's loss is normalised by its *global* number of sequences (one all-reduce of the
  counts), and gradients are summed over ranks (the engine scales by the world size what DDP
  and DeepSpeed average);
- statistics are all-reduced, so every rank returns the global numbers;
- a non-finite loss (on any rank) or gradient norm skips that optimizer step on every rank:
  gradients are dropped, weights and optimizer state stay as they were. The step is counted in
  ``train/skipped_updates`` and left out of the other statistics.

The engine (``spiral.learning.engines``) supplies forward / backward / optimizer step.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import torch

from spiral.config import AlgoConfig
from spiral.distributed import Dist, all_reduce
from spiral.learning.loss import LossTerms, ppo_clip_loss
from spiral.models.logprobs import LogprobModel
from spiral.records import Sample

STAT_NAMES = ("loss", "clip_fraction", "approx_kl", "ref_kl")


def micro_batches(samples: list[Sample], token_budget: int) -> list[list[Sample]]:
    """Groups whose padded size (count x longest) stays within the budget, sorted by game and
    then length: a group holds one game where it can, so its prompts share that game's rules
    as a prefix (run once, see ``spiral.models.prefix``), and little padding."""
    groups: list[list[Sample]] = []
    current: list[Sample] = []
    for sample in sorted(samples, key=lambda s: (s.game_id, s.length)):
        if current and (current[-1].game_id != sample.game_id
                        or (len(current) + 1) * sample.length > token_budget):
            groups.append(current)
            current = []
        current.append(sample)
    if current:
        groups.append(current)
    return groups


def old_logprobs_in_same_pass(epochs: int, minibatches: int, mode: str) -> bool:
    """True when the weights being trained are still the ones that sampled the batch (one
    epoch of one minibatch): the old log-probs are then this pass's own, detached, and need no
    extra forward pass."""
    return mode == "recompute" and epochs == 1 and minibatches == 1


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


class PPO:
    """PPO-clip epochs over this rank's samples; ``update`` returns the global statistics."""

    def __init__(self, engine, algo: AlgoConfig, dist: Dist, *, epochs: int, minibatches: int,
                 micro_batch_tokens: int, pad_id: int, norm_tokens: int,
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
            return {"train/samples": 0, "train/skipped_updates": 0}
        old = [self._old(b) for b in batches]
        ref = [self._fixed(self.reference, b) for b in batches] if self.reference else None
        totals = [0.0] * len(STAT_NAMES)  # shares of the global sums, over the steps taken
        grad_norm, taken = 0.0, 0
        for _ in range(self.epochs):
            for m, batch in enumerate(batches):
                local, norm, applied = self._step(batch, old[m], ref[m] if ref else None)
                if applied:  # the same decision on every rank
                    totals = [t + v for t, v in zip(totals, local)]
                    grad_norm, taken = grad_norm + norm, taken + 1
        totals = all_reduce(totals, self.dist)
        out = {}
        if taken:
            out = {f"train/{k}": v / taken for k, v in zip(STAT_NAMES, totals)}
            out["train/grad_norm"] = grad_norm / taken
        out["train/skipped_updates"] = self.epochs * len(batches) - taken
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

    def _step(self, batch: Minibatch, old, ref) -> tuple[list[float], float, bool]:
        """One optimizer step over a minibatch's micro-batches: its stats, the grad norm, and
        whether the step was taken (not when a loss or the norm is non-finite)."""
        self.engine.module.train()
        sums = [0.0] * len(STAT_NAMES)
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
        norm, applied = self.engine.step(skip=not math.isfinite(sums[0]))
        return sums, norm, applied

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
