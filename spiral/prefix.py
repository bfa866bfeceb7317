"""Shared prompt prefixes: self-play prompts open with the same rules text.

Both the actor's prefill and the learner's forward run such a prefix once (batch 1) and repeat
its KV cache for the batch, so the rules are not recomputed for every prompt of a batch.
"""

from __future__ import annotations

import os

MIN_SHARED_PREFIX = 16  # tokens; below this the plain forward is as cheap


def shared_prefix_length(sequences: list[list[int]]) -> int:
    """Leading tokens worth sharing: common to every sequence, leaving each at least one token
    (whose hidden state starts its own continuation); 0 when too short or a batch of one."""
    if len(sequences) < 2:
        return 0
    shared = min(len(os.path.commonprefix(sequences)), min(len(s) for s in sequences) - 1)
    return shared if shared >= MIN_SHARED_PREFIX else 0
