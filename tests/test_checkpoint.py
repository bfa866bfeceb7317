"""Checkpoints: safetensors only, optimizer round trip, atomic writes, pruning."""

import json

import pytest
import torch

from spiral.models import checkpoint


class TinyTokenizer:
    def save_pretrained(self, path):
        (path / "tokenizer_config.json").write_text("{}")


class TinyModel(torch.nn.Linear):
    def save_pretrained(self, path, safe_serialization=True):
        from safetensors.torch import save_file

        save_file(self.state_dict(), path / "model.safetensors")


def trained():
    torch.manual_seed(0)
    model = TinyModel(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.95))
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_optimizer_state_round_trips_exactly(tmp_path):
    model, opt = trained()
    path = checkpoint.save(tmp_path, 5, model, TinyTokenizer(), opt, {"elapsed_s": 1.5}, keep=2)
    assert path.name == "step_5" and not list(path.glob("*.pt")) and not list(path.glob("*.bin"))
    fresh = torch.optim.AdamW(model.parameters(), lr=0.5)
    state = checkpoint.load_state(path, fresh)
    assert state == {"elapsed_s": 1.5, "step": 5}
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 0.1
    assert b["param_groups"][0]["betas"] == (0.9, 0.95)
    for index, per_param in a["state"].items():
        for name, value in per_param.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][index][name]))


def test_interrupted_write_leaves_last_good_checkpoint(tmp_path, monkeypatch):
    model, opt = trained()
    checkpoint.save(tmp_path, 1, model, TinyTokenizer(), opt, {}, keep=5)

    def die(*args):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(checkpoint.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, 2, model, TinyTokenizer(), opt, {}, keep=5)
    assert checkpoint.latest(tmp_path).name == "step_1"
    assert (tmp_path / "checkpoints" / ".tmp_step_2").exists()  # ignored leftovers


def test_pruning_keeps_the_newest(tmp_path):
    model, opt = trained()
    for step in (2, 4, 6, 10):
        checkpoint.save(tmp_path, step, model, TinyTokenizer(), opt, {}, keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_6", "step_10"]
    state = json.loads((tmp_path / "checkpoints" / "step_10" / "trainer_state.json").read_text())
    assert state["step"] == 10


def test_kl_reference_of_a_model_with_tied_embeddings_is_saved_and_restored(tmp_path):
    """Real models tie input and output embeddings (Qwen3 up to 4B): the KL reference they
    share a tensor in must still be written, and load back into a tied reference."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from spiral.config import AlgoConfig, LearnerConfig
    from spiral.learning.learner import make_learner
    from spiral.models.tiny import SHIPPED

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=1024, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, tie_word_embeddings=True)
    model = Qwen3ForCausalLM(config)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    learner = make_learner(model, LearnerConfig(), AlgoConfig(kl_beta=0.5), pad_id=0,
                           temperature=1.0, norm_tokens=4)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)  # the policy moves; the reference must not
    path = learner.save_checkpoint(tmp_path, 1, AutoTokenizer.from_pretrained(SHIPPED),
                                   {"elapsed_s": 0.0}, keep=2)
    assert checkpoint.latest(tmp_path) == path
    fresh = make_learner(Qwen3ForCausalLM(config), LearnerConfig(), AlgoConfig(kl_beta=0.5),
                         pad_id=0, temperature=1.0, norm_tokens=4)
    fresh.load_extra_state(path)
    reference = fresh.reference
    assert reference.lm_head.weight.data_ptr() == reference.model.embed_tokens.weight.data_ptr()
    assert torch.equal(reference.lm_head.weight, learner.reference.lm_head.weight)
    assert not torch.equal(reference.lm_head.weight, model.lm_head.weight)
