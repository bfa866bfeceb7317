"""The Game protocol, the game registry and the answer parsing every game shares.

A game is a two-player, turn-based, zero-sum text game; one instance is one match.
Games are pure Python: no torch, and nothing from `spiral` is imported here.

Registry ids look like ``KuhnPoker-v1``. Entry points are ``"module:Class"`` strings, imported
lazily on ``make`` so that listing games stays cheap. Namespaced ids such as
``openspiel/leduc_poker`` or ``textarena/ConnectFour-v0`` are resolved by a namespace factory
(``register_namespace``), so any game of an adapted library can be made without registering it
first; a few such ids are also registered so that ``list_games()`` (and the conformance test)
covers them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Game(Protocol):
    """One match of a two-player, turn-based, zero-sum text game."""

    num_players: int

    def reset(self, seed: int) -> None:
        """Start a new match; all randomness comes from ``random.Random(seed)``."""

    def current_player(self) -> int:
        """The seat to move (0 or 1)."""

    def observe(self, player: int) -> str:
        """What ``player`` may see: rules, private info, public history, moves, answer format."""

    def legal_actions(self) -> list[str] | None:
        """Canonical legal actions such as ``"[bet]"``; ``None`` means open-ended text."""

    def parse_action(self, text: str) -> str | None:
        """Model answer -> canonical legal action, or ``None``. Never raises."""

    def step(self, action: str) -> None:
        """Apply a legal canonical action; anything else raises ``ValueError``."""

    def is_terminal(self) -> bool:
        """Whether the match is over."""

    def returns(self) -> tuple[float, ...]:
        """Each player's return; sums to 0."""

    def render(self) -> str:
        """Full-state debug view, never shown to a policy."""


@runtime_checkable
class OpenEndedGame(Game, Protocol):
    """A game whose moves are free text (``legal_actions()`` returns ``None``) also draws a
    random well-formed move, so that the ``random`` opponent and ``check_game`` can play it."""

    def sample_action(self, rng) -> str:
        """A random well-formed move of the current player, from ``rng`` only."""


# --------------------------------------------------------------------------- registry


Policy = dict[str, dict[str, float]]  # decision-point key -> canonical action -> probability


@dataclass(frozen=True)
class ExactMetrics:
    """Exact metrics of a policy, computed over every decision point of a game (no noise).

    ``positions(**game_kwargs)`` maps a key to a fresh match positioned at that decision point
    (the policy is read there: from answer log-probs or sampled answers), made with the game's
    constructor options as training plays it (``env.game_kwargs``); ``compute(policy)`` returns
    named values (``"exploitability"``; reported as ``eval/<game id>/<name>``). ``headline`` names
    the value the progress bar shows, under the label ``label``.
    """

    positions: Callable[..., dict[str, Game]]
    compute: Callable[[Policy], dict[str, float]]
    headline: str
    label: str


def boxed_answer(move: str, game: Game) -> str:
    """The canonical answer for ``move``: just the boxed move."""
    return f"\\boxed{{{move}}}"


Ref = str | Callable[..., Any]  # "module:attr", imported on first use, or the object itself


@dataclass(frozen=True)
class GameSpec:
    """A registered game: how to build it, the rollout's turn limit, and what training and
    evaluation need to know about it.

    - ``opponents``: fixed opponents by name (``"optimal"``: its reference/optimal player),
      each a zero-argument factory of an agent with ``act(game, rng) -> str``; ``random`` plays
      every game and needs no entry;
    - ``exact``: its ``ExactMetrics`` (Kuhn exploitability, TicTacToe's loss vs perfect play);
    - ``answer``: ``answer(move, game) -> str``, the canonical answer text for ``move`` in
      ``game``'s state (pretraining data of the embedded model; the log-prob policy reader).
    """

    id: str
    entry_point: Ref
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_turns: int | None = None
    opponents: dict[str, Ref] = field(default_factory=dict)
    exact: Ref | None = None
    answer: Ref = boxed_answer

    def build(self, **overrides: Any) -> Game:
        factory = load_ref(self.entry_point)
        return factory(**{**self.kwargs, **overrides})

    def opponent(self, name: str):
        """A new agent of fixed opponent ``name`` (not ``random``); unknown names raise."""
        if name not in self.opponents:
            have = ", ".join(["random", *sorted(self.opponents)])
            raise ValueError(f"no {name!r} opponent for {self.id!r}; it has: {have}")
        return load_ref(self.opponents[name])()

    def exact_metrics(self) -> ExactMetrics | None:
        return None if self.exact is None else load_ref(self.exact)

    def answer_text(self, move: str, game: Game) -> str:
        return load_ref(self.answer)(move, game)


