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
