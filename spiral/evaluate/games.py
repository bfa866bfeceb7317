"""Game evaluation: the policy against fixed opponents.

Win / draw / loss / invalid rates come with 95% Wilson intervals; the policy takes seat 0 in
even-numbered matches and seat 1 in odd ones. Exact metrics (no sampling noise) are in
``spiral.evaluate.exact``.
"""

from __future__ import annotations

import math
from collections import Counter

from envs.opponents import make_opponent
from spiral.config import EnvConfig
from spiral.models.prompting import Prompter
from spiral.records import Episode
from spiral.rollout.actor import Actor
from spiral.rollout.opponents import named_opponent
from spiral.rollout.selfplay import play

OUTCOMES = ("win", "draw", "loss", "invalid")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial rate."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def outcome_rates(episodes: list[Episode], prefix: str, with_ci: bool = True) -> dict[str, float]:
    """Rates of each outcome for the policy's seats, keyed ``<prefix>/<outcome>_rate``."""
    counts = Counter(ep.outcome(p) for ep in episodes for p in ep.model_players)
    n = sum(counts.values())
    out: dict[str, float] = {}
    for outcome in OUTCOMES:
        out[f"{prefix}/{outcome}_rate"] = counts[outcome] / n if n else 0.0
        if with_ci:
            low, high = wilson_interval(counts[outcome], n)
            out[f"{prefix}/{outcome}_rate_ci_low"] = low
            out[f"{prefix}/{outcome}_rate_ci_high"] = high
    out[f"{prefix}/n"] = n
    return out


def evaluate_opponents(actor: Actor, prompter: Prompter, env: EnvConfig, games: tuple[str, ...],
                       opponents: tuple[str, ...], n: int, seed: int,
                       temperature: float | None = None) -> dict[str, float]:
    """``eval/<game>/<opponent>/<outcome>_rate`` for every (game, opponent) pair."""
    metrics: dict[str, float] = {}
    for game_id in games:
        for name in opponents:
            if not supported(name, game_id):
                continue
            opponent = named_opponent(name)
            episodes = play(actor, prompter, env, n, seed, opponent=opponent, games=(game_id,),
                            temperature=temperature)
            metrics |= outcome_rates(episodes, f"eval/{game_id}/{name}")
    return metrics


def supported(name: str, game_id: str) -> bool:
    """Whether fixed opponent ``name`` exists for ``game_id`` (e.g. no 'optimal' for Leduc)."""
    if name.startswith(("checkpoint:", "openai:")):
        return True
    try:
        make_opponent(name, game_id)
    except ValueError:
        return False
    return True
