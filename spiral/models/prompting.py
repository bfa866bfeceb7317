"""Prompts: an observation becomes token ids through the tokenizer's own chat template.

No hand-written templates: ``tokenizer.apply_chat_template`` renders the model's format (its
system prompt, Qwen3's ``enable_thinking``), so any chat model plays the games as it was tuned.
"""

from __future__ import annotations


class Prompter:
    """Observation text -> prompt token ids through the chat template (memoised)."""

    def __init__(self, tokenizer, enable_thinking: bool | None = None, cache_size: int = 50_000):
        self.tokenizer = tokenizer
        self.extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        self.cache: dict[str, list[int]] = {}
        self.cache_size = cache_size

    def __call__(self, observation: str) -> list[int]:
        ids = self.cache.get(observation)
        if ids is None:
            messages = [{"role": "user", "content": observation}]
            ids = list(self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False, **self.extra
            ))
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[observation] = ids
        return ids
