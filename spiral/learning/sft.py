"""Supervised fine-tuning: token-level cross-entropy of target responses, on the PPO learner's
engines (torch one process, DDP, DeepSpeed ZeRO), checkpoints and RNG.

An example is ``(prompt_ids, response_ids)``: the chat-templated prompt and the target response
(ending in EOS). For one minibatch of examples over all ranks, with ``N`` its response tokens::

    loss = -(1 / N) * sum over examples i, response tokens t of log p(y_it | prompt_i, y_i<t)

Each micro-batch contributes ``-sum(log p) / N`` of its own tokens, so the micro-batch losses
(and their gradients) add up to exactly the minibatch's token mean, whatever the micro-batch
size; ``N`` is all-reduced, and the engine scales by the world size what DDP and DeepSpeed
average. Log-probs come from ``spiral.models.logprobs`` (the engine's forward), which never
materialises ``[tokens, vocab]`` logits. As in PPO, a non-finite loss or gradient norm on any
rank skips that optimizer step on every rank (``train/skipped_updates``).

`SFTLearner` wraps the learner ``make_learner`` builds (no KL reference), so weights for the
actor, lr schedules and checkpoints are exactly training's; only ``update`` differs.
"""

from __future__ import annotations

import math
import random
import time

import torch

from spiral.config import AlgoConfig, LearnerConfig
from spiral.distributed import ONE_PROCESS, Dist, all_reduce
from spiral.learning.learner import PPOLearner, make_learner
from spiral.learning.ppo import Minibatch, micro_batches, plan
from spiral.models.logprobs import CHUNK_TOKENS, pad_batch
from spiral.records import Sample

Example = tuple[list[int], list[int]]  # (prompt ids, target response ids ending in EOS)


def as_samples(examples: list[Example]) -> list[Sample]:
    """Examples as the records an engine's forward scores (advantage and log-probs unused)."""
    return [Sample(prompt_ids=list(p), response_ids=list(r), advantage=0.0, actor_logprobs=[])
            for p, r in examples]


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """``-sum(mask * logp) / num_tokens`` for log-probs and mask (B, R): this micro-batch's
    share of the minibatch's mean negative log-likelihood per response token."""
    return -(logp * mask.to(logp.dtype)).sum() / max(num_tokens, 1)


class SFT:
    """``epochs`` passes over an update's examples, ``minibatches`` optimizer steps per pass."""

    def __init__(self, engine, dist: Dist = ONE_PROCESS, *, epochs: int = 1, minibatches: int = 1,
                 micro_batch_tokens: int = 16384, pad_id: int = 0):
        self.engine, self.dist = engine, dist
        self.epochs, self.minibatches = epochs, minibatches
        self.budget, self.pad_id = micro_batch_tokens, pad_id

    def plan(self, examples: list[Example], rng: random.Random) -> list[tuple[Minibatch, int]]:
        """Non-empty minibatches (the same count on every rank) with their global token counts."""
        batches = plan(as_samples(examples), self.minibatches, self.budget, self.dist, rng,
                       self.pad_id)
        batches = [b for b in batches if b.num_sequences > 0]
        local = [float(sum(len(s.response_ids) for g, real in zip(b.groups, b.real) if real
                           for s in g)) for b in batches]
        return list(zip(batches, [int(n) for n in all_reduce(local, self.dist)]))

    def update(self, examples: list[Example], rng: random.Random) -> dict[str, float]:
        """Train on this rank's ``examples``; every rank returns the global statistics."""
        started = time.perf_counter()
        batches = self.plan(examples, rng)
        counts = all_reduce([float(len(examples)),
                             float(sum(len(r) for _, r in examples))], self.dist)
        out = {"train/examples": int(counts[0]), "train/response_tokens": int(counts[1])}
        loss, grad_norm, taken = 0.0, 0.0, 0
        for _ in range(self.epochs):
            for batch, tokens in batches:
                local = self.accumulate(batch, tokens)
                global_loss = all_reduce([local], self.dist)[0]
                norm, applied = self.engine.step(skip=not math.isfinite(local))
                if applied:
                    loss, grad_norm, taken = loss + global_loss, grad_norm + norm, taken + 1
        if taken:
            out |= {"train/loss": loss / taken, "train/grad_norm": grad_norm / taken}
        out["train/updates"] = taken
        out["train/skipped_updates"] = self.epochs * len(batches) - taken
        out["time/learner_s"] = time.perf_counter() - started
        return out

    def accumulate(self, batch: Minibatch, num_tokens: int) -> float:
        """Forward and backward over ``batch``'s micro-batches (gradients accumulate; no step);
        returns this rank's part of the minibatch loss."""
        self.engine.module.train()
        total = 0.0
        last = len(batch.groups) - 1
        for i, (group, real) in enumerate(zip(batch.groups, batch.real)):
            with self.engine.sync_context(i == last):
                logp, mask = self.engine.forward(group)  # (B, R) each
                loss = sft_loss(logp, mask, num_tokens)
                self.engine.backward(loss * (1.0 if real else 0.0), i == last)
            if real:
                total += loss.item()
        return total


