"""The torch learner: recomputes log-probs of sampled tokens and takes PPO-clip steps.

Sequences are right-padded into micro-batches that fit ``micro_batch_tokens`` (sorted by length
so padding stays small); gradients accumulate over the micro-batches of a minibatch. Only the
hidden states of response positions go through the LM head: prompts are long and responses
short, so this skips most of the vocabulary projection.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time

import torch

from spiral.config import AlgoConfig, LearnerConfig
from spiral.learning.loss import ppo_clip_loss
from spiral.models import checkpoint
from spiral.models.prefix import repeated_prefix, shared_prefix_length
from spiral.records import Sample


def pad_batch(
    pairs: list[tuple[list[int], list[int]]], pad_id: int, label_prompt: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad (prompt, response) id pairs: input ids, attention mask, labels (B, T).

    Labels are -100 on padding and, unless ``label_prompt``, on the prompt.
    """
    width = max(len(p) + len(r) for p, r in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for i, (prompt, response) in enumerate(pairs):
        ids = prompt + response
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        start = 0 if label_prompt else len(prompt)
        labels[i, start : len(ids)] = input_ids[i, start : len(ids)]
    return input_ids, attention, labels


def response_logprobs(
    model, samples: list[Sample], pad_id: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (B, R) of each sample's response tokens, and the response mask (B, R)."""
    device = next(model.parameters()).device
    hidden, input_ids, shared = _decoder_states(model, samples, pad_id, device)  # (B, T, H)
    starts = torch.tensor([len(s.prompt_ids) - shared for s in samples], device=device)  # (B,)
    lengths = torch.tensor([len(s.response_ids) for s in samples], device=device)  # (B,)
    offsets = torch.arange(int(lengths.max()), device=device)  # (R,)
    target_pos = (starts[:, None] + offsets[None, :]).clamp(max=input_ids.shape[1] - 1)  # (B, R)
    picked = hidden.gather(1, (target_pos - 1)[..., None].expand(-1, -1, hidden.shape[-1]))
    logits = model.get_output_embeddings()(picked).float() / temperature  # (B, R, V)
    targets = input_ids.gather(1, target_pos)  # (B, R)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    mask = (offsets[None, :] < lengths[:, None]).float()
    return logp * mask, mask


def _decoder_states(model, samples: list[Sample], pad_id: int, device):
    """Last hidden states (B, T, H) of the right-padded sequences after their shared prompt
    prefix, those input ids (B, T), and the prefix length.

    The shared prefix runs once (``spiral.models.prefix``). Gradient checkpointing has no KV cache:
    it takes the plain path.
    """
    shared = shared_prefix_length([s.prompt_ids for s in samples])
    if getattr(model, "is_gradient_checkpointing", False):
        shared = 0
    pairs = [(s.prompt_ids[shared:], s.response_ids) for s in samples]
    input_ids, attention, _ = pad_batch(pairs, pad_id)
    input_ids, attention = input_ids.to(device), attention.to(device)
    decoder = model.get_decoder()
    if shared == 0:
        return decoder(input_ids=input_ids, attention_mask=attention).last_hidden_state, \
            input_ids, 0
    cache, mask = repeated_prefix(model, samples[0].prompt_ids[:shared], attention)  # (B, L + T)
    batch, width = input_ids.shape
    positions = torch.arange(shared, shared + width, device=device).expand(batch, -1)
    hidden = decoder(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                     past_key_values=cache, use_cache=True).last_hidden_state
    return hidden, input_ids, shared


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


class TorchLearner:
    """Single-process learner on CPU or one GPU (DDP when torch.distributed is initialised)."""

    def __init__(self, model, cfg: LearnerConfig, algo: AlgoConfig, *, pad_id: int,
                 temperature: float, norm_tokens: int, seed: int = 0):
        self.model, self.cfg, self.algo = model, cfg, algo
        self.pad_id, self.temperature, self.norm_tokens = pad_id, temperature, norm_tokens
        self.rng = random.Random(seed)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.reference = None
        if algo.kl_beta > 0.0:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)

    def weights(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def set_kl_beta(self, beta: float) -> None:
        """The KL weight for the next updates (annealing schedules)."""
        self.algo = dataclasses.replace(self.algo, kl_beta=beta)

    def set_lr(self, lr: float) -> None:
        """The learning rate for the next updates (schedules)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def refresh_reference(self) -> None:
        """Move the KL anchor to the current policy (a magnet update, as in mirror descent)."""
        if self.reference is not None:
            self.reference.load_state_dict(self.model.state_dict())

    def save_checkpoint(self, run_dir, step: int, tokenizer, state: dict, keep: int):
        """Write checkpoint ``step``: HF weights, optimizer tensors and ``state``."""
        return checkpoint.save(run_dir, step, self.model, tokenizer, self.optimizer, state,
                               keep=keep, extra=self.extra_state())

    def extra_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """The KL reference travels with checkpoints: on resume it is not the loaded policy."""
        return {"reference": self.reference.state_dict()} if self.reference is not None else {}

    def load_extra_state(self, path) -> None:
        if self.reference is not None:
            saved = checkpoint.load_extra(path, "reference")
            if saved is None:
                raise FileNotFoundError(f"{path} has no reference.safetensors (kl_beta > 0)")
            self.reference.load_state_dict(saved)

    def _logprobs(self, model, group: list[Sample]) -> torch.Tensor:
        logp, _ = response_logprobs(model, group, self.pad_id, self.temperature)
        return logp

    @torch.no_grad()
    def _fixed_logprobs(self, model, groups: list[list[Sample]]) -> list[torch.Tensor]:
        model.eval()
        return [self._logprobs(model, g) for g in groups]

    def _old_logprobs(self, groups: list[list[Sample]]) -> list[torch.Tensor | None]:
        """Per micro-batch: the sampling weights' log-probs, or None for "this pass's own"."""
        if old_logprobs_in_same_pass(self.cfg.epochs, self.cfg.minibatches,
                                     self.algo.old_logprobs):
            return [None] * len(groups)
        if self.algo.old_logprobs == "actor":
            device = next(self.model.parameters()).device
            return [_pad_floats([s.actor_logprobs for s in g]).to(device) for g in groups]
        return self._fixed_logprobs(self.model, groups)

    def update(self, samples: list[Sample]) -> dict[str, float]:
        """PPO epochs over ``samples``; returns averaged training statistics."""
        started = time.perf_counter()
        if not samples:
            return {"train/samples": 0}
        samples = list(samples)
        self.rng.shuffle(samples)
        size = math.ceil(len(samples) / self.cfg.minibatches)
        minibatches = [samples[i : i + size] for i in range(0, len(samples), size)]
        groups = [micro_batches(mb, self.cfg.micro_batch_tokens) for mb in minibatches]
        old = [self._old_logprobs(g) for g in groups]
        ref = [self._fixed_logprobs(self.reference, g) for g in groups] if self.reference else None
        totals: dict[str, float] = {}
        for _ in range(self.cfg.epochs):
            for m, mb_groups in enumerate(groups):
                stats = self._step(mb_groups, old[m], ref[m] if ref else None, len(minibatches[m]))
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
        steps = self.cfg.epochs * len(groups)
        out = {f"train/{k}": v / steps for k, v in totals.items()}
        out["train/samples"] = len(samples)
        out["train/response_tokens"] = sum(len(s.response_ids) for s in samples)
        out["time/learner_s"] = time.perf_counter() - started
        return out

    def _step(self, groups, old, ref, num_sequences) -> dict[str, float]:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, clip_sum, kl_sum, ref_kl_sum = 0.0, 0.0, 0.0, 0.0
        device = next(self.model.parameters()).device
        for i, group in enumerate(groups):
            logp, mask = response_logprobs(self.model, group, self.pad_id, self.temperature)
            adv = torch.tensor([s.advantage for s in group], device=device)
            old_logp = logp.detach() if old[i] is None else old[i]
            terms = ppo_clip_loss(
                logp, old_logp, adv, mask, clip_eps=self.algo.clip_eps,
                norm_tokens=self.norm_tokens, num_sequences=num_sequences,
                ref_logp=ref[i] if ref else None, kl_beta=self.algo.kl_beta,
            )
            terms.loss.backward()
            share = len(group) / num_sequences
            loss_sum += terms.loss.item()
            clip_sum += terms.clip_fraction * share
            kl_sum += terms.approx_kl * share
            ref_kl_sum += terms.ref_kl * share
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return {"loss": loss_sum, "clip_fraction": clip_sum, "approx_kl": kl_sum,
                "ref_kl": ref_kl_sum, "grad_norm": float(grad_norm)}


def _pad_floats(rows: list[list[float]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.zeros((len(rows), width))
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out
