"""Chunked, checkpointed response log-probs equal the full-vocabulary computation, in values
and in parameter gradients, and keep no ``[tokens, vocab]`` tensor for the backward."""

import random

import pytest
import torch

from spiral.models.logprobs import chosen_logprobs, pad_batch, response_logprobs
from spiral.models.prefix import MIN_SHARED_PREFIX, shared_prefix_length
from spiral.records import Sample

VOCAB = 1000
CHUNK = 7  # fewer than the response tokens of every batch below: several chunks run


def tied_lm():
    """A random-init Qwen3 whose LM head is its input embedding (as in Qwen3-0.6B to 4B)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True,
    ))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


def ragged_samples(prefix: list[int] | None = None, n: int = 5) -> list[Sample]:
    """Prompts of 3-9 tokens (after ``prefix``) and responses of 1-9 tokens."""
    rng = random.Random(3)
    out = []
    for _ in range(n):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(3, 9))]
        response = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 9))]
        out.append(Sample((prefix or []) + prompt, response, 1.0, [0.0] * len(response)))
    return out


def full_vocab_logprobs(model, samples: list[Sample], temperature: float) -> torch.Tensor:
    """The old computation, by hand: one plain forward, the full (B, T, V) fp32 logits and their
    log-softmax, read at every response token."""
    input_ids, attention, _ = pad_batch([(s.prompt_ids, s.response_ids) for s in samples], 0)
    logits = model(input_ids=input_ids, attention_mask=attention).logits.float() / temperature
    table = torch.log_softmax(logits, dim=-1)  # (B, T, V)
    width = max(len(s.response_ids) for s in samples)
    rows = []
    for i, s in enumerate(samples):
        start = len(s.prompt_ids)
        picked = [table[i, start + j - 1, token] for j, token in enumerate(s.response_ids)]
        rows.append(torch.stack(picked + [table.new_zeros(())] * (width - len(picked))))
    return torch.stack(rows)  # (B, R)


def values_and_grads(logp_fn, samples, temperature):
    model = tied_lm()
    logp = logp_fn(model, samples, temperature)
    weights = torch.linspace(-1.0, 2.0, logp.numel()).reshape(logp.shape)
    (logp * weights).sum().backward()  # not a plain sum: every token's gradient counts apart
    return logp.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def chunked(model, samples, temperature) -> torch.Tensor:
    return response_logprobs(model, samples, pad_id=0, temperature=temperature,
                             chunk_tokens=CHUNK)[0]


def assert_same(samples, temperature):
    got, got_grads = values_and_grads(chunked, samples, temperature)
    want, want_grads = values_and_grads(full_vocab_logprobs, samples, temperature)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5
    assert got_grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        assert torch.allclose(got_grads[name], grad, atol=1e-5, rtol=1e-4), name
    assert got_grads["model.embed_tokens.weight"].abs().sum() > 0


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_equal_the_full_vocabulary_ones_with_ragged_responses(temperature):
    samples = ragged_samples()
    assert len({len(s.response_ids) for s in samples}) > 1
    assert sum(len(s.response_ids) for s in samples) > 3 * CHUNK
    assert_same(samples, temperature)


def test_chunked_logprobs_equal_the_full_vocabulary_ones_after_a_shared_prefix():
    rules = [(11 * i) % 997 + 1 for i in range(MIN_SHARED_PREFIX + 4)]
    samples = ragged_samples(prefix=rules)
    assert shared_prefix_length([s.prompt_ids for s in samples]) >= len(rules)
    assert_same(samples, temperature=0.8)


def test_mask_marks_responses_and_padding_is_zero():
    samples = ragged_samples()
    with torch.no_grad():
        logp, mask = response_logprobs(tied_lm(), samples, pad_id=0, chunk_tokens=CHUNK)
        want = full_vocab_logprobs(tied_lm(), samples, 1.0)
    assert mask.tolist() == [[float(j < len(s.response_ids)) for j in range(mask.shape[1])]
                             for s in samples]
    assert (logp[mask == 0] == 0).all() and (logp[mask == 1] < 0).all()
    assert (logp - want).abs().max() <= 1e-5


def saved_shapes(fn) -> list[tuple[int, ...]]:
    """Shapes of every tensor that autograd keeps for the backward while ``fn`` runs."""
    shapes = []

    def pack(tensor):
        shapes.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return shapes


def test_no_vocabulary_sized_tensor_is_kept_for_the_backward():
    samples = ragged_samples()
    model = tied_lm()
    new = saved_shapes(lambda: chunked(model, samples, 1.0))
    old = saved_shapes(lambda: full_vocab_logprobs(model, samples, 1.0))
    assert any(VOCAB in shape for shape in old)  # the check sees the old path's logits
    assert not any(VOCAB in shape for shape in new)


def test_backward_recomputes_each_chunk_once_and_no_grad_skips_the_recompute():
    model = tied_lm()
    calls = [0]
    model.lm_head.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    samples = ragged_samples()
    chunks = -(-sum(len(s.response_ids) for s in samples) // CHUNK)
    logp = chunked(model, samples, 1.0)
    assert calls[0] == chunks
    logp.sum().backward()
    assert calls[0] == 2 * chunks
    with torch.no_grad():
        chunked(model, samples, 1.0)
    assert calls[0] == 3 * chunks


def test_chosen_logprobs_refuses_an_empty_chunk_size():
    head = torch.nn.Linear(4, 10)
    with pytest.raises(ValueError, match="chunk_tokens=0"):
        chosen_logprobs(head, torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), 1.0, 0)
