"""PPO-clip loss and learner log-probs checked against hand-computed values."""

import math

import pytest
import torch

from spiral.learning.loss import ppo_clip_loss


def test_ppo_clip_hand_computed():
    logp = torch.tensor([[math.log(0.5), math.log(0.2)], [math.log(0.9), 0.0]], requires_grad=True)
    old = torch.tensor([[math.log(0.25), math.log(0.2)], [math.log(0.6), 0.0]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    terms = ppo_clip_loss(logp, old, adv, mask, clip_eps=0.2, norm_tokens=4, num_sequences=2)
    # ratios: 2.0 (A=+1 -> clipped to 1.2), 1.0 (A=+1 -> 1.0), 1.5 (A=-2 -> min(-3, -2.4) = -3)
    # token losses: -1.2, -1.0, +3.0 ; sum 0.8 / (2 sequences * 4 tokens) = 0.1
    assert terms.loss.item() == pytest.approx(0.1)
    assert terms.clip_fraction == pytest.approx(2 / 3)
    terms.loss.backward()
    # clipped token with A>0 has no gradient; unclipped: d/dlogp (-r*A)/8 = -r*A/8
    assert logp.grad[0, 0].item() == pytest.approx(0.0)
    assert logp.grad[0, 1].item() == pytest.approx(-1.0 / 8)
    assert logp.grad[1, 0].item() == pytest.approx(1.5 * 2 / 8)
    assert logp.grad[1, 1].item() == 0.0  # padding


def test_loss_is_reinforce_at_ratio_one():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    terms = ppo_clip_loss(logp, logp.detach(), torch.tensor([0.5]), torch.ones(1, 3),
                          clip_eps=0.2, norm_tokens=10, num_sequences=1)
    assert terms.loss.item() == pytest.approx(-0.5 * 3 / 10)
    terms.loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.05, -0.05, -0.05])


def test_k3_kl_term():
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    terms = ppo_clip_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 1), clip_eps=0.2,
                          norm_tokens=1, num_sequences=1, ref_logp=ref, kl_beta=2.0)
    d = math.log(0.5)  # ref - logp
    assert terms.ref_kl == pytest.approx(math.exp(d) - d - 1)
    assert terms.loss.item() == pytest.approx(2.0 * (math.exp(d) - d - 1))
    with pytest.raises(ValueError):
        ppo_clip_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 1), clip_eps=0.2,
                      norm_tokens=1, num_sequences=1, kl_beta=1.0)


def test_microbatch_losses_add_up_to_the_full_batch():
    torch.manual_seed(0)
    logp, old = torch.randn(4, 3), torch.randn(4, 3)
    adv, mask = torch.randn(4), (torch.rand(4, 3) > 0.3).float()
    kw = dict(clip_eps=0.2, norm_tokens=3, num_sequences=4)
    full = ppo_clip_loss(logp, old, adv, mask, **kw).loss
    parts = sum(ppo_clip_loss(logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], **kw).loss
                for i in (0, 2))
    assert parts.item() == pytest.approx(full.item())