_REGISTRY: dict[str, GameSpec] = {}
_NAMESPACES: dict[str, Callable[[str], GameSpec]] = {}


def register(
    id: str,  # noqa: A002 - the name is part of the fixed interface
    entry_point: Ref,
    *,
    kwargs: dict[str, Any] | None = None,
    max_turns: int | None = None,
    opponents: dict[str, Ref] | None = None,
    exact: Ref | None = None,
    answer: Ref | None = None,
) -> None:
    """Register a game under ``id``; a duplicate id raises ``ValueError``.

    Strings are ``"module:attr"`` references, imported when first needed (see ``GameSpec``
    for ``opponents``, ``exact`` and ``answer``)."""
    if id in _REGISTRY:
        raise ValueError(f"game id {id!r} is already registered")
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ValueError(f"entry_point must look like 'module:Class', got {entry_point!r}")
    named = {"exact": exact, "answer": answer} | {f"opponents[{k!r}]": v
                                                    for k, v in (opponents or {}).items()}
    for name, ref in named.items():
        if isinstance(ref, str) and ":" not in ref:
            raise ValueError(f"{name} must look like 'module:attr', got {ref!r}")
    _REGISTRY[id] = GameSpec(id, entry_point, dict(kwargs or {}), max_turns,
                             dict(opponents or {}), exact, answer or boxed_answer)


def register_namespace(prefix: str, resolve: Callable[[str], GameSpec]) -> None:
    """Make every id ``"<prefix>/<name>"`` resolvable through ``resolve(name)``."""
    _NAMESPACES[prefix] = resolve


def spec(id: str) -> GameSpec:  # noqa: A002
    """The spec of a registered (or namespace-resolvable) id; unknown ids list the choices."""
    if id in _REGISTRY:
        return _REGISTRY[id]
    prefix, sep, name = id.partition("/")
    if sep and prefix in _NAMESPACES and name:
        return _NAMESPACES[prefix](name)
    choices = ", ".join(list_games())
    namespaces = ", ".join(f"{p}/<name>" for p in _NAMESPACES)
    raise KeyError(f"unknown game id {id!r}; registered ids: {choices} (and {namespaces})")


def make(id: str, **overrides: Any) -> Game:  # noqa: A002
    """Build a new, un-reset match of game ``id``; ``overrides`` update the registered kwargs."""
    return spec(id).build(**overrides)


def list_games() -> list[str]:
    """Every registered id, sorted."""
    return sorted(_REGISTRY)


def load_ref(ref: Ref) -> Any:
    """A ``"module:attr"`` entry point imported now, or the object itself."""
    if not isinstance(ref, str):
        return ref
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


# --------------------------------------------------------------------------- parsing

ANSWER_FORMAT = r"Think briefly if you need to, then give your final move as \boxed{MOVE}."
_BOXED = "\\boxed{"
_STRIP = " \t\r\n.,;:!?\"'`*"


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (nested braces allowed), or None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
    return None


def answer_text(text: str) -> str:
    """The model's answer: the last boxed content if any, else the whole text, trimmed."""
    if not isinstance(text, str):
        return ""
    boxed = last_boxed(text)
    return (text if boxed is None else boxed).strip(_STRIP)


def normalize(move: str) -> str:
    """Compare moves ignoring case, surrounding brackets, spaces and trailing punctuation."""
    move = move.strip(_STRIP)
    if move.startswith("[") and move.endswith("]"):
        move = move[1:-1]
    return re.sub(r"\s+", " ", move.strip(_STRIP)).lower()


def match_action(text: str, legal: list[str]) -> str | None:
    """Map a model answer to one of ``legal`` (canonical strings), or None. Never raises."""
    wanted = normalize(answer_text(text))
    if not wanted:
        return None
    for action in legal:
        if normalize(action) == wanted:
            return action
    return None


def format_moves(legal: list[str]) -> str:
    """The observation's closing lines: the legal moves and the answer format."""
    return f"Valid moves: {', '.join(legal)}\n{ANSWER_FORMAT}"