class SFTLearner:
    """The ``Learner`` of ``spiral.learning.learner`` whose update is `SFT`'s."""

    def __init__(self, base: PPOLearner, sft: SFT):
        self.base, self.sft = base, sft

    @property
    def model(self):
        return self.base.model

    @property
    def optimizer(self):
        return self.base.optimizer

    @property
    def rng(self) -> random.Random:
        return self.base.rng

    def update(self, examples: list[Example]) -> dict[str, float]:
        """SFT on this rank's examples; ranks shuffle with their own stream, derived from one
        draw of the shared RNG (as `PPOLearner.update` does)."""
        rng = self.base.rng
        if self.base.dist.world_size > 1:
            rng = random.Random(f"{self.base.rng.getrandbits(64)}/{self.base.dist.rank}")
        return self.sft.update(examples, rng)

    def weights(self) -> dict[str, torch.Tensor]:
        return self.base.weights()

    def set_lr(self, lr: float) -> None:
        self.base.set_lr(lr)

    def save_checkpoint(self, run_dir, step: int, tokenizer, state: dict, keep: int):
        return self.base.save_checkpoint(run_dir, step, tokenizer, state, keep)

    def load_extra_state(self, path) -> None:
        self.base.load_extra_state(path)


def make_sft_learner(model, cfg: LearnerConfig, *, pad_id: int, dist: Dist = ONE_PROCESS,
                     bf16: bool = False, seed: int = 0) -> SFTLearner:
    """An `SFTLearner` on ``cfg.backend``'s engine around ``model`` (trained in place)."""
    base = make_learner(model, cfg, AlgoConfig(), pad_id=pad_id, temperature=1.0, norm_tokens=1,
                        dist=dist, bf16=bf16, seed=seed)
    sft = SFT(base.engine, dist, epochs=cfg.epochs, minibatches=cfg.minibatches,
              micro_batch_tokens=cfg.micro_batch_tokens, pad_id=pad_id)
    return SFTLearner(base, sft)


@torch.no_grad()
def response_entropy(model, examples: list[Example], pad_id: int, temperature: float = 1.0, *,
                     token_budget: int = 16384,
                     chunk_tokens: int = CHUNK_TOKENS) -> tuple[float, int]:
    """The summed entropy of ``softmax(logits / temperature)`` at every response position (the
    policy's full next-token distribution where it wrote each response token), and the number
    of those positions. Micro-batches of ``token_budget`` padded tokens; the LM head runs on
    ``chunk_tokens`` positions at a time, so no ``[tokens, vocab]`` tensor is kept."""
    was_training = model.training
    model.eval()
    head, decoder = model.get_output_embeddings(), model.get_decoder()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for group in micro_batches(as_samples(examples), token_budget):
        pairs = [(s.prompt_ids, s.response_ids) for s in group]
        input_ids, attention, labels = pad_batch(pairs, pad_id)  # (B, T) each
        hidden = decoder(input_ids=input_ids.to(device),
                         attention_mask=attention.to(device)).last_hidden_state  # (B, T, H)
        rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)  # state t predicts t + 1
        states = hidden[rows.to(device), cols.to(device)]  # (N, H)
        for part in states.split(chunk_tokens):
            logp = torch.log_softmax(head(part).float() / temperature, dim=-1)  # (n, V)
            total += float(-(logp.exp() * logp).sum())
        count += int(rows.numel())
    model.train(was_training)
    return total, count
