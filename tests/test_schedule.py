"""The KL weight schedule."""

import pytest

from spiral.config import AlgoConfig


def test_constant_without_final():
    algo = AlgoConfig(kl_beta=0.3)
    assert [algo.kl_beta_at(s) for s in (1, 50, 500)] == [0.3, 0.3, 0.3]


def test_linear_anneal_then_flat():
    algo = AlgoConfig(kl_beta=1.0, kl_beta_final=0.1, kl_decay_steps=100)
    assert algo.kl_beta_at(1) == 1.0
    assert algo.kl_beta_at(51) == pytest.approx(0.55)
    assert algo.kl_beta_at(101) == pytest.approx(0.1)
    assert algo.kl_beta_at(400) == pytest.approx(0.1)


def test_learner_uses_the_scheduled_weight():
    import torch

    from spiral.config import LearnerConfig
    from spiral.learning.learner import make_learner

    model = torch.nn.Linear(2, 2)
    learner = make_learner(model, LearnerConfig(), AlgoConfig(kl_beta=1.0), pad_id=0,
                           temperature=1.0, norm_tokens=4)
    learner.set_kl_beta(0.25)
    assert learner.algo.kl_beta == 0.25 and learner.reference is not None
