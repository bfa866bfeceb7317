"""LoRA against full fine-tuning on a real model: checkpoint size, learner memory, vLLM sync.

    python bench/lora.py [--quick]

SmolLM2-135M (``model=smollm2_135m``, prepared by ``python -m spiral.models.prepare``), float32,
on this machine's device; the adapter is rank 16, alpha 16, all-linear (``learner.lora``).
Both runs get the same synthetic samples: random prompts and responses from the real
vocabulary, advantages +-1, old log-probs from the base model (which both policies start as).

- lora/checkpoint_size_ratio: bytes of the checkpoint folder that ``PPOLearner.save_checkpoint``
  writes after one update (weights or adapter, optimizer state, tokenizer, trainer state) with
  LoRA / without. Rows lora/checkpoint_bytes/{lora,full} hold the sizes.
- lora/learner_peak_memory_ratio: peak bytes that one PPO update allocates above what was live
  before it (``logprob_memory.peak_bytes``: CUDA allocator statistics, or on CPU the
  profiler's running total of CPU allocations), LoRA / full. It is each learner's first update,
  so the gradients and AdamW's moments are created inside it and count; the weights, live
  before it, do not. The ratio depends on the batch: the activations are the same for both,
  and on the default batch (8 x 128 tokens) full fine-tuning peaks in the optimizer step, LoRA
  at the end of the forward. Rows lora/learner_peak_bytes/{lora,full}.
- lora/vllm_sync_ratio: median seconds of ``VLLMActor.load_weights`` by adapter (write a PEFT
  folder, swap the adapter id) / by full reload (``reload_weights`` of every tensor), over
  several syncs each, in the vLLM interpreter (this one if it imports vllm, else
  ``$SPIRAL_VLLM_PYTHON``; without either the vLLM rows are left out). vLLM moves a new adapter
  into its LoRA slots at the next batch, so lora/vllm_sync_ratio/with_first_token also times a
  one-token generation after each sync. lora/vllm_generate_ratio: seconds to generate
  ``GENERATE_PROMPTS`` x ``GENERATE_TOKENS`` with the adapter / without (the cost LoRA adds to
  every rollout). Each mode runs in its own process (one engine per process).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from spiral.config import ActorConfig, AlgoConfig, LearnerConfig, LoraConfig, ModelConfig
from spiral.records import Sample

sys.path.append(str(Path(__file__).parent))
from common import record, table  # noqa: E402
from logprob_memory import peak_bytes  # noqa: E402

BENCH = "learner"  # rows go to bench/results/learner.jsonl, beside the learner's other figures
MODEL = "smollm2_135m"
LORA = LoraConfig(rank=16, alpha=16.0)  # target_modules: all-linear (the default)
GENERATE_PROMPTS, GENERATE_TOKENS = 8, 32


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load(lora_cfg: LoraConfig | None):
    """SmolLM2-135M in float32, wrapped with a fresh adapter when ``lora_cfg`` is given."""
    from spiral.models import lora
    from spiral.models.loading import load_model, resolve_path

    model = load_model(resolve_path(MODEL), ModelConfig(), device())
    return lora.wrap(model, lora_cfg) if lora_cfg is not None else model


def synthetic_samples(model, count: int, prompt_tokens: int, response_tokens: int):
    """Random turns over the real vocabulary, scored by ``model`` for their old log-probs."""
    from spiral.models.logprobs import response_logprobs

    rng = random.Random(0)
    vocab = model.config.vocab_size
    samples = [Sample([rng.randrange(vocab) for _ in range(prompt_tokens)],
                      [rng.randrange(vocab) for _ in range(response_tokens)],
                      1.0 if i % 2 else -1.0, []) for i in range(count)]
    with torch.no_grad():
        old = response_logprobs(model, samples, 0)[0].float().cpu()  # (B, R)
    return [dataclasses.replace(s, actor_logprobs=old[i, :response_tokens].tolist())
            for i, s in enumerate(samples)]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def one_update(lora_cfg: LoraConfig | None, samples, tokenizer) -> tuple[int, int]:
    """(peak bytes of a fresh learner's first update, bytes of the checkpoint it writes)."""
    from spiral.learning.learner import make_learner

    cfg = LearnerConfig(lr=1e-4, lora=lora_cfg or LoraConfig())
    learner = make_learner(load(lora_cfg), cfg, AlgoConfig(), pad_id=tokenizer.pad_token_id,
                           temperature=1.0, norm_tokens=len(samples[0].response_ids))
    peak = peak_bytes(lambda: learner.update(samples))
    with tempfile.TemporaryDirectory() as run_dir:
        state = {"elapsed_s": 0.0}
        folder = learner.save_checkpoint(Path(run_dir), 1, tokenizer, state, keep=1)
        size = folder_bytes(folder)
    return peak, size


def learner_figures(quick: bool) -> list[tuple[str, float, str]]:
    from spiral.models.loading import load_tokenizer, resolve_path

    tokenizer = load_tokenizer(resolve_path(MODEL))
    count, prompt, response = (2, 32, 16) if quick else (8, 64, 64)
    samples = synthetic_samples(load(None), count, prompt, response)
    full_peak, full_size = one_update(None, samples, tokenizer)
    lora_peak, lora_size = one_update(LORA, samples, tokenizer)
    return [("lora/checkpoint_size_ratio", lora_size / full_size, "ratio"),
            ("lora/learner_peak_memory_ratio", lora_peak / full_peak, "ratio"),
            ("lora/checkpoint_bytes/lora", lora_size, "bytes"),
            ("lora/checkpoint_bytes/full", full_size, "bytes"),
            ("lora/learner_peak_bytes/lora", lora_peak, "bytes"),
            ("lora/learner_peak_bytes/full", full_peak, "bytes")]


def randomize_b(model) -> None:
    """A non-zero adapter (PEFT starts B at 0), so the vLLM actor's work is the real one."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator).to(param) * 0.01)


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sync_seconds(mode: str, syncs: int) -> dict:
    """In the vLLM interpreter: a vLLM-CPU/GPU actor synced ``syncs`` times in ``mode``."""
    from spiral.distributed import setup
    from spiral.models import lora
    from spiral.models.loading import load_tokenizer, resolve_path
    from spiral.rollout.vllm_actor import VLLMActor

    setup(device().type, need_group=True)
    path = resolve_path(MODEL)
    tokenizer = load_tokenizer(path)
    lora_cfg = LORA if mode == "lora" else None
    model = load(lora_cfg)
    if lora_cfg is not None:
        randomize_b(model)
    weights = lora.actor_weights(model)
    cfg = ActorConfig(backend="vllm", max_new_tokens=1)
    actor = VLLMActor(path, tokenizer, cfg, weights, lora=lora_cfg)
    prompt = tokenizer("The weights of a policy", add_special_tokens=False)["input_ids"]
    actor.generate([prompt], seed=0)  # warm-up
    out = {"sync": median_seconds(lambda: actor.load_weights(weights), syncs),
           "sync_first_token": median_seconds(
               lambda: (actor.load_weights(weights), actor.generate([prompt], seed=0)), syncs)}
    actor.cfg = dataclasses.replace(cfg, max_new_tokens=GENERATE_TOKENS)
    prompts = [prompt + [i] for i in range(GENERATE_PROMPTS)]  # no shared cache entries
    out["generate"] = median_seconds(lambda: actor.generate(prompts, seed=1), 3)
    return out


def vllm_python() -> str | None:
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return os.environ.get("SPIRAL_VLLM_PYTHON")


def sync_in_child(python: str, mode: str, syncs: int) -> dict:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    done = subprocess.run([python, __file__, "--sync", mode, "--syncs", str(syncs)], env=env,
                          cwd=root, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"vLLM sync ({mode}) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sync_figures(quick: bool) -> list[tuple[str, float, str]]:
    python = vllm_python()
    if python is None:
        print("vLLM not importable and SPIRAL_VLLM_PYTHON unset: no vLLM sync figures")
        return []
    syncs = 2 if quick else 7
    by_adapter, full = (sync_in_child(python, mode, syncs) for mode in ("lora", "full"))
    return [("lora/vllm_sync_ratio", by_adapter["sync"] / full["sync"], "ratio"),
            ("lora/vllm_sync_ratio/with_first_token",
             by_adapter["sync_first_token"] / full["sync_first_token"], "ratio"),
            ("lora/vllm_generate_ratio", by_adapter["generate"] / full["generate"], "ratio"),
            ("lora/vllm_sync_s/lora", by_adapter["sync"], "s"),
            ("lora/vllm_sync_s/full", full["sync"], "s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batch, 2 syncs: a smoke run")
    parser.add_argument("--sync", choices=("lora", "full"), help=argparse.SUPPRESS)  # the child
    parser.add_argument("--syncs", type=int, default=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sync:
        print(json.dumps(sync_seconds(args.sync, args.syncs)))
        return
    figures = learner_figures(args.quick) + sync_figures(args.quick)
    for metric, value, unit in figures:
        record(BENCH, metric, value, unit)
    rows = [(metric, f"{value:.4g}", unit) for metric, value, unit in figures]
    print(table(rows, ("metric", "value", "unit")))


if __name__ == "__main__":
    main()
