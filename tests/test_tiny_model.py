"""The embedded model: the build pipeline end to end (on a micro spec), and the shipped model."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import envs
from spiral.models.loading import load_tokenizer
from spiral.models.prompting import Prompter
from spiral.models.tiny import SHIPPED, TinySpec, build, embedded_model_path


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    spec = TinySpec(hidden_size=32, intermediate_size=64, num_layers=1, sft_examples=60,
                    sft_steps=6, sft_batch=8, corpus_games=20)
    return build(tmp_path_factory.mktemp("micro"), spec, log=lambda _: None), spec


def test_build_writes_a_loadable_qwen3_with_chat_template(micro):
    from transformers import AutoModelForCausalLM

    path, spec = micro
    tokenizer = load_tokenizer(str(path))
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    assert model.config.model_type == "qwen3"
    assert not model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                         add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer.encode(envs.core.boxed_answer("[bet]", None), add_special_tokens=False)
    assert tokenizer.decode(ids) == "\\boxed{[bet]}"
    from envs.kuhn import infostate_game

    kuhn = envs.spec("KuhnPoker-v1").answer_text("[call]", infostate_game("Qb"))
    assert kuhn == "I am Player 1. Q calls. \\boxed{[call]}"
    assert tokenizer.decode(tokenizer.encode(kuhn, add_special_tokens=False)) == kuhn
    info = json.loads((path / "spiral_embedded.json").read_text())
    assert info["spec"] == json.loads(json.dumps(asdict(spec)))


def test_build_is_deterministic(micro, tmp_path):
    path, spec = micro
    again = build(tmp_path / "again", spec, log=lambda _: None)
    assert (again / "tokenizer.json").read_text() == (path / "tokenizer.json").read_text()
    from safetensors.torch import load_file

    a, b = load_file(path / "model.safetensors"), load_file(again / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_model_matches_the_default_spec():
    assert embedded_model_path() == SHIPPED
    info = json.loads((SHIPPED / "spiral_embedded.json").read_text())
    assert info["spec"] == json.loads(json.dumps(asdict(TinySpec())))
    params = sum(p.numel() for p in _shipped_model().parameters())
    assert 500_000 <= params <= 10_000_000


def test_the_game_list_is_part_of_the_spec(tmp_path, monkeypatch):
    """A model pretrained on other games is another model: another cache entry, never the
    shipped one."""
    import spiral.models.tiny as tiny

    other = TinySpec(games=("KuhnPoker-v1", "TicTacToe-v1"), sft_schedule=(0, 1))
    assert other.key() != TinySpec().key()
    assert other.key().startswith("embedded-v4-h128-l4-s0-")
    built = []
    monkeypatch.setenv("SPIRAL_HOME", str(tmp_path))
    monkeypatch.setattr(tiny, "build", lambda out, spec, log: built.append(spec) or Path(out)
                        .mkdir(parents=True) or (Path(out) / "spiral_embedded.json").write_text(
                            json.dumps({"spec": asdict(spec)})))
    path = embedded_model_path(other, log=lambda _: None)
    assert path != SHIPPED and path.name == other.key() and built == [other]


def test_shipped_model_answers_in_format_with_legal_moves():
    """Format-only pretraining: legal moves in \\boxed{}, roughly uniform (no strategy)."""
    from spiral.config import ActorConfig, EnvConfig
    from spiral.rollout.actor import HFActor
    from spiral.rollout.selfplay import play

    tokenizer = load_tokenizer(str(SHIPPED))
    actor = HFActor(_shipped_model(), tokenizer, ActorConfig())
    env = EnvConfig(games=("KuhnPoker-v1", "TicTacToe-v1"))
    episodes = play(actor, Prompter(tokenizer), env, 64, seed=0)
    invalid = sum(ep.invalid_player is not None for ep in episodes) / len(episodes)
    assert invalid < 0.10


def _shipped_model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(SHIPPED, use_safetensors=True)
