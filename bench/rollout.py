"""Rollout efficiency: self-play generation against a bare batched decode loop.

    python bench/rollout.py [--quick]

- rollout_efficiency: the time a bare KV-cached decode loop (prefill + one cached forward per
  token, greedy, no env, no parsing) needs for the same prompts and the same number of new
  tokens per batch, divided by the time the self-play rollout took. Goal >= 0.9.
- env_share: share of rollout time outside generation (env stepping, prompts, parsing).
  Goal <= 2%.
- turn_scaling: how the rollout cost *per turn* grows when games get longer (TicTacToe cut at
  2 and at 8 moves), as the factor per doubling of the turns actually played. Goal <= 1.2x per
  doubling (prefix reuse), rather than growing with the history that every turn re-encodes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from spiral.config import ActorConfig, EnvConfig, ModelConfig
from spiral.models.loading import load_model, load_tokenizer, resolve_path
from spiral.models.prompting import Prompter
from spiral.rollout.actor import HFActor
from spiral.rollout.selfplay import RolloutStats, play

sys.path.append(str(Path(__file__).parent))
from common import record, table  # noqa: E402


@torch.no_grad()
def bare_decode(model, prompts: list[list[int]], new_tokens: int, pad_id: int) -> float:
    """Seconds for prefill + ``new_tokens`` cached greedy steps on left-padded prompts."""
    from transformers import DynamicCache

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    started = time.perf_counter()
    cache, positions = DynamicCache(), (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   past_key_values=cache, logits_to_keep=1).logits[:, -1]
    position = positions[:, -1:] + 1
    for _ in range(new_tokens - 1):
        token = logits.argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = model(input_ids=token, attention_mask=mask, position_ids=position,
                       past_key_values=cache).logits[:, -1]
        position = position + 1
    return time.perf_counter() - started


def selfplay(actor, prompter, games: int, max_turns: int | None, seed: int,
             game: str = "KuhnPoker-v1"):
    env = EnvConfig(games=(game,), max_turns=max_turns)
    stats = RolloutStats()
    episodes = play(actor, prompter, env, games, seed=seed, stats=stats)
    return episodes, stats


def efficiency(model, actor, prompter, tokenizer, games: int) -> tuple[float, float]:
    episodes, stats = selfplay(actor, prompter, games, None, seed=1)
    ticks = defaultdict(list)  # Kuhn matches advance in lockstep: turn index = generation call
    for ep in episodes:
        for turn in ep.turns:
            ticks[turn.turn].append(turn)
    bare = sum(bare_decode(model, [t.prompt_ids for t in turns],
                           max(len(t.response_ids) for t in turns), tokenizer.pad_token_id)
               for turns in ticks.values())
    env_share = (stats.seconds - stats.generate_seconds) / stats.seconds
    return bare / stats.seconds, env_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    games = 16 if args.quick else 64
    path = resolve_path("embedded")
    tokenizer = load_tokenizer(path)
    model = load_model(path, ModelConfig(), torch.device("cpu")).eval()
    actor, prompter = HFActor(model, tokenizer, ActorConfig()), Prompter(tokenizer)
    selfplay(actor, prompter, 8, None, seed=0)  # warm-up
    ratio, env_share = efficiency(model, actor, prompter, tokenizer, games)
    costs, turns = [], []
    for max_turns in (2, 8):
        episodes, stats = selfplay(actor, prompter, games, max_turns, 2, "TicTacToe-v1")
        played = sum(len(ep.turns) for ep in episodes)
        costs.append(stats.seconds / played)
        turns.append(played / games)
    doublings = math.log2(turns[1] / turns[0])
    scaling = (costs[1] / costs[0]) ** (1 / doublings)
    rows = [("rollout_efficiency", f"{ratio:.2f}", "bare loop time / self-play time"),
            ("env_share", f"{env_share:.3f}", "rollout time outside generation"),
            ("turn_scaling", f"{scaling:.2f}",
             f"cost per turn per doubling of turns ({turns[0]:.1f} -> {turns[1]:.1f} turns)")]
    record("rollout", "rollout_efficiency", ratio, "ratio")
    record("rollout", "env_share", env_share, "fraction")
    record("rollout", "turn_scaling", scaling, "ratio per doubling")
    print(table(rows, ("metric", "value", "meaning")))


if __name__ == "__main__":
    main()
