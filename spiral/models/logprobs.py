"""Log-probs of sampled responses under a causal LM, without the full ``[tokens, vocab]`` logits.

Sequences are right-padded; the prompt prefix that every sequence of a batch shares runs once
(``spiral.models.prefix``), and only the hidden states of response positions go through the LM
head: prompts are long and responses short, so this skips most of the vocabulary projection.
The learner, the actors' weight-sync checks and exact evaluation all score responses here.
"""

from __future__ import annotations

import torch

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
