"""Any two-player, zero-sum, turn-based open_spiel game behind our Game protocol.

``OpenSpielGame("kuhn_poker")`` (or ``envs.make("openspiel/kuhn_poker")``) plays one match of
the open_spiel game of that name; parameters go in open_spiel's own string form,
``"leduc_poker(suit_isomorphism=True)"``, or as ``params``. The rules are open_spiel's.

Supported: exactly two players, sequential (turn-based) moves, zero-sum or constant-sum
utilities (constant-sum returns are shifted to sum to 0), explicit chance nodes (or none), and a
per-player information-state or observation string. Anything else raises ``ValueError`` saying
which of these fails.

Chance nodes never reach a player: after ``reset`` and after every ``step`` the adapter samples
them from ``random.Random(seed)`` with the probabilities of ``chance_outcomes()``, so
``current_player()`` is always a real seat until the game is over (then it is -1).

Canonical actions are ``"[" + action_to_string(player, action) + "]"``, e.g. ``"[Bet]"``,
``"[x(1,1)]"``. If two legal actions would look alike after ``envs.core.normalize``, both get
their open_spiel action id appended (``"[a1 #3]"``) so every label stays unique.

``observe(p)`` shows, in order: the game's name and seat; what open_spiel lets ``p`` know (the
observation string in perfect-information games, where it is the board, otherwise the
information-state string, else the observation string; never ``to_string()``, which can show
hidden cards); the moves so far that ``p`` can identify (its own moves, and an opponent's move
when ``p``'s information after that move tells it apart from every other legal move, so moves
hidden by the game stay hidden); then the legal moves for the player to move.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from envs.core import (
    GameSpec,
    format_moves,
    match_action,
    normalize,
    register,
    register_namespace,
)

# open_spiel's max_game_length() of the registered samples: the longest possible match in moves.
SAMPLE_MAX_TURNS = {
    "kuhn_poker": 3,
    "leduc_poker": 8,
    "tic_tac_toe": 9,
    "connect_four": 42,
    "liars_dice": 13,
    "breakthrough": 209,
}


@dataclass
class Move:
    """One player move, as our canonical label, and which seats can identify it."""

    player: int
    label: str
    seen_by: tuple[bool, bool]


@dataclass
class Match:
    """The open_spiel state of one match plus what the adapter adds to it."""

    state: Any  # pyspiel.State, never at a chance node
    rng: random.Random
    legal: dict[str, int] = field(default_factory=dict)  # canonical label -> open_spiel action id
    moves: list[Move] = field(default_factory=list)


def load_supported_game(name: str, params: dict | None = None) -> Any:
    """``pyspiel.load_game``, or ValueError if the game is unknown or not supported here."""
    import pyspiel

    if name.partition("(")[0] not in pyspiel.registered_names():
        raise ValueError(f"unknown open_spiel game {name!r}; see pyspiel.registered_names()")
    try:
        game = pyspiel.load_game(name, params) if params else pyspiel.load_game(name)
    except pyspiel.SpielError as err:  # e.g. an unknown parameter; keep open_spiel's first line
        reason = str(err).split("OpenSpiel exception:")[0].strip().splitlines()[0]
        raise ValueError(f"cannot load open_spiel game {name!r}: {reason}") from err
    problem = unsupported_reason(game)
    if problem:
        raise ValueError(f"open_spiel game {name!r} is not supported: {problem}")
    return game


def unsupported_reason(game: Any) -> str | None:
    """Why ``game`` does not fit our protocol, or None if it does."""
    import pyspiel

    kind = game.get_type()
    if game.num_players() != 2:
        return f"it has {game.num_players()} players; only two-player games are supported"
    if kind.dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
        return f"its dynamics are {kind.dynamics.name}; only turn-based (sequential) games work"
    utilities = (pyspiel.GameType.Utility.ZERO_SUM, pyspiel.GameType.Utility.CONSTANT_SUM)
    if kind.utility not in utilities:
        return f"its utility is {kind.utility.name}; only zero-sum or constant-sum games work"
    if kind.chance_mode == pyspiel.GameType.ChanceMode.SAMPLED_STOCHASTIC:
        return "it samples chance internally, so a match cannot be replayed from our seed"
    if not (kind.provides_information_state_string or kind.provides_observation_string):
        return "it provides neither an information-state nor an observation string"
    return None


def action_labels(state: Any) -> dict[str, int]:
    """Unique canonical labels for the legal actions of ``state``: label -> open_spiel action id."""
    player = state.current_player()
    ids = state.legal_actions()
    texts = [state.action_to_string(player, action_id) for action_id in ids]
    keys = [normalize(f"[{text}]") for text in texts]
    labels = {}
    for action_id, text, key in zip(ids, texts, keys, strict=True):
        clashes = not key or keys.count(key) > 1
        labels[f"[{text} #{action_id}]" if clashes else f"[{text}]"] = action_id
    return labels


class OpenSpielGame:
    """One match of a two-player zero-sum sequential open_spiel game (see the module doc)."""

    num_players = 2

    def __init__(self, name: str, params: dict | None = None) -> None:
        self.name = name
        self._game = load_supported_game(name, params)
        kind = self._game.get_type()
        self._title = kind.long_name
        self._perfect_information = kind.information.name == "PERFECT_INFORMATION"
        self._has_info_state = kind.provides_information_state_string
        self._has_observation = kind.provides_observation_string
        self._match: Match | None = None

    # ------------------------------------------------------------------ protocol

    def reset(self, seed: int) -> None:
        self._match = Match(self._game.new_initial_state(), random.Random(seed))
        self._settle()

    def current_player(self) -> int:
        state = self._current().state
        return -1 if state.is_terminal() else state.current_player()

    def observe(self, player: int) -> str:
        match = self._current()
        lines = [f"You are playing {self._title} (open_spiel: {self.name}) as Player {player}."]
        view = self._view(match.state, player)
        lines.append(f"What you know:\n{view}" if "\n" in view else f"What you know: {view}")
        seen = [f"Player {m.player} {m.label}" for m in match.moves if m.seen_by[player]]
        lines.append("Moves so far: " + (", ".join(seen) if seen else "none"))
        if match.state.is_terminal():
            lines.append("The game is over.")
        elif match.state.current_player() == player:
            lines.append(format_moves(list(match.legal)))
        else:
            lines.append(f"Waiting for Player {match.state.current_player()} to move.")
        return "\n".join(lines)

    def legal_actions(self) -> list[str]:
        match = self._current()
        return [] if match.state.is_terminal() else list(match.legal)

    def parse_action(self, text: str) -> str | None:
        if self._match is None or self._match.state.is_terminal():
            return None
        return match_action(text, list(self._match.legal))

    def step(self, action: str) -> None:
        match = self._current()
        if match.state.is_terminal():
            raise ValueError("the game is over")
        if not isinstance(action, str) or action not in match.legal:
            raise ValueError(f"illegal action {action!r}; legal: {', '.join(match.legal)}")
        action_id = match.legal[action]
        player = match.state.current_player()
        match.moves.append(Move(player, action, self._seen_by(match.state, player, action_id)))
        match.state.apply_action(action_id)
        self._settle()

    def is_terminal(self) -> bool:
        return self._current().state.is_terminal()

    def returns(self) -> tuple[float, ...]:
        state = self._current().state
        if not state.is_terminal():
            return (0.0, 0.0)
        first, second = state.returns()
        advantage = (first - second) / 2  # constant-sum -> zero-sum; exact for zero-sum games
        return (advantage, -advantage)

    def render(self) -> str:
        return str(self._current().state)

    # ------------------------------------------------------------------ helpers

    def _current(self) -> Match:
        if self._match is None:
            raise RuntimeError("call reset(seed) before playing")
        return self._match

    def _settle(self) -> None:
        """Sample chance nodes from the match's RNG, then label the legal actions."""
        match = self._current()
        state = match.state
        while state.is_chance_node():
            outcomes, probabilities = zip(*state.chance_outcomes(), strict=True)
            state.apply_action(match.rng.choices(outcomes, weights=probabilities)[0])
        match.legal = {} if state.is_terminal() else action_labels(state)

    def _view(self, state: Any, player: int) -> str:
        """What ``player`` knows, as open_spiel words it (never the full state)."""
        if self._has_observation and (self._perfect_information or not self._has_info_state):
            return state.observation_string(player).strip()
        return state.information_state_string(player).strip()

    def _seen_by(self, state: Any, mover: int, action_id: int) -> tuple[bool, bool]:
        """Which seats can tell, right after it, that ``action_id`` (not another) was played."""
        if self._perfect_information:
            return (True, True)
        other = 1 - mover
        views = {b: self._view(state.child(b), other) for b in state.legal_actions()}
        identifiable = list(views.values()).count(views[action_id]) == 1
        return (True, identifiable) if mover == 0 else (identifiable, True)


def resolve(name: str) -> GameSpec:
    """The spec of ``openspiel/<name>``; ``name`` may carry parameters: ``nim(pile_sizes=1;2)``.

    An unknown game name raises ``KeyError``, an unsupported or mis-parameterised one
    ``ValueError``.
    """
    import pyspiel

    if name.partition("(")[0] not in pyspiel.registered_names():
        raise KeyError(f"unknown open_spiel game {name!r}; see pyspiel.registered_names()")
    game = load_supported_game(name)
    return GameSpec(
        id=f"openspiel/{name}",
        entry_point=OpenSpielGame,
        kwargs={"name": name},
        max_turns=game.max_game_length(),
    )


def register_adapter() -> None:
    """Make every ``openspiel/<name>`` id resolvable and register the sample games."""
    register_namespace("openspiel", resolve)
    for name, max_turns in SAMPLE_MAX_TURNS.items():
        register(f"openspiel/{name}", OpenSpielGame, kwargs={"name": name}, max_turns=max_turns)
