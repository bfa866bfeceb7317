"""Two-player TextArena (0.7.4) games behind our Game protocol.

``TextArenaGame("TicTacToe-v0")`` (or ``envs.make("textarena/TicTacToe-v0")``) plays one match of
that TextArena environment, unwrapped (TextArena's own rules and messages, our formatting). The
rules are TextArena's: each player's prompt states them, and the env decides which moves are valid.

Observations. ``observe(p)`` shows the messages TextArena addressed to ``p`` or to everyone:
``p``'s rules prompt, the game's messages about moves and events, and the latest board; the raw
text players submitted and TextArena's invalid-move notices are left out. Then the legal moves
(or, for open-ended games, a reminder to answer in brackets) and the answer format.

Moves. TextArena moves are bracketed text such as ``"[4]"``, ``"[col 3]"`` or ``"[0 3]"``. For
the envs in ``LEGAL_MOVES`` we list the legal moves from the env's state, so ``legal_actions()``
returns them and ``parse_action`` matches answers against them. Other envs are open-ended
(``legal_actions()`` is None): ``parse_action`` takes ``answer_text``, adds brackets if there are
none, and returns it only if TextArena would accept it. ``sample_action(rng)`` draws a random
legal move where we can list them.

Invalid moves never touch the match. TextArena records an invalid move inside the match (a
warning message, an error count, and on a repeat the loss of the game), so every move is first
played on a deep copy of the env: if TextArena calls ``set_invalid_move`` (or crashes on the
text) the copy is dropped and ``step`` raises ``ValueError`` with TextArena's reason; otherwise
the copy becomes the match. The rollout, not TextArena, decides what an invalid move costs.

Randomness. TextArena draws from the global ``random`` module, seeded by ``reset(seed=...)``.
Each match keeps its own copy of that generator's state and swaps it in only while TextArena
runs, so interleaved matches replay exactly and the caller's global RNG is left alone.

Returns are TextArena's rewards made zero-sum: ``(r0 - r1) / 2`` and its negation (win/loss
stays ``(1, -1)``). ``current_player()`` is -1 once the match is over.

Offline here (textarena 0.7.4, Python 3.11): TicTacToe-v0, ConnectFour-v0 and Nim-v0 are
registered (their moves are listed); KuhnPoker-v0 lists its moves too but stays namespace-only
(its 3-hand match differs from our KuhnPoker-v1). Most other board games (Othello, Breakthrough,
SimpleTak, ...) reset and play open-ended; envs that download word lists (WordChains, DontSayIt)
fail in ``reset``, and Chess/Checkers/ReverseTicTacToe do not import on Python 3.11.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from pprint import pformat
from typing import Any

from envs.core import (
    ANSWER_FORMAT,
    GameSpec,
    answer_text,
    format_moves,
    match_action,
    register,
    register_namespace,
)

# Registered samples (checked offline) -> the longest possible match in moves.
SAMPLE_MAX_TURNS = {"TicTacToe-v0": 9, "ConnectFour-v0": 42, "Nim-v0": 12}
_HIDDEN_KINDS = ("PLAYER_ACTION", "GAME_ADMIN")  # raw submitted text, invalid-move notices


def _tic_tac_toe_moves(env: Any) -> list[str]:
    board = env.state.game_state["board"]
    return [f"[{row * 3 + col}]" for row in range(3) for col in range(3) if not board[row][col]]


def _connect_four_moves(env: Any) -> list[str]:
    top_row = env.state.game_state["board"][0]
    return [f"[col {col}]" for col in range(env.num_cols) if top_row[col] == "."]


def _nim_moves(env: Any) -> list[str]:
    piles = env.state.game_state["piles"]
    return [f"[{pile} {take}]" for pile, size in enumerate(piles) for take in range(1, size + 1)]


def _kuhn_poker_moves(env: Any) -> list[str]:
    tree = env.state.game_state["current_legal_action_tree"]
    return [f"[{move}]" for move in tree] if isinstance(tree, dict) else []


# TextArena env class name -> the legal moves of its current state, in TextArena's own syntax.
LEGAL_MOVES: dict[str, Callable[[Any], list[str]]] = {
    "TicTacToeEnv": _tic_tac_toe_moves,
    "ConnectFourEnv": _connect_four_moves,
    "NimEnv": _nim_moves,
    "KuhnPokerEnv": _kuhn_poker_moves,
}


@dataclass(frozen=True)
class Match:
    """One TextArena env mid-match, its private RNG state, and each player's messages so far."""

    env: Any  # the unwrapped textarena.Env
    random_state: tuple
    messages: tuple[tuple, tuple]  # per player: (from_id, text, ObservationType) in order


