"""Log-probs of sampled responses under a causal LM, without the full ``[tokens, vocab]`` logits.

Sequences are right-padded; the prompt prefix that every sequence of a batch shares runs once
(``spiral.models.prefix``), and only the hidden states of real (unpadded) response positions go
through the LM head: prompts are long and responses short, so this skips most of the vocabulary
projection. The learner, the actors' weight-sync checks and exact evaluation all score responses
here.

The LM head runs on ``CHUNK_TOKENS`` of the N real response positions at a time: each chunk's
fp32 logits ``(chunk, V)`` give the chosen tokens' log-probs (``log_softmax`` read at the
target) and are dropped. With gradients each chunk is checkpointed (``torch.utils.checkpoint``,
non-reentrant), so the backward recomputes its logits instead of keeping them: only the hidden
states ``(N, H)`` and the log-probs ``(N,)`` outlive the forward, and the results are scattered
back to ``(B, R)``. With Qwen3's 151,936-entry vocabulary and 4096-token responses, the
``[tokens, vocab]`` fp32 logits and log-softmax that the whole-batch computation kept for the
backward were most of the learner's memory (``bench/logprob_memory.py``: about 1/5 of the peak
now, at 2,048 response tokens, with the same values and gradients).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from spiral.models.prefix import repeated_prefix, shared_prefix_length
from spiral.records import Sample

# Response positions per LM-head chunk: (256, 151936) fp32 logits are 156 MB, and a chunk's
# backward holds three such buffers; 256 rows still make one large matmul per chunk
# (bench/logprob_memory.py --chunk-tokens N compares sizes).
CHUNK_TOKENS = 256


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
    model, samples: list[Sample], pad_id: int, temperature: float = 1.0, *,
    chunk_tokens: int = CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (B, R) of each sample's response tokens (0 on padding), and the response mask
    (B, R)."""
    device = next(model.parameters()).device
    hidden, input_ids, shared = _decoder_states(model, samples, pad_id, device)  # (B, T, H)
    starts = torch.tensor([len(s.prompt_ids) - shared for s in samples], device=device)  # (B,)
    lengths = torch.tensor([len(s.response_ids) for s in samples], device=device)  # (B,)
    offsets = torch.arange(int(lengths.max()), device=device)  # (R,)
    mask = offsets[None, :] < lengths[:, None]  # (B, R)
    rows, cols = mask.nonzero(as_tuple=True)  # (N,) each: the real response positions
    target_pos = starts[rows] + cols  # (N,) where each response token sits in input_ids
    states = hidden[rows, target_pos - 1]  # (N, H): the state that predicts the token
    flat = chosen_logprobs(model.get_output_embeddings(), states, input_ids[rows, target_pos],
                           temperature, chunk_tokens)  # (N,)
    logp = flat.new_zeros(mask.shape).index_put((rows, cols), flat)  # (B, R)
    return logp, mask.float()


def chosen_logprobs(head, states: torch.Tensor, targets: torch.Tensor, temperature: float,
                    chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """``log_softmax(head(states) / temperature)`` at ``targets`` (N,), for states (N, H), with
    at most ``chunk_tokens`` rows of fp32 logits alive at once, in the forward and the backward."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens} must be >= 1")
    grad = torch.is_grad_enabled() and (
        states.requires_grad or any(p.requires_grad for p in head.parameters()))
    parts = []
    for part, target in zip(states.split(chunk_tokens), targets.split(chunk_tokens)):
        if grad:  # backward recomputes this chunk's logits instead of keeping them
            parts.append(checkpoint(_chunk_logprobs, head, part, target, temperature,
                                    use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(head, part, target, temperature))
    return torch.cat(parts)


def _chunk_logprobs(head, states: torch.Tensor, targets: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    logits = head(states).float()  # (n, V)
    if temperature != 1.0:  # dividing by 1 would cost one more (n, V) buffer and its gradient
        logits = logits / temperature
    # log_softmax keeps only its output for the backward (the logits go): the chunk's peak is
    # three (n, V) buffers in the backward, against four for ``logit - logsumexp``
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)  # (n,)


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


@torch.no_grad()
def continuation_logprobs(model, prompts: list[list[int]], continuations: list[list[list[int]]],
                          pad_id: int, temperature: float = 1.0,
                          chunk: int = 256) -> list[list[float]]:
    """Summed log-prob of each continuation of each prompt; each prompt is run once.

    ``continuations[i]`` lists the token sequences scored after ``prompts[i]``. Log-probs are
    ``log_softmax(logits / temperature)``, as the actor samples and the learner recomputes."""
    out: list[list[float]] = []
    for start in range(0, len(prompts), chunk):
        out += _score_chunk(model, prompts[start : start + chunk],
                            continuations[start : start + chunk], pad_id, temperature)
    return out


def _score_chunk(model, prompts, continuations, pad_id: int, temperature: float):
    """Prompts left-padded to end at one column (after their shared prefix, run once), then
    every continuation on a copy of its prompt's KV cache."""
    device = next(model.parameters()).device
    shared = shared_prefix_length(prompts)
    suffixes = [p[shared:] for p in prompts]
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, suffix in enumerate(suffixes):  # left-padded: every prompt ends at the last column
        ids[i, width - len(suffix) :] = torch.tensor(suffix)
        mask[i, width - len(suffix) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    cache = None
    if shared:
        cache, mask = repeated_prefix(model, prompts[0][:shared], mask)  # (P, L + W)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]  # (P, W)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                past_key_values=cache, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1)  # (P, V)
    owner = [i for i, conts in enumerate(continuations) for _ in conts]
    flat = [c for conts in continuations for c in conts]
    index = torch.tensor(owner, device=device)  # (N,)
    cache_ = out.past_key_values
    cache_.reorder_cache(index)  # one copy of its prompt's cache per continuation
    length = max(len(c) for c in flat)
    cont = torch.full((len(flat), length), pad_id, dtype=torch.long, device=device)
    cont_mask = torch.zeros((len(flat), length), dtype=torch.long, device=device)
    for j, tokens in enumerate(flat):
        cont[j, : len(tokens)] = torch.tensor(tokens)
        cont_mask[j, : len(tokens)] = 1
    cont_positions = positions[index, -1:] + 1 + torch.arange(length, device=device)  # (N, L)
    logits = model(input_ids=cont, attention_mask=torch.cat([mask[index], cont_mask], dim=1),
                   position_ids=cont_positions, past_key_values=cache_).logits  # (N, L, V)
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    predicted = torch.cat([first[index][:, None], logp[:, :-1]], dim=1)  # token t from t-1
    token_logp = predicted.gather(-1, cont[..., None]).squeeze(-1) * cont_mask  # (N, L)
    totals = token_logp.sum(dim=1).tolist()
    grouped, at = [], 0
    for conts in continuations:
        grouped.append(totals[at : at + len(conts)])
        at += len(conts)
    return grouped
