"""One training step on a GPU with random-init Qwen3-shaped models (no downloads).

    python experiments/gpu_check.py [--prompts 32] [--prompt-tokens 256] [--new-tokens 128]
    python experiments/gpu_check.py --kuhn-paper [--lora] [--backend deepspeed|torch] [--samples N]
    python experiments/gpu_check.py --small [--kuhn-paper]   # CPU, seconds

Default: a Qwen3-0.6B shape. Times the hf actor's generation, one update of the torch learner
and one of the DeepSpeed learner (ZeRO-2, bf16, one process) on the same samples.

``--kuhn-paper``: the learner of ``+exp=kuhn_paper`` as composed from configs/ (its learner:
DeepSpeed ZeRO-2, micro_batch_tokens, lr, epochs; its algo; bf16 and gradient checkpointing from
``model=qwen3_4b_base``) on a random-init Qwen3-4B shape on one GPU: one update (after a
warm-up update) on ``--samples`` synthetic samples of 256 prompt + ``actor.max_new_tokens``
(4096) response tokens, by default two full micro-batches. ``--lora``: the same with
``+exp=kuhn_paper_lora``'s learner (a rank-32 adapter over the frozen base).

``--small``: the same code paths on a 2-layer, width-32 Qwen3 with a 4,096-entry vocabulary
and a few short samples (the micro-batch budget scaled to hold as many samples as the real one), on
the GPU when there is one, else on CPU in seconds: ``tests/test_gpu_check.py`` runs it so the
script cannot rot. On CPU the models are float32, not bf16: torch's CPU bf16 matmuls are slow
(an LM-head matmul 5-30x slower than in float32 on this project's CPU box).

Prints step times, tokens/s and peak memory (on CUDA ``torch.cuda.max_memory_allocated``, on
CPU the process's peak RSS) and writes them to $OUT/gpu_check[_kuhn_paper].json when OUT is set.
DeepSpeed is optional: without it its rows are reported as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import resource
import time
from pathlib import Path

import torch

from spiral.config import ActorConfig, AlgoConfig, LearnerConfig
from spiral.distributed import Dist, setup
from spiral.learning.learner import make_learner
from spiral.models import lora
from spiral.records import Sample
from spiral.rollout.actor import HFActor

QWEN3_VOCAB = 151936
EOS, PAD = 151645, 151643  # Qwen3's <|im_end|> and <|endoftext|>, near the vocabulary's end
SHAPES = {  # Qwen3 dimensions: layers, width, MLP width, GQA heads / KV heads, head size
    "qwen3_0.6b": dict(num_hidden_layers=28, hidden_size=1024, intermediate_size=3072,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128),
    "qwen3_4b": dict(num_hidden_layers=36, hidden_size=2560, intermediate_size=9728,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128),
    "small": dict(vocab_size=4096, num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=16),
}
KUHN_PROMPT_TOKENS = 256  # a Kuhn Poker prompt (rules, history, format) is about this long
SMALL = dict(prompts=4, prompt_tokens=8, new_tokens=8, response_tokens=8)


def qwen3(shape: str, device: torch.device, bf16: bool = True, checkpointing: bool = False):
    """A random-init Qwen3 of ``SHAPES[shape]``, built directly on ``device``; bf16 only on
    CUDA."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    dtype = torch.bfloat16 if bf16 and device.type == "cuda" else torch.float32
    eos, pad = special_ids(shape)
    config = Qwen3Config(**{"vocab_size": QWEN3_VOCAB, **SHAPES[shape]}, eos_token_id=eos,
                         pad_token_id=pad, max_position_embeddings=40960,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if checkpointing:
        model.gradient_checkpointing_enable()
    return model


def special_ids(shape: str) -> tuple[int, int]:
    """EOS and PAD of a shape: Qwen3's, as far from the end of its vocabulary."""
    shift = SHAPES[shape].get("vocab_size", QWEN3_VOCAB) - QWEN3_VOCAB
    return EOS + shift, PAD + shift


class IdTokenizer:
    """What the hf actor needs from a tokenizer when the text does not matter."""

    def __init__(self, eos: int, pad: int):
        self.eos_token_id, self.pad_token_id = eos, pad

    def decode(self, ids, skip_special_tokens=True) -> str:
        return " ".join(map(str, ids))


def timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, out


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def random_ids(count: int, length: int, below: int, gen: torch.Generator) -> list[list[int]]:
    return [torch.randint(0, below, (length,), generator=gen).tolist() for _ in range(count)]


def measure_updates(learners: dict, samples: list[Sample], device: torch.device) -> dict:
    """Per learner: one update after a warm-up one (it allocates the optimizer state), its time,
    trained tokens/s, loss and peak memory; each learner is built and dropped in turn."""
    trained = sum(s.length for s in samples)
    results = {}
    for name, make in learners.items():
        if isinstance(make, str):
            results[name] = make
            continue
        learner = make()
        learner.update(samples)
        seconds, stats = timed(lambda learner=learner: learner.update(samples), device)
        results[name] = {"step_s": seconds, "tokens_per_s": trained / seconds,
                         "loss": stats["train/loss"], **peak_memory(device)}
        del learner
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return results


def deepspeed_or_reason(make):
    """``make`` when DeepSpeed imports, else why its row is skipped."""
    if importlib.util.find_spec("deepspeed") is None:
        return "skipped: deepspeed not installed"
    return make


def one_step_check(args, device: torch.device, dist: Dist) -> dict:
    """Qwen3-0.6B shape (``small`` with --small): hf actor generation, then the torch and the
    DeepSpeed ZeRO-2 learner on the generated samples."""
    shape = "small" if args.small else "qwen3_0.6b"
    eos, pad = special_ids(shape)
    prompts = random_ids(args.prompts, args.prompt_tokens, pad, torch.Generator().manual_seed(0))
    cfg = ActorConfig(max_new_tokens=args.new_tokens, batch_size=args.prompts)
    actor = HFActor(qwen3(shape, device), IdTokenizer(eos, pad), cfg)
    actor.generate(prompts[:2], seed=0)  # warm-up
    seconds, generations = timed(lambda: actor.generate(prompts, seed=1), device)
    new_tokens = sum(len(g.token_ids) for g in generations)
    results = {"actor_hf": {"step_s": seconds, "tokens_per_s": new_tokens / seconds}}
    samples = [Sample(p, g.token_ids, 1.0 if i % 2 else -1.0, g.logprobs)
               for i, (p, g) in enumerate(zip(prompts, generations))]
    learner_cfg = LearnerConfig(lr=1e-6, micro_batch_tokens=16384)  # ZeRO-2 by default
    common = dict(pad_id=pad, temperature=1.0, norm_tokens=args.new_tokens, dist=dist)
    ds_cfg = dataclasses.replace(learner_cfg, backend="deepspeed")
    learners = {
        "learner_torch": lambda: make_learner(qwen3(shape, device), learner_cfg, AlgoConfig(),
                                              **common),
        "learner_deepspeed_zero2": deepspeed_or_reason(lambda: make_learner(
            qwen3(shape, device), ds_cfg, AlgoConfig(), bf16=device.type == "cuda", **common)),
    }
    return results | measure_updates(learners, samples, device)


def kuhn_paper_config(exp: str = "kuhn_paper"):
    """The composed, validated ``+exp=<exp>`` run config (what training would use)."""
    from spiral.errors import compose_config
    from spiral.launch import to_run_config

    return to_run_config(compose_config("config", [f"+exp={exp}"]))


def kuhn_paper_samples(count: int, prompt_tokens: int, response_tokens: int,
                       below: int) -> list[Sample]:
    gen = torch.Generator().manual_seed(0)
    prompts = random_ids(count, prompt_tokens, below, gen)
    responses = random_ids(count, response_tokens, below, gen)
    return [Sample(p, r, 1.0 if i % 2 else -1.0, [-1.0] * response_tokens, game_id="Kuhn")
            for i, (p, r) in enumerate(zip(prompts, responses))]


def kuhn_paper_check(args, device: torch.device, dist: Dist) -> dict:
    """One ``+exp=kuhn_paper`` learner update on a Qwen3-4B shape (``small`` with --small)."""
    cfg = kuhn_paper_config("kuhn_paper_lora" if args.lora else "kuhn_paper")
    shape = "small" if args.small else "qwen3_4b"
    _, pad = special_ids(shape)
    per_micro_batch = cfg.learner.micro_batch_tokens // (KUHN_PROMPT_TOKENS
                                                         + cfg.actor.max_new_tokens)
    prompt_tokens = SMALL["prompt_tokens"] if args.small else KUHN_PROMPT_TOKENS
    response_tokens = SMALL["response_tokens"] if args.small else cfg.actor.max_new_tokens
    learner_cfg = dataclasses.replace(
        cfg.learner, backend=args.backend or cfg.learner.backend,
        micro_batch_tokens=per_micro_batch * (prompt_tokens + response_tokens))
    samples = kuhn_paper_samples(args.samples or 2 * per_micro_batch, prompt_tokens,
                                 response_tokens, pad)
    bf16 = cfg.model.dtype == "bfloat16" and device.type == "cuda"

    def make():
        model = qwen3(shape, device, bf16, cfg.model.gradient_checkpointing)
        if cfg.learner.lora.enabled:
            model = lora.wrap(model, cfg.learner.lora, cfg.seed)
        return make_learner(model, learner_cfg, cfg.algo, pad_id=pad,
                            temperature=cfg.actor.temperature,
                            norm_tokens=cfg.algo.norm_tokens or cfg.actor.max_new_tokens,
                            dist=dist, bf16=bf16, seed=cfg.seed)

    name = f"learner_{learner_cfg.backend}"
    if learner_cfg.backend == "deepspeed":
        name, make = f"{name}_zero{learner_cfg.deepspeed.zero_stage}", deepspeed_or_reason(make)
    setting = {"shape": shape, "samples": len(samples), "prompt_tokens": prompt_tokens,
               "response_tokens": response_tokens,
               "micro_batch_tokens": learner_cfg.micro_batch_tokens,
               "samples_per_micro_batch": per_micro_batch, "epochs": learner_cfg.epochs,
               "bf16": bf16, "gradient_checkpointing": cfg.model.gradient_checkpointing,
               "lora_rank": cfg.learner.lora.rank}
    return {"kuhn_paper": setting} | measure_updates({name: make}, samples, device)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--kuhn-paper", action="store_true",
                        help="one +exp=kuhn_paper learner update on a Qwen3-4B shape")
    parser.add_argument("--lora", action="store_true",
                        help="with --kuhn-paper: +exp=kuhn_paper_lora's learner (LoRA rank 32)")
    parser.add_argument("--backend", choices=["deepspeed", "torch"], default=None,
                        help="--kuhn-paper's learner backend (default: the experiment's)")
    parser.add_argument("--samples", type=int, default=None,
                        help="--kuhn-paper's samples (default: two full micro-batches)")
    parser.add_argument("--small", action="store_true",
                        help="a tiny shape that runs on CPU in seconds (the script's test)")
    args = parser.parse_args(argv)
    if args.small:
        args.prompts, args.prompt_tokens, args.new_tokens = (
            SMALL["prompts"], SMALL["prompt_tokens"], SMALL["new_tokens"])
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.small:
        raise SystemExit("experiments/gpu_check.py needs a CUDA GPU (or --small, on CPU)")
    device = torch.device("cuda" if cuda else "cpu")
    dist = setup(device.type, need_group=True)
    results = {"device": torch.cuda.get_device_name() if cuda else "cpu",
               "torch": torch.__version__, **vars(args)}
    check = kuhn_paper_check if args.kuhn_paper else one_step_check
    results |= check(args, device, dist)
    print(json.dumps(results, indent=2))
    if os.environ.get("OUT"):
        name = "gpu_check.json" if not args.kuhn_paper else (
            "gpu_check_kuhn_paper_lora.json" if args.lora else "gpu_check_kuhn_paper.json")
        Path(os.environ["OUT"], name).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
