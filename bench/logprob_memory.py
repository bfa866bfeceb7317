"""Learner memory of response log-probs: chunked LM head vs the full-vocabulary logits.

    python bench/logprob_memory.py [--quick] [--responses 4] [--response-tokens 512]
                                   [--chunk-tokens N]

A random-init Qwen3-shaped model with the real vocabulary (151,936 entries, tied embeddings,
float32, small body: 2 layers of width 256) scores a micro-batch of ``--responses`` sequences of
64 prompt + ``--response-tokens`` response tokens. One step is forward + backward of the sum of
the response log-probs, with (a) the old computation, kept here as ``full_vocab_logprobs``:
the LM head on every response position at once, ``(B, R, V)`` fp32 logits and their
``log_softmax`` kept for the backward, and (b) ``spiral.models.logprobs.response_logprobs``:
``--chunk-tokens`` positions at a time (default: the library's ``CHUNK_TOKENS``), each
chunk checkpointed.

Peak memory: bytes that torch allocated during the step above what was live when it began
(the weights, and nothing else: gradients are set to None before the step, so both paths also
count their parameter gradients). On CUDA that is ``torch.cuda.max_memory_allocated()`` minus
``memory_allocated()`` before the step. On CPU torch has no allocator statistics, and the
process's RSS would mix in the Python heap and glibc's caching; the step runs under
``torch.profiler`` with ``profile_memory=True`` instead, whose allocation events carry the CPU
allocator's running total of live bytes allocated under the profiler: the peak is that total's
maximum over the step, minus its value before the step's first allocation. (The step frees
nothing allocated before it, which that total could not see.) The profiled step is a separate
run from the timed ones.

- logprob_peak_memory_ratio: chunked peak / full-vocabulary peak. Goal <= 0.3.
- logprob_max_abs_diff: max |chunked - full| log-prob over the response tokens (<= 1e-5), and
  logprob_grad_max_abs_diff the same over every parameter gradient.
- logprob_peak_bytes_per_token/{full_vocab,chunked}: peak bytes per micro-batch token
  (prompt + response, no padding here).
- logprob_step_s/{full_vocab,chunked}: the faster of two unprofiled steps (one with
  ``--quick``).
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from spiral.models.logprobs import CHUNK_TOKENS, _decoder_states, response_logprobs
from spiral.records import Sample

sys.path.append(str(Path(__file__).parent))
from common import record, table  # noqa: E402

VOCAB = 151936  # Qwen3's
PROMPT_TOKENS = 64
BENCH = "learner"  # rows go to bench/results/learner.jsonl, beside the learner's other figures


def qwen3_real_vocab(device: torch.device):
    """Random-init Qwen3 with the real vocabulary and a small body (fp32: exact comparisons)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=256, intermediate_size=768,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=64, tie_word_embeddings=True)
    return Qwen3ForCausalLM(config).to(device)


def make_samples(responses: int, response_tokens: int) -> list[Sample]:
    rng = random.Random(0)
    return [Sample([rng.randrange(VOCAB) for _ in range(PROMPT_TOKENS)],
                   [rng.randrange(VOCAB) for _ in range(response_tokens)], 1.0,
                   [0.0] * response_tokens) for _ in range(responses)]


def full_vocab_logprobs(model, samples: list[Sample], pad_id: int, temperature: float = 1.0):
    """The computation ``response_logprobs`` replaced: the LM head on all response positions
    at once, full fp32 logits and log-softmax (B, R, V)."""
    device = next(model.parameters()).device
    hidden, input_ids, shared = _decoder_states(model, samples, pad_id, device)  # (B, T, H)
    starts = torch.tensor([len(s.prompt_ids) - shared for s in samples], device=device)
    lengths = torch.tensor([len(s.response_ids) for s in samples], device=device)
    offsets = torch.arange(int(lengths.max()), device=device)  # (R,)
    target_pos = (starts[:, None] + offsets[None, :]).clamp(max=input_ids.shape[1] - 1)
    picked = hidden.gather(1, (target_pos - 1)[..., None].expand(-1, -1, hidden.shape[-1]))
    logits = model.get_output_embeddings()(picked).float() / temperature  # (B, R, V)
    targets = input_ids.gather(1, target_pos)  # (B, R)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    mask = (offsets[None, :] < lengths[:, None]).float()
    return logp * mask, mask


