"""Learner efficiency: achieved model FLOP/s of an update against bare matmul FLOP/s.

    python bench/learner.py [--quick]

- learner_efficiency: model FLOPs of one PPO update (forward + backward = 6 x params x tokens
  for the trained pass, plus 2 x params x tokens for an old log-prob pass when the update
  needs one: not with one epoch of one minibatch, the default; on the real, unpadded tokens;
  the LM head counts only at response tokens, where the learner applies it; attention scores
  are left out) per second, divided by the FLOP/s of a bare 1024 x 1024
  matmul measured in the same run. Goal >= 0.3 on CPU for the embedded model.
- padding_waste: share of the padded micro-batch tokens that are padding. Goal <= 5%.
- shared_prefix_speedup: time of the same update with the shared-prefix forward switched off
  (``spiral.models.prefix.MIN_SHARED_PREFIX`` out of reach) over its time with it on, and
  shared_prefix_share, the share of prompt tokens that the prefix saves.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

from spiral.config import ActorConfig, AlgoConfig, EnvConfig, LearnerConfig, ModelConfig
from spiral.learning.advantages import RoleBaselines, role_conditioned_advantages
from spiral.learning.learner import make_learner
from spiral.learning.ppo import micro_batches, old_logprobs_in_same_pass
from spiral.models import prefix
from spiral.models.loading import load_model, load_tokenizer, resolve_path
from spiral.models.prefix import shared_prefix_length
from spiral.models.prompting import Prompter
from spiral.rollout.actor import HFActor
from spiral.rollout.selfplay import play

sys.path.append(str(Path(__file__).parent))
from common import record, table  # noqa: E402


def matmul_flops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def samples_from_selfplay(games: int, games_ids: tuple[str, ...]):
    path = resolve_path("embedded")
    tokenizer = load_tokenizer(path)
    model = load_model(path, ModelConfig(), torch.device("cpu"))
    actor = HFActor(model, tokenizer, ActorConfig())
    episodes = play(actor, Prompter(tokenizer), EnvConfig(games=games_ids), games, seed=0)
    samples = role_conditioned_advantages(episodes, RoleBaselines(), drop_zero=False)
    return model, tokenizer, samples


def timed_update(learner, samples) -> float:
    started = time.perf_counter()
    learner.update(samples)
    return time.perf_counter() - started


@contextlib.contextmanager
def patched_min_prefix(tokens: int):
    """Switch the shared-prefix forward off (a threshold no prefix reaches) for a comparison."""
    before = prefix.MIN_SHARED_PREFIX
    prefix.MIN_SHARED_PREFIX = tokens
    try:
        yield
    finally:
        prefix.MIN_SHARED_PREFIX = before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    games = 32 if args.quick else 64
    model, tokenizer, samples = samples_from_selfplay(games, ("KuhnPoker-v1", "TicTacToe-v1"))
    cfg = LearnerConfig(lr=1e-4)
    learner = make_learner(model, cfg, AlgoConfig(), pad_id=tokenizer.pad_token_id,
                           temperature=1.0, norm_tokens=24)
    learner.update(samples[:8])  # warm-up
    seconds = timed_update(learner, samples)
    with patched_min_prefix(10**9):
        plain_seconds = timed_update(learner, samples)
    head = model.get_output_embeddings().weight.numel()
    body = sum(p.numel() for p in model.get_decoder().parameters()) - model.get_input_embeddings(
    ).weight.numel()
    tokens = sum(s.length for s in samples)
    responses = sum(len(s.response_ids) for s in samples)
    passes = 6 if old_logprobs_in_same_pass(cfg.epochs, cfg.minibatches, "recompute") else 8
    achieved = passes * (body * tokens + head * responses) / seconds
    peak = matmul_flops()
    groups = micro_batches(samples, cfg.micro_batch_tokens)
    padded = sum(len(g) * max(s.length for s in g) for g in groups)
    waste = 1 - tokens / padded
    saved = sum(shared_prefix_length([s.prompt_ids for s in g]) * len(g) for g in groups)
    prompts = sum(len(s.prompt_ids) for s in samples)
    record("learner", "learner_efficiency", achieved / peak, "ratio")
    record("learner", "padding_waste", waste, "fraction")
    record("learner", "shared_prefix_speedup", plain_seconds / seconds, "ratio")
    record("learner", "shared_prefix_share", saved / prompts, "fraction")
    rows = [("learner_efficiency", f"{achieved / peak:.2f}",
             f"{achieved / 1e9:.1f} of {peak / 1e9:.1f} GFLOP/s ({len(samples)} samples)"),
            ("padding_waste", f"{waste:.3f}", f"{padded - tokens} of {padded} tokens"),
            ("shared_prefix_speedup", f"{plain_seconds / seconds:.2f}",
             f"update {plain_seconds:.2f} s without the shared prefix, {seconds:.2f} s with it"),
            ("shared_prefix_share", f"{saved / prompts:.2f}",
             f"{saved} of {prompts} prompt tokens run once per micro-batch instead")]
    print(table(rows, ("metric", "value", "detail")))


if __name__ == "__main__":
    main()
