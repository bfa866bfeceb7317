"""Prompts: an observation becomes token ids through the tokenizer's own chat template.

No hand-written templates: ``tokenizer.apply_chat_template`` renders the model's format (its
system prompt, Qwen3's ``enable_thinking``), so any chat model plays the games as it was tuned.

The instruction around the observation is a choice (``env.instruction``):

- ``brief``: the observation as the game writes it, ending in "Think briefly if you need to,
  then give your final move as \\boxed{MOVE}." (what the embedded model was pretrained on);
- ``reason``: SPIRAL's framing, in our words: the game is a two-player zero-sum game, the
  observation follows, and the model is asked to reason step by step before its boxed move.
  The paper's transfer to math rests on that reasoning, so ``+exp=kuhn_paper`` uses it.
"""

from __future__ import annotations

from envs.core import ANSWER_FORMAT

INSTRUCTIONS = ("brief", "reason")
REASON_INTRO = "You are playing a two-player zero-sum game. Play valid moves and try to win."
REASON_FORMAT = r"Reason step by step, then put your final move within \boxed{}."


def instructed(observation: str, instruction: str = "brief") -> str:
    """The user message for ``observation`` under ``instruction`` (one of `INSTRUCTIONS`)."""
    if instruction == "brief":
        return observation
    if instruction != "reason":
        raise ValueError(f"instruction must be one of {INSTRUCTIONS}, got {instruction!r}")
    body = observation.replace(ANSWER_FORMAT, "").rstrip()
    return f"{REASON_INTRO}\nObservation:\n{body}\n{REASON_FORMAT}"


class Prompter:
    """Observation text -> prompt token ids through the chat template (memoised)."""

    def __init__(self, tokenizer, enable_thinking: bool | None = None, cache_size: int = 50_000,
                 instruction: str = "brief"):
        instructed("", instruction)  # refuse an unknown instruction now, not at the first turn
        self.tokenizer = tokenizer
        self.extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        self.instruction = instruction
        self.cache: dict[str, list[int]] = {}
        self.cache_size = cache_size

    def __call__(self, observation: str) -> list[int]:
        ids = self.cache.get(observation)
        if ids is None:
            content = instructed(observation, self.instruction)
            messages = [{"role": "user", "content": content}]
            ids = list(self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False, **self.extra
            ))
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[observation] = ids
        return ids