def step(model, logprobs: Callable, samples: list[Sample]) -> torch.Tensor:
    """Forward + backward of the summed log-probs; returns the log-probs, detached."""
    model.zero_grad(set_to_none=True)
    logp, _ = logprobs(model, samples, 0)
    logp.sum().backward()
    return logp.detach()


def peak_bytes(run: Callable[[], object]) -> int:
    """Peak bytes torch allocated while ``run`` ran, above what was live when it started."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events, allocations = list(prof.profiler.kineto_results.experimental_event_tree()), []
    while events:
        event = events.pop()
        events.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            allocations.append(event)
    allocations.sort(key=lambda e: e.start_time_ns)
    first = allocations[0].extra_fields
    base = first.total_allocated - first.alloc_size
    return max(e.extra_fields.total_allocated for e in allocations) - base


def fastest_step(model, logprobs: Callable, samples: list[Sample], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        step(model, logprobs, samples)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(model, logprobs: Callable, samples: list[Sample], repeats: int) -> dict:
    """Log-probs and gradients of one step, its peak memory, and its fastest time."""
    seconds = fastest_step(model, logprobs, samples, repeats)  # the first one also warms up
    out: dict = {}
    model.zero_grad(set_to_none=True)  # the step starts from the weights alone
    out["peak"] = peak_bytes(lambda: out.__setitem__("logp", step(model, logprobs, samples)))
    out["grads"] = {n: p.grad.clone() for n, p in model.named_parameters()}
    out["seconds"] = seconds
    model.zero_grad(set_to_none=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 x 64 tokens: a smoke run")
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--response-tokens", type=int, default=512)
    parser.add_argument("--chunk-tokens", type=int, default=CHUNK_TOKENS,
                        help="LM-head chunk of the new path (default: the library's)")
    args = parser.parse_args()
    if args.quick:
        args.responses, args.response_tokens = 2, 64
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = qwen3_real_vocab(device)
    samples = make_samples(args.responses, args.response_tokens)
    repeats = 1 if args.quick else 2
    old = measure(model, full_vocab_logprobs, samples, repeats)
    chunked = functools.partial(response_logprobs, chunk_tokens=args.chunk_tokens)
    new = measure(model, chunked, samples, repeats)
    tokens = sum(s.length for s in samples)
    ratio = new["peak"] / old["peak"]
    diff = float((new["logp"] - old["logp"]).abs().max())
    grad_diff = max(float((new["grads"][n] - g).abs().max()) for n, g in old["grads"].items())
    figures = [("logprob_peak_memory_ratio", ratio, "ratio"),
               ("logprob_max_abs_diff", diff, "nats"),
               ("logprob_grad_max_abs_diff", grad_diff, "abs"),
               ("logprob_peak_bytes_per_token/full_vocab", old["peak"] / tokens, "bytes/token"),
               ("logprob_peak_bytes_per_token/chunked", new["peak"] / tokens, "bytes/token"),
               ("logprob_step_s/full_vocab", old["seconds"], "s"),
               ("logprob_step_s/chunked", new["seconds"], "s")]
    for metric, value, unit in figures:
        record(BENCH, metric, value, unit)
    shape = (f"{args.responses} x ({PROMPT_TOKENS} + {args.response_tokens}) tokens, "
             f"chunks of {args.chunk_tokens}, {device.type}")
    rows = [(metric, f"{value:.4g}", unit) for metric, value, unit in figures]
    rows.append(("peak GiB full / chunked",
                 f"{old['peak'] / 2**30:.2f} / {new['peak'] / 2**30:.2f}", shape))
    print(table(rows, ("metric", "value", "unit")))


if __name__ == "__main__":
    main()
