"""Self-play rollout: many matches at once, one batched generation call per tick.

Each tick gathers every live match whose mover is played by the policy, renders that player's
observation through the tokenizer's chat template, generates all responses in one call, parses
each with the game's ``parse_action`` and steps the game. The same policy plays both seats in
self-play; with a fixed opponent the policy takes seat ``i % 2`` of match ``i`` and the opponent
moves inline. Penalties live here, not in the games:

- an answer that does not parse to a legal move, or that is cut at the length limit, is an
  invalid move: the match ends, the offender gets ``invalid_penalty`` and the other player
  ``invalid_other`` (SPIRAL: -1.5 / +0.5). With ``env.parse_cut`` a cut answer is parsed as
  it stands, as SPIRAL does (its ``\boxed{}`` may already be written);
- a match still running after ``max_turns`` moves ends as a draw (returns 0).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import envs
from envs.core import Game
from spiral.config import EnvConfig
from spiral.models.prompting import Prompter
from spiral.records import Episode, Turn
from spiral.rollout.actor import Actor, Generation


@dataclass
class Match:
    game: Game
    episode: Episode
    max_turns: int | None
    done: bool = False
    pending: list[tuple[int, str]] = field(default_factory=list)

    def finish(self, returns: tuple[float, ...], truncated: bool = False) -> None:
        self.episode.returns = tuple(float(r) for r in returns)
        self.episode.truncated = truncated
        self.done = True


@dataclass
class RolloutStats:
    seconds: float = 0.0
    generate_seconds: float = 0.0
    generations: int = 0


def new_matches(env: EnvConfig, n: int, opponent: str, rng: random.Random,
                games: tuple[str, ...] | None = None) -> list[Match]:
    """``n`` freshly reset matches; game ids drawn uniformly from ``games``."""
    matches = []
    for i in range(n):
        game_id = rng.choice(games or env.games)
        game = envs.make(game_id, **env.game_kwargs.get(game_id, {}))
        game_seed = rng.randrange(2**31)
        game.reset(seed=game_seed)
        seats = (0, 1) if opponent == "self" else (i % 2,)
        max_turns = env.max_turns or envs.spec(game_id).max_turns
        episode = Episode(game_id, game_seed, seats, opponent=opponent)
        matches.append(Match(game, episode, max_turns))
    return matches


def play(actor: Actor, prompter: Prompter, env: EnvConfig, n: int, seed: int, *,
         opponent=None, games: tuple[str, ...] | None = None, temperature: float | None = None,
         stats: RolloutStats | None = None, shard: tuple[int, int] = (0, 1)) -> list[Episode]:
    """Play ``n`` matches to the end; returns one Episode per match, in match order.

    ``shard=(index, count)``: deal the ``n`` matches as one process would and play only the
    ``index``-th of ``count`` contiguous slices (a rank's share of a data-parallel step), with a
    sampling stream of its own so that the ranks' responses are independent.

    ``opponent``: None for self-play, else an object with ``name`` and ``for_game(game_id)``
    giving the agent (``act(game, rng)``) for a game (see ``spiral.rollout.opponents``).
    """
    started = time.perf_counter()
    rng = random.Random(f"rollout/{seed}")
    name = "self" if opponent is None else opponent.name
    matches = new_matches(env, n, name, rng, games)
    index, count = shard
    if count > 1:
        matches = matches[n * index // count : n * (index + 1) // count]
        rng = random.Random(f"rollout/{seed}/shard{index}")
    while True:
        for match in matches:
            _advance_fixed(match, opponent, rng, env)
        live = [m for m in matches if not m.done]
        if not live:
            break
        prompts = []
        for m in live:
            player = m.game.current_player()
            observation = m.game.observe(player)
            m.pending = [(player, observation)]
            prompts.append(prompter(observation))
        gen_started = time.perf_counter()
        generations = actor.generate(prompts, seed=rng.randrange(2**31),
                                     temperature=temperature)
        if stats is not None:
            stats.generate_seconds += time.perf_counter() - gen_started
            stats.generations += len(prompts)
        for m, prompt, gen in zip(live, prompts, generations):
            _apply(m, prompt, gen, env)
    if stats is not None:
        stats.seconds += time.perf_counter() - started
    return [m.episode for m in matches]


def _advance_fixed(match: Match, opponent, rng: random.Random, env: EnvConfig) -> None:
    """Let the fixed opponent move until the policy is to move or the match ends."""
    while not match.done:
        if match.game.is_terminal():
            match.finish(match.game.returns())
        elif match.max_turns is not None and len(match.episode.moves) >= match.max_turns:
            match.finish((0.0,) * match.game.num_players, truncated=True)
        elif match.game.current_player() in match.episode.model_players:
            return
        else:
            player = match.game.current_player()
            agent = opponent.for_game(match.episode.game_id)
            move = match.game.parse_action(agent.act(match.game, rng))
            if move is None:  # a fixed opponent's bad move is penalised like the policy's
                _invalid(match, player, env)
                return
            match.game.step(move)
            match.episode.moves.append((player, move))


def _apply(match: Match, prompt: list[int], gen: Generation, env: EnvConfig) -> None:
    player, observation = match.pending[0]
    move = match.game.parse_action(gen.text) if gen.finished or env.parse_cut else None
    match.episode.turns.append(Turn(
        game_id=match.episode.game_id, player=player, turn=len(match.episode.moves),
        prompt_ids=prompt, response_ids=gen.token_ids, logprobs=gen.logprobs,
        text=gen.text, action=move, observation=observation, cut=not gen.finished,
    ))
    if move is None:
        _invalid(match, player, env)
        return
    match.game.step(move)
    match.episode.moves.append((player, move))


def _invalid(match: Match, player: int, env: EnvConfig) -> None:
    returns = [env.invalid_other] * match.game.num_players
    returns[player] = env.invalid_penalty
    match.episode.invalid_player = player
    match.finish(tuple(returns))