def _run_isolated(random_state: tuple, call: Callable[[], Any]) -> tuple:
    """Run ``call`` with the global ``random`` set to ``random_state``; restore it afterwards."""
    outside = random.getstate()
    random.setstate(random_state)
    try:
        call()
        return random.getstate()
    finally:
        random.setstate(outside)


def _collect(env: Any, random_state: tuple, earlier: tuple[tuple, tuple]) -> Match:
    """Move the messages TextArena queued for each player into a new Match."""
    queued = env.state.observations
    messages = tuple(earlier[player] + tuple(queued[player]) for player in (0, 1))
    for player in (0, 1):
        queued[player] = []
    return Match(env, random_state, messages)


class TextArenaGame:
    """One match of a two-player TextArena env (see the module doc)."""

    num_players = 2

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id
        self._blank_env = make_unwrapped(env_id)
        self._list_moves = LEGAL_MOVES.get(type(self._blank_env).__name__)
        self._match: Match | None = None

    # ------------------------------------------------------------------ protocol

    def reset(self, seed: int) -> None:
        env = copy.deepcopy(self._blank_env)
        call = lambda: env.reset(num_players=2, seed=seed)  # noqa: E731
        try:
            random_state = _run_isolated(random.Random(seed).getstate(), call)
        except (AssertionError, ValueError) as err:  # TextArena's ways of refusing 2 players
            raise ValueError(f"textarena env {self.env_id!r} cannot host 2 players: {err}") from err
        self._match = _collect(env, random_state, ((), ()))

    def current_player(self) -> int:
        state = self._current().env.state
        return -1 if state.done else state.current_player_id

    def observe(self, player: int) -> str:
        messages = self._current().messages[player]
        by_kind: dict[str, list[str]] = {}
        for _, text, kind in messages:
            by_kind.setdefault(kind.name, []).append(text.lstrip("\n").rstrip())
        events = [
            text
            for _, text, kind in messages
            if kind.name not in ("PROMPT", "GAME_BOARD", *_HIDDEN_KINDS)
        ]
        parts = by_kind.get("PROMPT", []) + ["\n".join(event.strip() for event in events)]
        parts += by_kind.get("GAME_BOARD", [])[-1:] + [self._closing(player)]
        return "\n\n".join(part for part in parts if part)

    def legal_actions(self) -> list[str] | None:
        match = self._current()
        if match.env.state.done:
            return []
        return None if self._list_moves is None else self._list_moves(match.env)

    def parse_action(self, text: str) -> str | None:
        if self._match is None or self._match.env.state.done:
            return None
        legal = self.legal_actions()
        if legal is not None:
            return match_action(text, legal)
        answer = answer_text(text)
        if not answer:
            return None
        action = answer if "[" in answer and "]" in answer else f"[{answer}]"
        outcome, _ = self._attempt(action)
        return action if outcome is not None else None

    def step(self, action: str) -> None:
        match = self._current()
        if match.env.state.done:
            raise ValueError("the game is over")
        legal = self.legal_actions()
        if not isinstance(action, str) or "[" not in action or "]" not in action:
            raise ValueError(f"not a bracketed TextArena move: {action!r}")
        if legal is not None and action not in legal:
            raise ValueError(f"illegal action {action!r}; legal: {', '.join(legal)}")
        outcome, reason = self._attempt(action)
        if outcome is None:
            raise ValueError(f"textarena rejected {action!r}: {reason}")
        self._match = outcome

    def is_terminal(self) -> bool:
        return bool(self._current().env.state.done)

    def returns(self) -> tuple[float, ...]:
        state = self._current().env.state
        if not state.done or not state.rewards:
            return (0.0, 0.0)
        advantage = (state.rewards.get(0, 0) - state.rewards.get(1, 0)) / 2
        return (float(advantage), float(-advantage))

    def render(self) -> str:
        env = self._current().env
        state = env.state
        header = f"{self.env_id}: turn {state.turn}, done={state.done}, rewards={state.rewards}"
        details = {name: value for name, value in vars(env).items() if name != "state"}
        details["game_state"] = state.game_state
        return f"{header}\n{pformat(details, width=100, compact=True)}"

    def sample_action(self, rng: random.Random) -> str:
        """A uniformly random legal move (for envs whose moves we can list)."""
        legal = self.legal_actions()
        if legal is None:
            raise NotImplementedError(f"cannot list the moves of textarena env {self.env_id!r}")
        if not legal:
            raise ValueError("the game is over")
        return rng.choice(legal)

    # ------------------------------------------------------------------ helpers

    def _current(self) -> Match:
        if self._match is None:
            raise RuntimeError("call reset(seed) before playing")
        return self._match

    def _closing(self, player: int) -> str:
        state = self._current().env.state
        if state.done:
            return "The game is over."
        if state.current_player_id != player:
            return f"Waiting for Player {state.current_player_id} to move."
        legal = self.legal_actions()
        if legal is not None:
            return format_moves(legal)
        return f"Give your move in square brackets, as the rules above describe.\n{ANSWER_FORMAT}"

    def _attempt(self, action: str) -> tuple[Match | None, str]:
        """Play ``action`` on a copy of the match: (the new match, "") or (None, why not)."""
        match = self._current()
        env = copy.deepcopy(match.env)
        state = env.state
        reasons: list[str] = []
        set_invalid_move = state.set_invalid_move

        def record(*args: Any, **kwargs: Any) -> Any:
            reasons.append(str(kwargs.get("reason", args[0] if args else "invalid move")))
            return set_invalid_move(*args, **kwargs)

        state.set_invalid_move = record
        try:
            random_state = _run_isolated(match.random_state, lambda: env.step(action))
        except Exception as err:  # noqa: BLE001 - TextArena crashing on a text is a refusal too
            return None, f"{type(err).__name__}: {err}"
        finally:
            vars(state).pop("set_invalid_move", None)
        if reasons:
            return None, reasons[0]
        return _collect(env, random_state, match.messages), ""


