"""Conformance checker for games: ``envs.check_game``, as Gymnasium ships ``check_env``.

Run it on a registered id or on your own game class (any zero-argument callable that returns a
fresh, un-reset match)::

    python -c "import envs; envs.check_game('MyGame-v1')"
    python -c "import envs; from my_game import MyGame; envs.check_game(MyGame)"
    python -m envs.check MyGame-v1 KuhnPoker-v1      # prints "ok" per game, or why not

Each seed plays one uniformly random match (open-ended games move with ``sample_action(rng)``)
and checks the rules below in every state it reaches; the first violation raises
``GameCheckError``, whose message names the game, the rule and where, e.g.
``MyGame-v1: rule 'zero-sum' violated: returns (1.0, 0.5) sum to 1.5, not 0 (seed 0)``.

- ``protocol``: ``num_players == 2`` and every method of ``envs.Game`` exists.
- ``terminates``: random play ends within the move limit (``max_moves``; default: the id's
  registered ``max_turns``, else 500); open-ended games must provide ``sample_action(rng)``.
- ``zero-sum``: the final ``returns()`` holds ``num_players`` finite numbers summing to 0.
- ``legal-moves``: in live states ``legal_actions()`` is None or a non-empty list of strings,
  ``current_player()`` is 0 or 1, and ``step`` accepts the random legal move.
- ``parse-never-raises``: ``parse_action`` on garbage (empty, broken ``\\boxed{``, unicode, 10k
  characters, a legal move inside prose, ``None``, ``3``) returns None or a legal action.
- ``parse-round-trip``: each legal action (open-ended: the sampled move) parses to itself, also
  as ``I choose \\boxed{<action>}.``.
- ``illegal-raises``: ``step`` raises ``ValueError`` on a non-move in a live state, and on any
  move once the match is over.
- ``deterministic``: two replays of a seed with the same random moves show the same
  observations.
- ``observe``: ``observe(p)`` is a non-empty string mentioning ``Player <p>`` (any case), for
  both players, in live states.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from envs.core import Game, spec
from envs.opponents import RandomOpponent

DEFAULT_MAX_MOVES = 500
NOT_A_MOVE = "[definitely not a move]"
METHODS = tuple(name for name, value in vars(Game).items()
                if callable(value) and not name.startswith("_"))


def _garbage() -> list[Any]:
    """Answers no game should choke on (fixed: drawn once from ``random.Random(0)``)."""
    rng = random.Random(0)
    unicode = ["".join(chr(rng.randrange(0x20, 0xD800)) for _ in range(40)) for _ in range(3)]
    return ["", "   ", "\\boxed{", "\\boxed{}", "}}}{{{", "\\boxed{\\boxed{}", "[", "[]",
            "None", "null", "undefined", "NaN", "\x00", "💥" * 20, "x" * 10_000, *unicode,
            None, 3, b"[0]"]


GARBAGE = _garbage()


class GameCheckError(AssertionError):
    """A game broke a conformance rule; ``rule`` names it, the message says how and where."""

    def __init__(self, game: str, rule: str, detail: str) -> None:
        super().__init__(f"{game}: rule '{rule}' violated: {detail}")
        self.game, self.rule, self.detail = game, rule, detail


class Violation(Exception):
    """Raised by a rule function with what went wrong; ``check_game`` adds game, rule, where."""


@dataclass(frozen=True)
class CheckReport:
    """What a passing ``check_game`` covered."""

    game: str
    seeds: tuple[int, ...]
    states: int  # live states checked, over all seeds


# --------------------------------------------------------------------------- rules


def protocol(game: Game) -> None:
    if getattr(game, "num_players", None) != 2:
        raise Violation(f"num_players is {getattr(game, 'num_players', None)!r}, not 2")
    missing = [name for name in METHODS if not callable(getattr(game, name, None))]
    if missing:
        raise Violation(f"missing Game methods: {', '.join(missing)}")


def legal_moves(game: Game) -> None:
    legal = game.legal_actions()
    if legal is not None and not (isinstance(legal, list) and legal
                                  and all(isinstance(a, str) for a in legal)):
        raise Violation(f"legal_actions() is {legal!r}, not None or a non-empty list of str")
    if game.current_player() not in (0, 1):
        raise Violation(f"current_player() is {game.current_player()!r}, not 0 or 1")


def observe(game: Game) -> None:
    for player in (0, 1):
        text = game.observe(player)
        if not isinstance(text, str) or not text.strip():
            raise Violation(f"observe({player}) is {text!r}, not a non-empty str")
        if f"player {player}" not in text.lower():
            raise Violation(f"observe({player}) does not mention 'Player {player}'")


def parse_never_raises(game: Game, move: str) -> None:
    legal = game.legal_actions()
    for text in [*GARBAGE, f"Maybe {move} or not; I really cannot decide."]:
        try:
            parsed = game.parse_action(text)
        except Exception as err:  # noqa: BLE001 - any exception is the violation
            raise Violation(f"parse_action({_short(text)}) raised {_error(err)}") from err
        if parsed is not None and not isinstance(parsed, str):
            raise Violation(f"parse_action({_short(text)}) returned {parsed!r}, not str or None")
        if parsed is not None and legal is not None and parsed not in legal:
            raise Violation(f"parse_action({_short(text)}) returned {parsed!r}, not legal")


def parse_round_trip(game: Game, move: str) -> None:
    legal = game.legal_actions()
    for action in [move] if legal is None else legal:
        for text in (action, f"I choose \\boxed{{{action}}}."):
            parsed = game.parse_action(text)
            if parsed != action:
                raise Violation(f"parse_action({text!r}) returned {parsed!r}, not {action!r}")


def illegal_raises(game: Game, moves: Sequence[str] = (NOT_A_MOVE,)) -> None:
    """``step`` refuses each of ``moves`` with ``ValueError`` (a live state: a non-move)."""
    when = "after the end" if game.is_terminal() else "in a live state"
    for move in moves:
        try:
            game.step(move)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001 - the wrong exception type is the violation
            raise Violation(f"step({move!r}) {when} raised {_error(err)}, not ValueError") from err
        raise Violation(f"step({move!r}) {when} was accepted; it must raise ValueError")


def terminates(game: Game, limit: int) -> None:
    if not game.is_terminal():
        raise Violation(f"random play did not end within {limit} moves")


def zero_sum(game: Game) -> None:
    returns = tuple(game.returns())
    if len(returns) != game.num_players:
        raise Violation(f"returns {returns} have {len(returns)} values, not {game.num_players}")
    if not all(isinstance(r, int | float) and math.isfinite(r) for r in returns):
        raise Violation(f"returns {returns} are not all finite numbers")
    if abs(sum(returns)) > 1e-9:
        raise Violation(f"returns {returns} sum to {sum(returns):g}, not 0")


def deterministic(first: list[tuple[str, str]], second: list[tuple[str, str]]) -> None:
    """Two replays' observations (both players, every state) are equal."""
    for move, (one, two) in enumerate(zip(first, second)):
        for player in (0, 1):
            if one[player] != two[player]:
                lines = zip_longest(one[player].splitlines(), two[player].splitlines())
                shown = next((a, b) for a, b in lines if a != b)
                raise Violation(f"replays differ at move {move}: observe({player}) shows "
                                f"{_short(shown[0])}, then {_short(shown[1])}")
    if len(first) != len(second):
        raise Violation(f"replays last {len(first) - 1} and {len(second) - 1} moves")


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class _Subject:
    name: str
    new_game: Callable[[], Game]
    limit: int

    def enforce(self, rule: str, where: str, check: Callable[..., Any], *args: Any) -> Any:
        """``check(*args)``; a Violation or any exception becomes a GameCheckError."""
        try:
            return check(*args)
        except Violation as violation:
            detail = str(violation)
        except Exception as err:  # noqa: BLE001 - a crash inside a rule breaks that rule
            name = getattr(check, "__name__", "check")
            raise GameCheckError(self.name, rule, f"{name} raised {_error(err)} ({where})") from err
        raise GameCheckError(self.name, rule, f"{detail} ({where})")


