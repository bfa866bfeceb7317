"""The torch learner: shared-prefix forward, old log-probs from the same pass, and the
learning-rate schedule."""

import copy
import dataclasses

import pytest
import torch

from spiral.config import AlgoConfig, LearnerConfig
from spiral.learning.learner import PPOLearner, make_learner
from spiral.learning.ppo import micro_batches, old_logprobs_in_same_pass
from spiral.models import prefix as prefix_module
from spiral.models.logprobs import response_logprobs
from spiral.models.prefix import shared_prefix_length
from spiral.records import Sample
from tests.test_distributed import synthetic_samples, tiny_lm


def learner(model, algo=None, **cfg) -> PPOLearner:
    return make_learner(model, LearnerConfig(lr=1e-2, micro_batch_tokens=24, **cfg),
                        algo or AlgoConfig(),
                        pad_id=0, temperature=1.0, norm_tokens=5)


def counting_forwards(model) -> list[int]:
    calls = [0]
    model.get_decoder().register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_same_pass_old_logprobs_only_for_one_epoch_of_one_minibatch():
    assert old_logprobs_in_same_pass(1, 1, "recompute")
    assert not old_logprobs_in_same_pass(2, 1, "recompute")
    assert not old_logprobs_in_same_pass(1, 2, "recompute")
    assert not old_logprobs_in_same_pass(1, 1, "actor")


def test_same_pass_update_equals_one_with_exact_old_logprobs_and_skips_a_forward():
    """One epoch of one minibatch: ratio 1 at the only pass, so old log-probs taken from that
    pass give the update that exact precomputed ones give, with one forward per micro-batch."""
    samples = synthetic_samples()
    base = tiny_lm()
    with torch.no_grad():
        logp, mask = response_logprobs(base, samples, pad_id=0)
    exact = [dataclasses.replace(s, actor_logprobs=logp[i, : len(s.response_ids)].tolist())
             for i, s in enumerate(samples)]
    same_pass, given = copy.deepcopy(base), copy.deepcopy(base)
    calls = counting_forwards(same_pass)
    a = learner(same_pass).update(samples)
    b = learner(given, AlgoConfig(old_logprobs="actor")).update(exact)
    assert calls[0] == len(micro_batches(samples, 24)) > 1
    assert a["train/loss"] == pytest.approx(b["train/loss"], abs=1e-6)
    assert a["train/approx_kl"] == pytest.approx(0.0, abs=1e-7)
    for name, weight in same_pass.state_dict().items():
        assert torch.allclose(weight, given.state_dict()[name], atol=1e-6), name


def test_two_epochs_recompute_old_logprobs_before_the_first_step():
    model = tiny_lm()
    calls = counting_forwards(model)
    samples = synthetic_samples()
    stats = learner(model, epochs=2).update(samples)
    # old log-probs once, then two training passes
    assert calls[0] == 3 * len(micro_batches(samples, 24))
    assert stats["train/approx_kl"] != 0.0  # the second epoch sees moved weights


def test_learning_rate_schedule_and_setter():
    cfg = LearnerConfig(lr=1e-3, lr_final=1e-4, lr_decay_steps=100)
    assert cfg.lr_at(1) == pytest.approx(1e-3)
    assert cfg.lr_at(51) == pytest.approx(5.5e-4)
    assert cfg.lr_at(101) == cfg.lr_at(500) == pytest.approx(1e-4)
    assert LearnerConfig(lr=3e-4).lr_at(200) == 3e-4
    trainer = learner(tiny_lm())
    trainer.set_lr(2.5e-4)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [2.5e-4]


def prefixed_samples(prefix_len: int = 20) -> list[Sample]:
    """Synthetic samples whose prompts share ``prefix_len`` tokens (like a game's rules)."""
    prefix = [(7 * i) % 61 + 1 for i in range(prefix_len)]
    return [dataclasses.replace(s, prompt_ids=prefix + s.prompt_ids) for s in synthetic_samples()]


def test_shared_prefix_forward_equals_the_plain_forward_in_values_and_gradients(monkeypatch):
    samples = prefixed_samples()
    assert shared_prefix_length([s.prompt_ids for s in samples]) >= 20
    shared_model, plain_model = tiny_lm(), tiny_lm()
    calls = counting_forwards(shared_model)
    logp, mask = response_logprobs(shared_model, samples, pad_id=0)
    (logp.sum() * 0.5).backward()
    assert calls[0] == 2  # the prefix once, then the batch's suffixes
    monkeypatch.setattr(prefix_module, "MIN_SHARED_PREFIX", 10**6)  # force the plain path
    want, want_mask = response_logprobs(plain_model, samples, pad_id=0)
    (want.sum() * 0.5).backward()
    assert torch.equal(mask, want_mask)
    assert torch.allclose(logp, want, atol=1e-5)
    for (name, a), (_, b) in zip(shared_model.named_parameters(), plain_model.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_shared_prefix_leaves_every_prompt_a_token_and_skips_short_prefixes():
    rules = list(range(1, 31))
    assert shared_prefix_length([rules, rules + [40], rules + [41, 42]]) == 29  # one token left
    assert shared_prefix_length([rules + [40]]) == 0  # a batch of one
    assert shared_prefix_length([rules[:10] + [1], rules[:10] + [2]]) == 0  # too short to pay
    assert shared_prefix_length([s.prompt_ids for s in synthetic_samples()]) == 0
    model = tiny_lm()
    model.gradient_checkpointing_enable()
    calls = counting_forwards(model)
    response_logprobs(model.train(), prefixed_samples(), pad_id=0)
    assert calls[0] == 1  # no KV cache under gradient checkpointing: one plain forward


def test_micro_batches_keep_one_game_per_group_so_its_rules_are_shared():
    rules = {"Kuhn": list(range(1, 25)), "TicTacToe": list(range(30, 50))}
    samples = [Sample(rules[game] + [60 + i], [5] * (1 + i % 3), 1.0, [0.0] * (1 + i % 3),
                      game_id=game) for i in range(8) for game in rules]
    groups = micro_batches(samples, token_budget=10_000)
    assert len(groups) == 2 and all(len({s.game_id for s in g}) == 1 for g in groups)
    assert all(shared_prefix_length([s.prompt_ids for s in g]) >= 20 for g in groups)
    assert sorted(s.length for s in groups[0]) == [s.length for s in groups[0]]
