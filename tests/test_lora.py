"""LoRA adapters (learner.lora): the update is the hand-built low-rank one, only the adapter
trains, the base is shared and never copied, syncs and checkpoints carry the adapter alone."""

import copy
import dataclasses

import pytest
import torch
from test_distributed import LEARNER, synthetic_samples, tiny_lm

from spiral.config import AlgoConfig, LoraConfig
from spiral.errors import ConfigError
from spiral.learning.learner import make_learner
from spiral.models import lora
from spiral.models.logprobs import response_logprobs

Q_ONLY = LoraConfig(rank=2, alpha=6.0, target_modules=("q_proj",))


def adapted(cfg: LoraConfig = Q_ONLY, seed: int = 1):
    """tiny_lm with an adapter whose B is non-zero (PEFT starts it at 0: a no-op adapter)."""
    model = lora.wrap(tiny_lm(), cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model


def q_layer(model):
    return model.base_model.model.model.layers[0].self_attn.q_proj


def hand_built(model):
    """A plain tiny_lm whose q_proj weight is W + (alpha / r) B A, built by hand."""
    layer = q_layer(model)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # (r, in), (out, r)
    plain = tiny_lm()
    with torch.no_grad():
        w = layer.base_layer.weight + (Q_ONLY.alpha / Q_ONLY.rank) * b @ a
        plain.model.layers[0].self_attn.q_proj.weight.copy_(w)
    return plain


def pg_loss(model, samples):
    logp, mask = response_logprobs(model, samples, pad_id=0)  # (B, R)
    advantages = torch.tensor([s.advantage for s in samples])[:, None]
    return -(logp * mask * advantages).sum()


def test_the_adapter_forward_is_the_hand_built_low_rank_weight():
    model = adapted()
    ids = torch.tensor([[3, 9, 27, 5, 11]])
    got = model(input_ids=ids).logits
    want = hand_built(model)(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, tiny_lm()(input_ids=ids).logits, atol=1e-3)  # B is not 0


def test_adapter_gradients_are_the_chain_rule_through_w_plus_s_b_a():
    """dL/dA = s B^T G and dL/dB = s G A^T, with G = dL/dW of the hand-built model."""
    model, samples = adapted(), synthetic_samples()
    plain = hand_built(model)
    pg_loss(model, samples).backward()
    pg_loss(plain, samples).backward()
    g = plain.model.layers[0].self_attn.q_proj.weight.grad  # (out, in)
    layer, s = q_layer(model), Q_ONLY.alpha / Q_ONLY.rank
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert torch.allclose(a.grad, s * b.T @ g, atol=1e-5)
    assert torch.allclose(b.grad, s * g @ a.T, atol=1e-5)
    assert layer.base_layer.weight.grad is None  # the base is frozen


def test_an_update_moves_the_adapter_alone_and_adam_holds_its_state_only():
    model = adapted()
    base_before = {k: v.clone() for k, v in lora.base_weights(model).items()}
    learner = make_learner(model, LEARNER, AlgoConfig(), pad_id=0, temperature=1.0,
                           norm_tokens=8)
    before = {k: v.clone() for k, v in learner.weights().items()}
    learner.update(synthetic_samples())
    after = learner.weights()
    assert set(after) == set(before) and all(".lora_" in k for k in after)
    assert len(after) == 2  # q_proj's A and B: nothing else is trained or synced
    assert all(not torch.equal(before[k], after[k]) for k in after)
    assert all(torch.equal(v, lora.base_weights(model)[k]) for k, v in base_before.items())
    assert len(learner.optimizer.state) == 2


def test_a_fresh_adapter_is_the_base_model_and_the_kl_reference_is_the_base():
    """PEFT starts B at 0, so step 0 is the base policy; the reference stays the base after
    updates, with no second copy of the weights."""
    model = lora.wrap(tiny_lm(), Q_ONLY)
    samples = synthetic_samples()
    base = response_logprobs(tiny_lm(), samples, 0)[0]
    assert torch.allclose(response_logprobs(model, samples, 0)[0], base, atol=1e-6)
    learner = make_learner(model, LEARNER, dataclasses.replace(AlgoConfig(), kl_beta=0.5),
                           pad_id=0, temperature=1.0, norm_tokens=8)
    assert isinstance(learner.reference, lora.AdapterOff)
    for _ in range(2):
        stats = learner.update(samples)
    assert stats["train/ref_kl"] > 0  # the policy moved away from its reference
    with torch.no_grad():
        reference = response_logprobs(lora.AdapterOff(model), samples, 0)[0]
        policy = response_logprobs(model, samples, 0)[0]
    assert torch.allclose(reference, base, atol=1e-6)
    assert not torch.allclose(policy, base, atol=1e-4)
    with pytest.raises(ValueError, match="ref_update_every"):
        learner.refresh_reference()


def test_the_hf_actor_shares_the_base_and_follows_the_adapter():
    from spiral.config import ActorConfig
    from spiral.rollout.actor import HFActor

    model = lora.wrap(tiny_lm(), Q_ONLY)
    actor_model = lora.actor_copy(model)
    learner = make_learner(model, LEARNER, AlgoConfig(), pad_id=0, temperature=1.0,
                           norm_tokens=8)
    actor = HFActor(actor_model, _Tok(), ActorConfig(max_new_tokens=4))
    learner.update(synthetic_samples())
    samples = synthetic_samples()
    stale = response_logprobs(actor_model, samples, 0)[0]
    actor.load_weights(learner.weights())
    with torch.no_grad():
        synced = response_logprobs(actor_model, samples, 0)[0]
        wanted = response_logprobs(model, samples, 0)[0]
    assert torch.allclose(synced, wanted, atol=1e-6) and not torch.allclose(stale, wanted)
    shared = {p.data_ptr() for p in model.parameters() if not p.requires_grad}
    assert shared == {p.data_ptr() for p in actor_model.parameters() if not p.requires_grad}
    adapter = {p.data_ptr() for p in model.parameters() if p.requires_grad}
    assert not adapter & {p.data_ptr() for p in actor_model.parameters()}


def test_adapter_tensors_that_do_not_fit_are_refused():
    model = lora.wrap(tiny_lm(), Q_ONLY)
    other = lora.actor_weights(lora.wrap(tiny_lm(), dataclasses.replace(
        Q_ONLY, target_modules=("v_proj",))))
    with pytest.raises(ValueError, match="do not fit"):
        lora.load_actor_weights(model, other)


def test_gradient_checkpointing_still_reaches_the_adapter():
    plain = tiny_lm()
    plain.gradient_checkpointing_enable()
    model = lora.wrap(plain, Q_ONLY)
    model.train()
    pg_loss(model, synthetic_samples()).backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None for g in grads)