def check_game(
    game_or_id: str | Callable[[], Game],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    max_moves: int | None = None,
) -> CheckReport:
    """Check a game against every conformance rule (see the module docstring).

    ``game_or_id`` is a registered id (built with ``envs.make`` for each match) or a
    zero-argument callable returning a fresh game, such as the game's class. ``max_moves``
    bounds random play (default: the registered ``max_turns``, else 500). Raises
    ``GameCheckError`` naming the first violated rule; returns a ``CheckReport`` otherwise.
    """
    subject = _subject(game_or_id, max_moves)
    subject.enforce("protocol", "a new game", protocol, subject.new_game())
    states = sum(_check_match(subject, seed) for seed in seeds)
    for seed in seeds:
        where = f"seed {seed}"
        replays = [subject.enforce("deterministic", where, _observations, subject, seed)
                   for _ in range(2)]
        subject.enforce("deterministic", where, deterministic, *replays)
    return CheckReport(subject.name, tuple(seeds), states)


def _subject(game_or_id: str | Callable[[], Game], max_moves: int | None) -> _Subject:
    if isinstance(game_or_id, str):
        game_spec = spec(game_or_id)
        limit = max_moves or game_spec.max_turns or DEFAULT_MAX_MOVES
        return _Subject(game_or_id, game_spec.build, limit)
    if not callable(game_or_id):
        raise TypeError("check_game takes a game id or a zero-argument callable returning a "
                        f"fresh game (such as its class), not {type(game_or_id).__name__}")
    name = getattr(game_or_id, "__name__", type(game_or_id).__name__)
    return _Subject(name, game_or_id, max_moves or DEFAULT_MAX_MOVES)


