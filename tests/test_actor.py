"""The HF actor's lean sampling loop: the same tokens as transformers' own greedy decoding, and
sampling log-probs that the learner recomputes, with rows leaving the batch as they finish."""

import random

import pytest
import torch

import envs
from spiral.config import ActorConfig, ModelConfig
from spiral.models.loading import load_model, load_tokenizer
from spiral.models.logprobs import response_logprobs
from spiral.models.prefix import shared_prefix_length
from spiral.models.prompting import Prompter
from spiral.models.tiny import SHIPPED
from spiral.records import Sample
from spiral.rollout.actor import HFActor


def observations(game_ids, seeds=range(2)) -> list[str]:
    """Observations of the games after 0 and 1 random moves (prompts of different lengths)."""
    out = []
    for game_id in game_ids:
        for seed in seeds:
            for moves in range(2):
                game = envs.make(game_id)
                game.reset(seed=seed)
                for _ in range(moves):
                    legal = game.legal_actions()
                    game.step(legal[seed % len(legal)] if legal else game.sample_action(
                        random.Random(seed)))
                out.append(game.observe(game.current_player()))
    return out


BATCHES = {
    "three games": ("KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1"),  # little shared
    "one game": ("SimpleNegotiation-v1",),  # the rules: a shared prefix, run once
}


@pytest.fixture(scope="module", params=list(BATCHES))
def actor_parts(request):
    """The shipped embedded model: it answers in a few tokens, so rows finish at different
    steps (a response cut at the limit is also in the mix)."""
    tokenizer = load_tokenizer(str(SHIPPED))
    model = load_model(str(SHIPPED), ModelConfig(), torch.device("cpu"))
    prompts = [Prompter(tokenizer)(text) for text in observations(BATCHES[request.param],
                                                                  range(3))]
    shared = shared_prefix_length(prompts)
    assert (shared > 0) == (request.param == "one game")
    return model, tokenizer, prompts


def test_greedy_batch_equals_generate_one_prompt_at_a_time(actor_parts, one_torch_thread):
    model, tokenizer, prompts = actor_parts
    actor = HFActor(model, tokenizer, ActorConfig(max_new_tokens=20))
    batched = actor.generate(prompts, seed=0, temperature=0.0)
    for prompt, gen in zip(prompts, batched):
        ids = torch.tensor([prompt])
        want = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=20, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)[0, len(prompt):].tolist()
        assert gen.token_ids == want[: len(gen.token_ids)]
        assert gen.finished == (tokenizer.eos_token_id in want)


def test_sampling_logprobs_match_the_learner_as_rows_finish(actor_parts, one_torch_thread):
    model, tokenizer, prompts = actor_parts
    actor = HFActor(model, tokenizer, ActorConfig(max_new_tokens=20))
    gens = actor.generate(prompts * 3, seed=3)
    lengths = {len(g.token_ids) for g in gens}
    assert len(lengths) > 1  # rows finished at different steps: the batch shrank mid-decode
    assert any(g.finished for g in gens)
    samples = [Sample(p, g.token_ids, 0.0, g.logprobs) for p, g in zip(prompts * 3, gens)]
    with torch.no_grad():
        logp, mask = response_logprobs(model, samples, tokenizer.pad_token_id)
    for i, g in enumerate(gens):
        got = torch.tensor(g.logprobs)
        assert torch.allclose(logp[i, : len(g.token_ids)], got, atol=1e-4), i
        assert g.finished == (g.token_ids[-1] == tokenizer.eos_token_id)
    again = actor.generate(prompts * 3, seed=3)
    assert [g.token_ids for g in again] == [g.token_ids for g in gens]


def test_the_batch_shrinks_as_rows_finish_and_the_prefix_runs_once(actor_parts, one_torch_thread):
    model, tokenizer, prompts = actor_parts
    sizes = []
    hook = model.get_decoder().register_forward_hook(
        lambda module, args, kwargs, out: sizes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True)
    try:
        gens = HFActor(model, tokenizer, ActorConfig(max_new_tokens=20)).generate(prompts * 3, 3)
    finally:
        hook.remove()
    shared = shared_prefix_length(prompts * 3)
    calls = sizes[1:] if shared else sizes
    if shared:
        assert sizes[0] == (1, shared)  # the rules, once
    assert calls[0][0] == len(gens)  # the prefill of every prompt's own part
    decode_rows = [rows for rows, width in calls[1:]]
    assert all(width == 1 for _, width in calls[1:])
    assert decode_rows == sorted(decode_rows, reverse=True) and decode_rows[-1] < len(gens)
    still_writing = [sum(len(g.token_ids) > k for g in gens) for k in range(1, len(calls))]
    assert decode_rows == still_writing  # exactly the rows that had not emitted EOS
