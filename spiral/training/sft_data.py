"""SFT data: (prompt ids, target response ids) examples from three sources (``data.kind``).

- ``chat``: a JSONL file, one ``{"messages": [{"role": ..., "content": ...}, ...]}`` per line.
  The last message is the assistant's target; the messages before it (system, user, earlier
  assistant turns) are the prompt, rendered by the tokenizer's chat template with the
  generation prompt, as the actor sees prompts. A malformed line is refused naming the file and
  line (`ChatDataError`); blank lines are skipped.
- ``task``: generated solutions: ``task.answer_text(problem)`` (the canonical correct answer,
  e.g. ``\\boxed{(A, W)}``) for ``data.examples`` problems of the task's train split.
- ``games``: expert trajectories (SPIRAL's "SFT on expert play" baseline): matches where the
  game's registered ``optimal`` player takes both seats (or one seat, against ``random``); each
  of the optimal player's moves is a target, written as the game's canonical answer
  (``envs.GameSpec.answer_text``: ``\\boxed{move}`` unless the game registers its own), for the
  observation that player saw at that turn.

Every target ends in EOS, as a finished generation does. Everything is deterministic in the
config's seed, so a resumed run rebuilds the same data.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import envs
import tasks
from envs.opponents import make_opponent
from spiral.errors import UserError
from spiral.learning.sft import Example
from spiral.models.prompting import Prompter
from spiral.rollout.tasks import draw_problems
from spiral.sft_config import SFTConfig

Conversation = tuple[list[dict[str, str]], str]  # (prompt messages, target assistant text)


class ChatDataError(UserError):
    """A chat JSONL file that cannot be read; the message names the file and line."""


def read_chat(path: str | Path, limit: int | None = None) -> list[Conversation]:
    """The (prompt messages, target) of each line of a chat JSONL file, at most ``limit``."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ChatDataError(f"{path}: cannot be read ({err.strerror or err})") from err
    out: list[Conversation] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if limit is not None and len(out) >= limit:
            break
        if line.strip():
            out.append(_conversation(line, f"{path}:{number}"))
    if not out:
        raise ChatDataError(f"{path}: no examples (expected one JSON object per line)")
    return out


def _conversation(line: bytes, where: str) -> Conversation:
    try:
        row = json.loads(line)
    except UnicodeDecodeError as err:
        raise ChatDataError(f"{where}: not UTF-8 text") from err
    except ValueError as err:
        raise ChatDataError(f"{where}: not valid JSON ({getattr(err, 'msg', err)})") from err
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ChatDataError(f"{where}: expected an object with a non-empty 'messages' list")
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise ChatDataError(f"{where}: messages[{i}] needs a string 'role' and a string "
                                "'content'")
    if messages[-1]["role"] != "assistant":
        raise ChatDataError(f"{where}: the last message is {messages[-1]['role']!r}; it must be "
                            "the assistant's (the target)")
    if len(messages) < 2:
        raise ChatDataError(f"{where}: no message before the assistant's target (nothing to "
                            "prompt with)")
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
    return prompt, messages[-1]["content"]


def target_ids(tokenizer, text: str) -> list[int]:
    """A target response as the actor would have generated it: its tokens, then EOS."""
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]


def encode_chat(conversations: list[Conversation], tokenizer,
                enable_thinking: bool | None = None) -> list[Example]:
    """Prompt ids through the chat template (with the generation prompt), target ids + EOS."""
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    out = []
    for messages, target in conversations:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                               tokenize=True, return_dict=False, **extra)
        out.append((list(prompt), target_ids(tokenizer, target)))
    return out


def task_solutions(task_id: str, n: int, seed: int, *, difficulty: int | None = None,
                   task_kwargs: dict | None = None) -> list[tuple[str, str]]:
    """(prompt text, canonical answer text) of ``n`` train-split problems of ``task_id``."""
    task = tasks.make(task_id, **(task_kwargs or {}))
    problems = draw_problems(task, n, seed, split="train", difficulty=difficulty)
    return [(problem.prompt, task.answer_text(problem)) for problem in problems]


def expert_turns(game_id: str, n: int, seed: int, *, opponent: str = "optimal",
                 game_kwargs: dict | None = None) -> list[tuple[str, str]]:
    """(observation, canonical answer) of ``n`` moves of ``game_id``'s optimal player.

    Match ``i`` seats the optimal player in both seats (``opponent="optimal"``) or in seat
    ``i % 2`` against ``opponent``; matches are played until ``n`` optimal moves are taken."""
    spec = envs.spec(game_id)
    expert = make_opponent("optimal", game_id)
    partner = expert if opponent == "optimal" else make_opponent(opponent, game_id)
    rng = random.Random(f"expert/{game_id}/{opponent}/{seed}")
    out: list[tuple[str, str]] = []
    match = 0
    while len(out) < n:
        game = envs.make(game_id, **(game_kwargs or {}))
        game.reset(seed=rng.randrange(2**31))
        seats = (0, 1) if opponent == "optimal" else (match % 2,)
        moves = 0
        while not game.is_terminal() and len(out) < n and moves < (spec.max_turns or 10**6):
            player = game.current_player()
            move = game.parse_action((expert if player in seats else partner).act(game, rng))
            if move is None:
                raise ValueError(f"{game_id}: a fixed player made an invalid move")
            if player in seats:
                out.append((game.observe(player), spec.answer_text(move, game)))
            game.step(move)
            moves += 1
        match += 1
    return out


def encode_pairs(pairs: list[tuple[str, str]], prompter: Prompter, tokenizer) -> list[Example]:
    """(user message, target text) pairs as examples: the prompter's prompt, target + EOS."""
    return [(prompter(text), target_ids(tokenizer, target)) for text, target in pairs]


def build_examples(cfg: SFTConfig, tokenizer, prompter: Prompter) -> list[Example]:
    """The examples of ``cfg.data`` (``mode=sft``), deterministic in ``cfg.seed``."""
    data = cfg.data
    if data.kind == "chat":
        return encode_chat(read_chat(data.path, data.examples), tokenizer,
                           cfg.model.enable_thinking)
    if data.kind == "task":
        pairs = task_solutions(data.task, data.examples, cfg.seed, difficulty=data.difficulty,
                               task_kwargs=data.task_kwargs)
    else:
        pairs = expert_turns(data.game, data.examples, cfg.seed, opponent=data.opponent,
                             game_kwargs=data.game_kwargs)
    return encode_pairs(pairs, prompter, tokenizer)


def step_batch(examples: list[Example], size: int, seed: int, step: int) -> list[Example]:
    """The ``size`` examples of step ``step`` (1-based): consecutive slices of a seeded
    permutation, reshuffled each epoch (a pass over the data), so a resumed run draws the
    batches an uninterrupted one would."""
    orders: dict[int, list[int]] = {}
    out: list[Example] = []
    start = (step - 1) * size
    for position in range(start, start + size):
        epoch, index = divmod(position, len(examples))
        if epoch not in orders:
            orders[epoch] = list(range(len(examples)))
            random.Random(f"sft-epoch/{seed}/{epoch}").shuffle(orders[epoch])
        out.append(examples[orders[epoch][index]])
    return out
