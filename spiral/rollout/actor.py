"""Actors generate responses for a batch of prompts. Two backends share one interface:

- ``HFActor``: a transformers model with a lean KV-cached sampling loop (CPU or GPU);
- ``spiral.rollout.vllm_actor.VLLMActor``: vLLM with prefix caching (GPU nodes).

Both return, per prompt, the new token ids (ending in EOS when the model stopped by itself),
the sampling log-probs of those tokens (log-softmax of logits / temperature: the distribution
the learner recomputes), the decoded text and whether the response finished before the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from spiral.config import ActorConfig
from spiral.models.lora import load_actor_weights
from spiral.models.prefix import repeated_prefix, shared_prefix_length


@dataclass
class Generation:
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finished: bool  # False: cut at max_new_tokens (the rollout scores it as an invalid move)


class Actor(Protocol):
    def generate(self, prompts: list[list[int]], seed: int,
                 temperature: float | None = None) -> list[Generation]: ...

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None: ...

    def sleep(self) -> None: ...  # the learner trains next: free what can be freed


class HFActor:
    """Batched sampling with transformers models on left-padded prompts (CPU or GPU)."""

    def __init__(self, model, tokenizer, cfg: ActorConfig):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Full weights, or a LoRA adapter's tensors into the adapter of a PEFT model."""
        load_actor_weights(self.model, state_dict)

    def sleep(self) -> None:
        """Nothing to free: the hf actor keeps its copy of the weights between rollouts."""

    def generate(self, prompts: list[list[int]], seed: int,
                 temperature: float | None = None) -> list[Generation]:
        temperature = self.cfg.temperature if temperature is None else temperature
        out: list[Generation] = []
        for start in range(0, len(prompts), self.cfg.batch_size):
            chunk = prompts[start : start + self.cfg.batch_size]
            out += self._generate_chunk(chunk, seed + start, temperature)
        return out

    @torch.no_grad()
    def _generate_chunk(self, prompts, seed: int, temperature: float) -> list[Generation]:
        """A lean sampling loop: one prefill, then one cached forward per new token."""
        shared = shared_prefix_length(prompts)
        suffixes = [p[shared:] for p in prompts]
        width = max(len(p) for p in suffixes)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, suffix in enumerate(suffixes):
            input_ids[i, width - len(suffix) :] = torch.tensor(suffix)
            attention[i, width - len(suffix) :] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        tokens, logprobs = self._decode(prompts[0][:shared], input_ids, attention, generator,
                                        temperature)
        return [self._one(tokens[i].tolist(), logprobs[i].tolist()) for i in range(len(prompts))]

    def _prefill(self, prefix: list[int], input_ids, attention):
        """Last-position logits (B, V), the KV cache and the mask of [prefix][suffixes].

        The shared prefix runs once and its cache is repeated for the batch; the left-padded
        suffixes follow it (their padding sits between prefix and text, masked out).
        """
        from transformers import DynamicCache

        cache = DynamicCache()
        if prefix:
            cache, attention = repeated_prefix(self.model, prefix, attention)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, len(prefix) :]  # (B, T)
        logits = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return logits, cache, attention, positions[:, -1:] + 1

    def _decode(self, prefix: list[int], input_ids, attention, generator, temperature: float):
        """Sampled tokens and their log-probs (B, N), padding after EOS.

        A row that emits EOS leaves the batch: its KV cache rows, mask and position are
        dropped, so later forwards only compute the rows still writing (the responses of one
        tick differ in length, the longest sets the number of steps).
        """
        batch, limit, device = input_ids.shape[0], self.cfg.max_new_tokens, input_ids.device
        logits, cache, attention, next_position = self._prefill(prefix, input_ids, attention)
        width = attention.shape[1]
        # the mask of every step to come, preallocated: step k uses its first T + k + 1 columns
        attention = torch.cat([attention, attention.new_ones((batch, limit))], dim=1)
        rows = torch.arange(batch, device=device)  # (b,) the rows still writing
        tokens = torch.full((batch, limit), self.pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((batch, limit), device=device)
        for step in range(limit):
            token, logp = self._sample(logits.float(), generator, temperature)  # (b,), (b,)
            tokens[rows, step], logprobs[rows, step] = token, logp
            writing = token != self.eos_id
            if step == limit - 1 or not bool(writing.any()):
                return tokens[:, : step + 1], logprobs[:, : step + 1]
            if not bool(writing.all()):
                keep = writing.nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                rows, token = rows[keep], token[keep]
                attention, next_position = attention[keep], next_position[keep]
            logits = self.model(input_ids=token[:, None],
                                attention_mask=attention[:, : width + step + 1],
                                position_ids=next_position, past_key_values=cache,
                                use_cache=True).logits[:, -1]
            next_position = next_position + 1
        return tokens, logprobs  # max_new_tokens == 0

    def _sample(self, logits, generator, temperature: float):
        """Sample one token per row; its log-prob under softmax(logits / temperature)."""
        if temperature <= 0:
            token = logits.argmax(dim=-1)
            logp = torch.log_softmax(logits, dim=-1)
        else:
            logp = torch.log_softmax(logits / temperature, dim=-1)
            probs = logp.exp()
            if self.cfg.top_p < 1.0:
                probs = _nucleus(probs, self.cfg.top_p)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return token, logp.gather(-1, token[:, None]).squeeze(-1)

    def _one(self, tokens: list[int], logprobs: list[float]) -> Generation:
        finished = self.eos_id in tokens
        n = tokens.index(self.eos_id) + 1 if finished else len(tokens)
        text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
        return Generation(tokens[:n], logprobs[:n], text, finished)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero out the tail beyond cumulative probability ``top_p`` (the top token always stays)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    drop = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)
