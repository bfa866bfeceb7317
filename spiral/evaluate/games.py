"""Game evaluation: the policy against fixed opponents, and Kuhn Poker's exact exploitability.

Win / draw / loss / invalid rates come with 95% Wilson intervals; the policy takes seat 0 in
even-numbered matches and seat 1 in odd ones. Kuhn exploitability is exact: the policy's action
probabilities at all 12 information states are read from the model (``logprob``: the
probability of each move's canonical answer, renormalised over the legal moves; ``sample``:
frequencies of parsed moves among sampled answers, for models that reason before answering),
then open_spiel computes the best response.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from envs.exploitability import kuhn_exploitability
from envs.kuhn import INFOSTATES, infostate_game
from envs.opponents import make_opponent
from spiral.config import EnvConfig
from spiral.models.logprobs import response_logprobs
from spiral.records import Episode, Sample
from spiral.rollout.actor import Actor
from spiral.rollout.opponents import named_opponent
from spiral.rollout.selfplay import Prompter, play

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


def kuhn_policy_logprob(model, tokenizer, prompter: Prompter, answer_format,
                        temperature: float = 1.0) -> dict[str, dict[str, float]]:
    """Action probabilities at the 12 information states from answer log-probs (exact).

    ``answer_format(move, game)`` is the answer text whose probability stands for ``move``.
    """
    samples, index = [], []
    for key in INFOSTATES:
        game = infostate_game(key)
        prompt = prompter(game.observe(game.current_player()))
        for move in game.legal_actions():
            answer = tokenizer.encode(answer_format(move, game), add_special_tokens=False)
            samples.append(Sample(prompt, answer + [tokenizer.eos_token_id], 0.0, []))
            index.append((key, move))
    with torch.no_grad():
        logp, _ = response_logprobs(model.eval(), samples, tokenizer.pad_token_id, temperature)
    totals = logp.sum(dim=1).tolist()
    policy: dict[str, dict[str, float]] = {}
    for (key, move), total in zip(index, totals):
        policy.setdefault(key, {})[move] = total
    return {key: _softmax(scores) for key, scores in policy.items()}


def kuhn_policy_sampled(actor: Actor, prompter: Prompter, samples: int, seed: int,
                        temperature: float | None = None) -> dict[str, dict[str, float]]:
    """Action frequencies at the 12 information states from ``samples`` answers each."""
    games = [infostate_game(key) for key in INFOSTATES]
    prompts = [prompter(g.observe(g.current_player())) for g in games for _ in range(samples)]
    generations = actor.generate(prompts, seed=seed, temperature=temperature)
    policy = {}
    for i, (key, game) in enumerate(zip(INFOSTATES, games)):
        chunk = generations[i * samples : (i + 1) * samples]
        counts = Counter(game.parse_action(g.text) for g in chunk if g.finished)
        legal = game.legal_actions()
        valid = sum(counts[m] for m in legal)
        policy[key] = {m: counts[m] / valid if valid else 1 / len(legal) for m in legal}
    return policy


def kuhn_metrics(policy: dict[str, dict[str, float]]) -> dict[str, float]:
    """Exploitability plus a few readable policy probabilities."""
    out = {"eval/KuhnPoker-v1/exploitability": kuhn_exploitability(policy)}
    for key, move in (("J", "[bet]"), ("K", "[bet]"), ("Jb", "[call]"), ("Qb", "[call]"),
                      ("Kb", "[call]"), ("Qpb", "[call]")):
        out[f"eval/KuhnPoker-v1/policy/{key}/{move.strip('[]')}"] = policy[key][move]
    return out


def _softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    weights = {m: math.exp(s - top) for m, s in scores.items()}
    total = sum(weights.values())
    return {m: w / total for m, w in weights.items()}
