"""The policy-gradient loss: token-level PPO-clip with Dr.GRPO's constant normalisation.

For response token t of sequence i with ratio r = exp(logp - old_logp) and advantage A_i:

    l_it = -min(r * A_i, clip(r, 1 - eps, 1 + eps) * A_i) + beta * k3(ref, logp)
    loss = sum_i sum_t mask_it * l_it / (num_sequences * norm_tokens)

Dividing by a constant (``norm_tokens``, the generation limit) rather than by each sequence's
length avoids Dr.GRPO's length bias: long wrong answers are not penalised less per token.
``num_sequences`` is the size of the whole minibatch, so micro-batch losses add up exactly.
k3 is Schulman's unbiased, always-positive KL estimator exp(d) - d - 1 with d = ref - logp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossTerms:
    loss: torch.Tensor  # scalar, differentiable
    clip_fraction: float  # share of tokens whose ratio was clipped
    approx_kl: float  # mean of (old_logp - logp) over tokens: drift from the sampling policy
    ref_kl: float  # mean k3 KL to the reference (0 when beta = 0)


def ppo_clip_loss(
    logp: torch.Tensor,  # (B, R) log-probs of the response tokens under the current weights
    old_logp: torch.Tensor,  # (B, R) under the weights that sampled them
    advantages: torch.Tensor,  # (B,)
    mask: torch.Tensor,  # (B, R) 1 for response tokens, 0 for padding
    *,
    clip_eps: float,
    norm_tokens: int,
    num_sequences: int,
    ref_logp: torch.Tensor | None = None,  # (B, R), needed when kl_beta > 0
    kl_beta: float = 0.0,
) -> LossTerms:
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    token_loss = -torch.minimum(unclipped, clipped)
    ref_kl = torch.zeros((), dtype=logp.dtype)
    tokens = mask.sum().clamp(min=1.0)
    if kl_beta > 0.0:
        if ref_logp is None:
            raise ValueError("kl_beta > 0 needs ref_logp")
        delta = ref_logp - logp
        k3 = torch.exp(delta) - delta - 1.0
        token_loss = token_loss + kl_beta * k3
        ref_kl = (k3 * mask).sum() / tokens
    loss = (token_loss * mask).sum() / (num_sequences * norm_tokens)
    with torch.no_grad():
        was_clipped = ((ratio - 1.0).abs() > clip_eps).to(logp.dtype)
        clip_fraction = (was_clipped * mask).sum() / tokens
        approx_kl = ((old_logp - logp) * mask).sum() / tokens
    return LossTerms(loss, clip_fraction.item(), approx_kl.item(), float(ref_kl.detach()))
