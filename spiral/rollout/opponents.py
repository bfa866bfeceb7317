"""Opponents the policy trains or is evaluated against, across games.

``named_opponent(name)`` returns an object with ``name`` and ``for_game(game_id)``, which gives
the agent (with ``act(game, rng)``) for that game. ``random`` and ``optimal`` come from
``envs.opponents`` (one per game id, made on first use); ``checkpoint:PATH`` is a frozen model
(a LoRA checkpoint: an adapter, over the policy's own base when they share it) answering one
prompt at a time through the same chat template and parsing as the policy;
``openai:MODEL`` asks an OpenAI-compatible chat endpoint (``spiral.rollout.openai_opponent``).
"""

from __future__ import annotations

import random

from envs.core import Game
from envs.opponents import make_opponent
from spiral.config import ActorConfig, ModelConfig


class PerGameOpponent:
    """A fixed agent by name, dispatched on the match's game id."""

    def __init__(self, name: str):
        self.name = name
        self._by_game: dict[str, object] = {}

    def for_game(self, game_id: str):
        if game_id not in self._by_game:
            self._by_game[game_id] = make_opponent(self.name, game_id)
        return self._by_game[game_id]


class ModelOpponent:
    """A frozen checkpoint as an opponent (``checkpoint:PATH``)."""

    def __init__(self, path: str, device, temperature: float = 1.0, max_new_tokens: int = 24,
                 policy=None):
        from spiral.models import lora
        from spiral.models.loading import load_model, load_tokenizer
        from spiral.models.prompting import Prompter
        from spiral.rollout.actor import HFActor

        self.name = f"checkpoint:{path}"
        tokenizer = load_tokenizer(path)
        if (policy is not None and lora.is_adapter(policy) and lora.is_adapter_folder(path)
                and lora.same_base(policy, path)):
            model = lora.adapter_over(policy, path)  # the policy's base, not a second copy
        else:
            model = load_model(path, ModelConfig(), device)
        cfg = ActorConfig(temperature=temperature, max_new_tokens=max_new_tokens)
        self.actor = HFActor(model, tokenizer, cfg)
        self.prompter = Prompter(tokenizer)

    def for_game(self, game_id: str):
        return self

    def act(self, game: Game, rng: random.Random) -> str:
        prompt = self.prompter(game.observe(game.current_player()))
        generation = self.actor.generate([prompt], seed=rng.randrange(2**31))[0]
        return generation.text if generation.finished else ""


def named_opponent(name: str, device=None, max_new_tokens: int = 24, policy=None):
    """Build the opponent called ``name``; None for self-play. A LoRA checkpoint over the base
    that ``policy`` (a PEFT model) trains loads as an adapter over that same base."""
    if name == "self":
        return None
    if name.startswith("checkpoint:"):
        path = name.split(":", 1)[1]
        return ModelOpponent(path, device or "cpu", max_new_tokens=max_new_tokens, policy=policy)
    if name.startswith("openai:"):
        from spiral.rollout.openai_opponent import OpenAIOpponent

        return OpenAIOpponent(name.split(":", 1)[1])
    return PerGameOpponent(name)
