"""One training step on a GPU with a Qwen3-0.6B-shaped model (random init, no downloads).

    python experiments/gpu_check.py [--prompts 32] [--prompt-tokens 256] [--new-tokens 128]

Times the hf actor's generation, one update of the torch learner and one of the DeepSpeed
learner (ZeRO-2, bf16, one process) on the same samples; prints step times and tokens/s and
writes them to $OUT/gpu_check.json when OUT is set. DeepSpeed is optional: without it that row
is reported as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from spiral.config import ActorConfig, AlgoConfig, LearnerConfig
from spiral.distributed import Dist, setup
from spiral.learning.learner import make_learner
from spiral.records import Sample
from spiral.rollout.actor import HFActor

EOS, PAD = 151645, 151643


def qwen3_06b():
    """Qwen3-0.6B's dimensions (28 layers, hidden 1024, GQA 16/8, head 128, tied), bf16."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                         num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                         head_dim=128, max_position_embeddings=40960, tie_word_embeddings=True,
                         eos_token_id=EOS, pad_token_id=PAD)
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).to(torch.bfloat16)


class IdTokenizer:
    """What the hf actor needs from a tokenizer when the text does not matter."""

    eos_token_id, pad_token_id = EOS, PAD

    def decode(self, ids, skip_special_tokens=True) -> str:
        return " ".join(map(str, ids))


def timed(fn):
    torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("experiments/gpu_check.py needs a CUDA GPU")
    setup("cuda", need_group=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, **vars(args)}
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 150000, (args.prompt_tokens,), generator=gen).tolist()
               for _ in range(args.prompts)]
    cfg = ActorConfig(max_new_tokens=args.new_tokens, batch_size=args.prompts)
    actor = HFActor(qwen3_06b().cuda(), IdTokenizer(), cfg)
    actor.generate(prompts[:2], seed=0)  # warm-up
    seconds, generations = timed(lambda: actor.generate(prompts, seed=1))
    new_tokens = sum(len(g.token_ids) for g in generations)
    results["actor_hf"] = {"step_s": seconds, "tokens_per_s": new_tokens / seconds}
    samples = [Sample(p, g.token_ids, 1.0 if i % 2 else -1.0, g.logprobs)
               for i, (p, g) in enumerate(zip(prompts, generations))]
    trained = sum(s.length for s in samples)
    learner_cfg = LearnerConfig(lr=1e-6, micro_batch_tokens=16384)  # ZeRO-2 by default
    common = dict(pad_id=PAD, temperature=1.0, norm_tokens=args.new_tokens)
    learners = {"learner_torch": lambda: make_learner(qwen3_06b().cuda(), learner_cfg,
                                                       AlgoConfig(), **common)}
    if importlib.util.find_spec("deepspeed") is not None:
        ds_cfg = dataclasses.replace(learner_cfg, backend="deepspeed")
        learners["learner_deepspeed_zero2"] = lambda: make_learner(
            qwen3_06b().cuda(), ds_cfg, AlgoConfig(), dist=Dist(), bf16=True, **common)
    else:
        results["learner_deepspeed_zero2"] = "skipped: deepspeed not installed"
    for name, make in learners.items():
        learner = make()
        learner.update(samples)  # warm-up (allocates optimizer state)
        seconds, stats = timed(lambda learner=learner: learner.update(samples))
        results[name] = {"step_s": seconds, "tokens_per_s": trained / seconds,
                         "loss": stats["train/loss"],
                         "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
        del learner
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    print(json.dumps(results, indent=2))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
