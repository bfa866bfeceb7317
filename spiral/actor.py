"""Actors generate responses for a batch of prompts. Two backends share one interface:

- ``HFActor``: transformers ``generate`` (CPU or GPU);
- ``spiral.vllm_actor.VLLMActor``: vLLM with prefix caching (GPU nodes).

Both return, per prompt, the new token ids (ending in EOS when the model stopped by itself),
the sampling log-probs of those tokens (log-softmax of logits / temperature: the distribution
the learner recomputes), the decoded text and whether the response finished before the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from spiral.config import ActorConfig


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


class HFActor:
    """Batched sampling with ``model.generate`` on left-padded prompts."""

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
        self.model.load_state_dict(state_dict)

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
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, width - len(prompt) :] = torch.tensor(prompt)
            attention[i, width - len(prompt) :] = 1
        torch.manual_seed(seed)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": self.cfg.top_p,
                    "top_k": 0} if temperature > 0 else {"do_sample": False}
        result = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
            max_new_tokens=self.cfg.max_new_tokens, eos_token_id=self.eos_id,
            pad_token_id=self.pad_id, return_dict_in_generate=True, output_logits=True,
            **sampling,
        )
        new_tokens = result.sequences[:, width:]  # (B, N)
        logits = torch.stack(result.logits, dim=1).float()  # (B, N, V)
        scale = temperature if temperature > 0 else 1.0
        logp = torch.log_softmax(logits / scale, dim=-1)
        logp = logp.gather(-1, new_tokens[..., None]).squeeze(-1)  # (B, N)
        return [self._one(new_tokens[i].tolist(), logp[i].tolist()) for i in range(len(prompts))]

    def _one(self, tokens: list[int], logprobs: list[float]) -> Generation:
        finished = self.eos_id in tokens
        n = tokens.index(self.eos_id) + 1 if finished else len(tokens)
        text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
        return Generation(tokens[:n], logprobs[:n], text, finished)
