"""Shared prompt prefixes: self-play prompts open with the same rules text.

Both the actor's prefill and the learner's forward run such a prefix once (batch 1) and repeat
its KV cache for the batch, so the rules are not recomputed for every prompt of a batch.
Gradients flow back through the repeat, so the learner's values and gradients are those of the
plain forward.
"""

from __future__ import annotations

import os

import torch

MIN_SHARED_PREFIX = 16  # tokens; below this the plain forward is as cheap


def shared_prefix_length(sequences: list[list[int]]) -> int:
    """Leading tokens worth sharing: common to every sequence, leaving each at least one token
    (whose hidden state starts its own continuation); 0 when too short or a batch of one."""
    if len(sequences) < 2:
        return 0
    shared = min(len(os.path.commonprefix(sequences)), min(len(s) for s in sequences) - 1)
    return shared if shared >= MIN_SHARED_PREFIX else 0


def repeated_prefix(model, prefix: list[int], attention: torch.Tensor):
    """Run ``prefix`` once through ``model``'s decoder; return its KV cache repeated for the
    batch and ``attention`` (B, T) with the prefix's columns put in front (B, L + T)."""
    from transformers import DynamicCache

    batch = attention.shape[0]
    cache = DynamicCache()
    model.get_decoder()(input_ids=torch.tensor([prefix], device=attention.device),
                        past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(batch)
    return cache, torch.cat([attention.new_ones((batch, len(prefix))), attention], dim=1)