def test_a_target_module_the_model_lacks_names_the_key():
    with pytest.raises(ConfigError, match="learner.lora.target_modules"):
        lora.wrap(tiny_lm(), dataclasses.replace(Q_ONLY, target_modules=("nonexistent",)))


def test_all_linear_adapts_every_linear_layer_but_the_head():
    model = lora.wrap(tiny_lm(), LoraConfig(rank=4))
    adapted_layers = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora.actor_weights(model)}
    assert adapted_layers == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                              "down_proj"}


def test_share_base_copies_nothing_of_the_base():
    model = lora.wrap(tiny_lm(), Q_ONLY)
    view = lora.share_base(model)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(any(p is q for q in view.parameters()) for p in frozen)
    full = copy.deepcopy(model)
    assert not any(p is q for p in frozen for q in full.parameters())


class _Tok:
    eos_token_id = 1
    pad_token_id = 0

    def decode(self, tokens, skip_special_tokens=True):
        return " ".join(map(str, tokens))


def test_the_adapter_is_drawn_from_the_run_seed_not_the_global_rng():
    first = lora.actor_weights(lora.wrap(tiny_lm(), Q_ONLY, seed=3))
    torch.rand(100)  # moves the global RNG
    again = lora.actor_weights(lora.wrap(tiny_lm(), Q_ONLY, seed=3))
    other = lora.actor_weights(lora.wrap(tiny_lm(), Q_ONLY, seed=4))
    a = [k for k in first if "lora_A" in k]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in a)


def test_embedding_and_head_adapters_sync_and_save_their_factors_only(tmp_path):
    """LoRA on embed_tokens / lm_head (what the embedded model needs to learn Kuhn card play):
    the sync and the checkpoint hold the low-rank factors, not the whole matrices, and the
    saved adapter reloads over its base to the same logits."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from spiral.config import ModelConfig
    from spiral.models import checkpoint
    from spiral.models.loading import load_model

    base_dir = tmp_path / "base"
    tiny_lm().save_pretrained(base_dir)
    _Saving().save_pretrained(base_dir)
    cfg = LoraConfig(rank=2, target_modules=("q_proj", "embed_tokens", "lm_head"))
    model = lora.wrap(AutoModelForCausalLM.from_pretrained(base_dir), cfg)
    learner = make_learner(model, LEARNER, AlgoConfig(), pad_id=0, temperature=1.0,
                           norm_tokens=8)
    learner.update(synthetic_samples())
    synced = learner.weights()
    assert len(synced) == 6 and all("lora_" in k for k in synced)
    folder = learner.save_checkpoint(tmp_path / "run", 1, _Saving(), {}, keep=1)
    assert load_file(folder / lora.ADAPTER_WEIGHTS).keys() == synced.keys()
    ids = torch.tensor([[3, 9, 27, 5]])
    again = load_model(str(folder), ModelConfig(), torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, model(input_ids=ids).logits,
                              atol=1e-6)
    assert checkpoint.problem(folder) is None


class _Saving:
    def save_pretrained(self, path):
        (path / "tokenizer_config.json").write_text("{}")