def _check_match(subject: _Subject, seed: int) -> int:
    """One random match with every per-state rule, then the end-of-match rules; live states."""
    game, rng, move, states = subject.new_game(), random.Random(seed), None, 0
    game.reset(seed=seed)
    while not game.is_terminal() and states < subject.limit:
        where = f"seed {seed}, move {states}"
        subject.enforce("legal-moves", where, legal_moves, game)
        subject.enforce("observe", where, observe, game)
        move = subject.enforce("terminates", where, random_move, game, rng)
        subject.enforce("parse-never-raises", where, parse_never_raises, game, move)
        subject.enforce("parse-round-trip", where, parse_round_trip, game, move)
        subject.enforce("illegal-raises", where, illegal_raises, game)
        subject.enforce("legal-moves", where, game.step, move)
        states += 1
    where = f"seed {seed}"
    subject.enforce("terminates", where, terminates, game, subject.limit)
    subject.enforce("zero-sum", where, zero_sum, game)
    last_moves = [NOT_A_MOVE] if move is None else [move, NOT_A_MOVE]
    subject.enforce("illegal-raises", where, illegal_raises, game, last_moves)
    return states


def _observations(subject: _Subject, seed: int) -> list[tuple[str, str]]:
    """Both players' observations in every state of seed ``seed``'s random match."""
    game, rng = subject.new_game(), random.Random(seed)
    game.reset(seed=seed)
    seen = [(game.observe(0), game.observe(1))]
    while not game.is_terminal() and len(seen) <= subject.limit:
        game.step(random_move(game, rng))
        seen.append((game.observe(0), game.observe(1)))
    return seen


_RANDOM = RandomOpponent()


def random_move(game: Game, rng: random.Random) -> str:
    """The random opponent's move: uniform over ``legal_actions()``, else ``sample_action``."""
    if game.legal_actions() is None and not callable(getattr(game, "sample_action", None)):
        raise Violation("legal_actions() is None but the game has no sample_action(rng); "
                        "open-ended games must provide it so that random play can move")
    return _RANDOM.act(game, rng)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} chars)"


def _error(err: Exception) -> str:
    text = str(err) if len(str(err)) <= 80 else f"{str(err)[:80]}..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envs.check", description="Check games against envs.check_game's rules."
    )
    parser.add_argument("ids", nargs="+", metavar="ID", help="registered game ids")
    failed = False
    for game_id in parser.parse_args(argv).ids:
        try:
            check_game(game_id)
        except (GameCheckError, KeyError) as err:
            print(err.args[0], flush=True)
            failed = True
        else:
            print(f"{game_id}: ok", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
