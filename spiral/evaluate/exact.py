"""Exact game metrics of a model: read its policy at every decision point a game registers,
then let the game compute the metrics (``envs.ExactMetrics``).

Training's online evaluation and ``python -m spiral.evaluate`` both call ``exact_metrics``, so
every game that registers exact metrics (Kuhn Poker's exploitability, TicTacToe's loss rate
against perfect play, a user's game) is reported the same way in both. Two ways to read a
policy at a position:

- ``logprob``: the probability of each legal move's canonical answer (``GameSpec.answer``,
  plus EOS), renormalised over the legal moves; the prompt runs once per position and its KV
  cache is reused for each answer. Exact, for models that answer in the canonical form (the
  embedded model);
- ``sample``: frequencies of parsed legal moves among ``samples`` sampled answers (uniform when
  none parses), for models that reason before answering.
"""

from __future__ import annotations

from collections import Counter

import torch

import envs
from envs.core import Game, Policy
from spiral.models.logprobs import continuation_logprobs
from spiral.rollout.actor import Actor
from spiral.rollout.selfplay import Prompter


def policy_logprob(model, tokenizer, prompter: Prompter, positions: dict[str, Game], answer,
                   temperature: float = 1.0, chunk: int = 256) -> tuple[Policy, float]:
    """Move probabilities from the log-probs of each legal move's canonical answer (+ EOS),
    and the coverage: the mean total probability of those answers over the positions.

    ``answer(move, game)`` is the answer text whose probability stands for ``move``."""
    keys, games = list(positions), list(positions.values())
    prompts = [prompter(g.observe(g.current_player())) for g in games]
    encoded: dict[str, list[int]] = {}

    def answer_ids(move: str, game: Game) -> list[int]:
        text = answer(move, game)
        if text not in encoded:
            encoded[text] = tokenizer.encode(text, add_special_tokens=False)
        return encoded[text] + [tokenizer.eos_token_id]

    continuations = [[answer_ids(m, g) for m in g.legal_actions()] for g in games]
    greedy = temperature <= 0  # the most likely answer, with probability 1
    totals = continuation_logprobs(model, prompts, continuations, tokenizer.pad_token_id,
                                   1.0 if greedy else temperature, chunk)
    policy, mass = {}, 0.0
    for key, game, scores in zip(keys, games, totals):
        scores = torch.tensor(scores, dtype=torch.float64)
        probs = torch.softmax(scores, dim=0)
        if greedy:
            probs = torch.nn.functional.one_hot(scores.argmax(), len(scores)).double()
        policy[key] = dict(zip(game.legal_actions(), probs.tolist()))
        mass += float(torch.logsumexp(scores, dim=0).exp())
    return policy, mass / len(keys)


def policy_sampled(actor: Actor, prompter: Prompter, positions: dict[str, Game], samples: int,
                   seed: int, temperature: float | None = None) -> tuple[Policy, float]:
    """Frequencies of parsed legal moves among ``samples`` answers per position (uniform where
    none parses), and the coverage: the share of answers that were legal moves."""
    keys, games = list(positions), list(positions.values())
    prompts = [prompter(g.observe(g.current_player())) for g in games for _ in range(samples)]
    generations = actor.generate(prompts, seed=seed, temperature=temperature)
    policy, parsed = {}, 0
    for i, (key, game) in enumerate(zip(keys, games)):
        chunk = generations[i * samples : (i + 1) * samples]
        counts = Counter(game.parse_action(g.text) for g in chunk if g.finished)
        legal = game.legal_actions()
        valid = sum(counts[m] for m in legal)
        policy[key] = {m: counts[m] / valid if valid else 1 / len(legal) for m in legal}
        parsed += valid
    return policy, parsed / (len(keys) * samples)


def exact_metrics(game_ids, *, mode: str, model, tokenizer, actor: Actor, prompter: Prompter,
                  samples: int, seed: int, temperature: float = 1.0,
                  game_kwargs: dict | None = None) -> tuple[dict[str, float], dict[str, Policy]]:
    """``eval/<game>/<name>`` for every game in ``game_ids`` that registers exact metrics,
    and the policies they were computed from.

    ``eval/<game>/exact_coverage`` says how much of the model's behaviour the policy reflects:
    the probability it gives the canonical answers (``logprob``) or the share of its sampled
    answers that were legal moves (``sample``). Near 0 the metrics describe answers the model
    does not give (a reasoning model read with ``logprob``): use ``exact_policy=sample``.
    ``temperature=0`` reads the greedy policy. ``game_kwargs`` (per game id) position the
    matches as training plays them, e.g. Kuhn Poker's first hand of a 5-hand match."""
    metrics: dict[str, float] = {}
    policies: dict[str, Policy] = {}
    for game_id in game_ids:
        spec = envs.spec(game_id)
        exact = spec.exact_metrics()
        if exact is None:
            continue
        positions = exact.positions(**(game_kwargs or {}).get(game_id, {}))
        if mode == "sample":
            policy, coverage = policy_sampled(actor, prompter, positions, samples, seed,
                                              temperature)
        else:
            policy, coverage = policy_logprob(model, tokenizer, prompter, positions,
                                              spec.answer_text, temperature)
        metrics |= {f"eval/{game_id}/{k}": v for k, v in exact.compute(policy).items()}
        metrics[f"eval/{game_id}/exact_coverage"] = coverage
        policies[game_id] = policy
    return metrics, policies


def headlines(game_ids) -> dict[str, str]:
    """Metric key -> progress-bar label of each game's headline exact metric."""
    out = {}
    for game_id in game_ids:
        exact = envs.spec(game_id).exact_metrics()
        if exact is not None:
            out[f"eval/{game_id}/{exact.headline}"] = exact.label
    return out