def make_unwrapped(env_id: str) -> Any:
    """``textarena.make(env_id)`` without its observation/action wrappers; ValueError if absent."""
    import textarena

    if env_id not in textarena.envs.registration.ENV_REGISTRY:
        raise ValueError(f"unknown textarena env id {env_id!r}")
    try:
        env = textarena.make(env_id)
    except (ImportError, SyntaxError) as err:
        raise ValueError(f"textarena env {env_id!r} cannot be loaded here: {err}") from err
    while isinstance(env, textarena.Wrapper):
        env = env.env
    return env


def resolve(name: str) -> GameSpec:
    """The spec of ``textarena/<name>``; an id TextArena does not know raises ``KeyError``."""
    import textarena

    if name not in textarena.envs.registration.ENV_REGISTRY:
        raise KeyError(f"unknown textarena env id {name!r}")
    return GameSpec(
        id=f"textarena/{name}",
        entry_point=TextArenaGame,
        kwargs={"env_id": name},
        max_turns=SAMPLE_MAX_TURNS.get(name),
    )


def register_adapter() -> None:
    """Make every ``textarena/<id>`` resolvable and register the offline-checked samples."""
    register_namespace("textarena", resolve)
    for env_id, max_turns in SAMPLE_MAX_TURNS.items():
        register(
            f"textarena/{env_id}", TextArenaGame, kwargs={"env_id": env_id}, max_turns=max_turns
        )
