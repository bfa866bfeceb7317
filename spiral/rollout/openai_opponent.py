"""An opponent behind an OpenAI-compatible chat-completions endpoint: ``openai:MODEL``.

Any server that speaks ``POST {base}/chat/completions`` works: a local vLLM server
(``vllm serve MODEL``; ``OPENAI_BASE_URL=http://localhost:8000/v1``), OpenRouter (SPIRAL's Gemini
opponent: ``OPENAI_BASE_URL=https://openrouter.ai/api/v1 ... openai:google/gemini-2.0-flash-001``)
or OpenAI itself. The base URL comes from ``OPENAI_BASE_URL`` (default
``https://api.openai.com/v1``), the key from ``OPENAI_API_KEY`` (sent as a bearer token; a local
server may need none). Plain HTTP with ``urllib``: no client library.

Each move sends the opponent's own observation as one user message, exactly the prompt the
policy sees, and returns the reply text; the game's ``parse_action`` reads its ``\\boxed{}``
move, so an unparseable reply is an invalid move like the policy's. Rate limits and server
errors (429, 5xx) and dropped connections are retried with exponential back-off; anything else,
or running out of retries, raises `OpenAIError` naming the URL and the status, never the key.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from typing import Any

from envs.core import Game

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIError(RuntimeError):
    """The endpoint could not be reached or gave no usable answer."""


class OpenAIOpponent:
    """A hosted or served model as a fixed opponent; one request per move."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 temperature: float = 1.0, max_tokens: int | None = None,
                 timeout_s: float = 120.0, retries: int = 4, backoff_s: float = 1.0):
        if not model:
            raise ValueError("openai:MODEL needs a model name, e.g. openai:gpt-4o-mini")
        self.name = f"openai:{model}"
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
        self.base_url = self.base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not self.api_key and self.base_url == DEFAULT_BASE_URL:
            raise ValueError(
                f"{self.name}: set OPENAI_API_KEY for {DEFAULT_BASE_URL}, or OPENAI_BASE_URL "
                "for another OpenAI-compatible server (vLLM, OpenRouter)"
            )
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def for_game(self, game_id: str) -> OpenAIOpponent:
        return self

    def act(self, game: Game, rng: random.Random) -> str:
        """The model's reply to the current player's observation."""
        messages = [{"role": "user", "content": game.observe(game.current_player())}]
        return self.complete(messages, seed=rng.randrange(2**31))

    def complete(self, messages: list[dict[str, str]], seed: int | None = None) -> str:
        """The first choice's message text for ``messages`` ('' when it has none)."""
        body: dict[str, Any] = {"model": self.model, "messages": messages,
                                "temperature": self.temperature}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if seed is not None:
            body["seed"] = seed
        reply = self._post("/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise OpenAIError(
                f"{self.base_url}/chat/completions: no choices[0].message.content in the reply "
                f"{json.dumps(reply)[:300]}"
            ) from err
        return content if isinstance(content, str) else ""

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        url = self.base_url + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        attempt = 0
        while True:
            try:
                return _send(url, data, headers, self.timeout_s)
            except _Retryable as err:
                if attempt == self.retries:
                    raise OpenAIError(f"{err} (gave up after {attempt + 1} attempts)") from err
                self._wait(attempt, err.retry_after)
                attempt += 1

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * 2**attempt
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), 60.0))
        time.sleep(delay)


class _Retryable(Exception):
    """A failure worth another try: rate limit, server error, dropped connection."""

    def __init__(self, message: str, retry_after: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _send(url: str, data: bytes, headers: dict[str, str], timeout_s: float) -> Any:
    """One POST; returns the decoded JSON reply."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        message = f"{url} answered HTTP {err.code}: {err.read()[:300].decode('utf-8', 'replace')}"
        if err.code in RETRY_STATUS:
            raise _Retryable(message, err.headers.get("Retry-After")) from err
        raise OpenAIError(message) from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise _Retryable(f"cannot reach {url}: {err}") from err
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OpenAIError(f"{url} answered with invalid JSON: {err}") from err
