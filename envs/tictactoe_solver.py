"""TicTacToe solved: perfect play (minimax) and exact metrics of any policy.

A TicTacToe policy maps each of the 4,520 reachable non-terminal boards (9 characters,
row-major, ``"X"``, ``"O"`` or ``"."``; X moves first) to probabilities over that board's legal
moves (``"[0]"`` ... ``"[8]"``). spiral reads it off a model at every board (``EXACT.positions``)
and these numbers follow exactly, with no sampling noise (``EXACT.compute``):

- **optimal-move share**: the share of reachable boards where the policy's most likely move
  (ties: the lowest cell) is minimax-optimal (``best_cells``);
- **loss rate vs perfect play**: the probability that the policy loses against the ``optimal``
  opponent (minimax, ties broken uniformly), by exhaustive recursion over the game tree, for
  each seat and averaged over the two seats. Perfect play cannot lose, so the rest is draws;
- **tactics**: the mean probability of completing a line where the mover can (``take_win``),
  and of taking the opponent's open cell where only the opponent can (``block``): the two
  one-move skills that decide most of a loss against perfect play.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from envs.core import ExactMetrics, Game, Policy
from envs.tictactoe import ACTIONS, EMPTY, LINES, MARKS, TicTacToe

# --------------------------------------------------------------------------- perfect play


@dataclass
class TicTacToeMinimaxOpponent:
    """Perfect play: a move of best minimax value, ties broken uniformly with ``rng``."""

    name: str = "optimal"

    def act(self, game: Game, rng: random.Random) -> str:
        return ACTIONS[rng.choice(best_cells(game.board()))]


def best_cells(board: str) -> list[int]:
    """The free cells whose minimax value is best for the player to move on ``board``."""
    values = {cell: -_negamax(_play(board, cell)) for cell in _free_cells(board)}
    best = max(values.values())
    return [cell for cell, value in values.items() if value == best]


def minimax_value(board: str) -> int:
    """The value (+1 win, 0 draw, -1 loss) of ``board`` for the player to move."""
    return _negamax(board)


@cache
def _negamax(board: str) -> int:
    if has_line(board):  # the previous mover just completed a line
        return -1
    free = _free_cells(board)
    if not free:
        return 0
    return max(-_negamax(_play(board, cell)) for cell in free)


def _free_cells(board: str) -> list[int]:
    return [cell for cell, mark in enumerate(board) if mark == EMPTY]


def _play(board: str, cell: int) -> str:
    mark = MARKS[(9 - board.count(EMPTY)) & 1]  # X on even move counts
    return board[:cell] + mark + board[cell + 1 :]


# --------------------------------------------------------------------------- positions


def has_line(board: str) -> bool:
    return any(board[a] != EMPTY and board[a] == board[b] == board[c] for a, b, c in LINES)


def mover(board: str) -> int:
    """The player to move on ``board``: 0 (X) after an even number of marks, else 1 (O)."""
    return (9 - board.count(EMPTY)) & 1


def child(board: str, cell: int) -> str:
    return board[:cell] + MARKS[mover(board)] + board[cell + 1 :]


@cache
def reachable_positions() -> tuple[str, ...]:
    """Every reachable board where someone is to move (4,520), by move count, then text."""
    seen, frontier = set(), [EMPTY * 9]
    while frontier:
        seen.update(frontier)
        following = set()
        for board in frontier:
            if not has_line(board) and EMPTY in board:
                following.update(child(board, c) for c, m in enumerate(board) if m == EMPTY)
        frontier = sorted(following - seen)
    live = [b for b in seen if not has_line(b) and EMPTY in b]
    return tuple(sorted(live, key=lambda b: (9 - b.count(EMPTY), b)))


def position_game(board: str):
    """A TicTacToe match positioned at ``board`` (X and O moves interleaved).

    Marks are only ever added, so a board without a line has no line at any earlier point and
    any interleaving reaches it; the observation depends on the board alone."""
    xs = [c for c, m in enumerate(board) if m == MARKS[0]]
    os = [c for c, m in enumerate(board) if m == MARKS[1]]
    if not 0 <= len(xs) - len(os) <= 1 or has_line(board):
        raise ValueError(f"not a reachable board with a player to move: {board!r}")
    game = TicTacToe()
    game.reset(seed=0)
    for index in range(len(xs) + len(os)):
        game.step(ACTIONS[(xs if index % 2 == 0 else os)[index // 2]])
    return game


# --------------------------------------------------------------------------- metrics


def most_likely_move(probabilities: dict[str, float]) -> str:
    """The most probable move; ties go to the lowest cell."""
    return max(sorted(probabilities, key=ACTIONS.index), key=lambda m: probabilities[m])


def optimal_move_share(policy: Policy) -> float:
    """Share of reachable boards whose most likely move is minimax-optimal."""
    boards = reachable_positions()
    _check(policy, boards)
    hits = sum(ACTIONS.index(most_likely_move(policy[b])) in best_cells(b) for b in boards)
    return hits / len(boards)


def line_completions(board: str, mark: str) -> set[int]:
    """The free cells that would give ``mark`` a line on ``board``."""
    cells = set()
    for line in LINES:
        marks = [board[c] for c in line]
        if marks.count(mark) == 2 and marks.count(EMPTY) == 1:
            cells.add(line[marks.index(EMPTY)])
    return cells


def tactical_cells(board: str) -> tuple[str, set[int]]:
    """``("take_win", cells)`` where the mover can complete a line, else ``("block", cells)``
    where the opponent could, else ``("", set())``."""
    wins = line_completions(board, MARKS[mover(board)])
    if wins:
        return "take_win", wins
    threats = line_completions(board, MARKS[1 - mover(board)])
    return ("block", threats) if threats else ("", set())


def tactics(policy: Policy) -> dict[str, float]:
    """Mean probability of taking an immediate win (boards that offer one) and of blocking
    the opponent's immediate win (boards that offer the mover none but the opponent one)."""
    _check(policy, reachable_positions())
    found: dict[str, list[float]] = {"take_win": [], "block": []}
    for board in reachable_positions():
        kind, cells = tactical_cells(board)
        if kind:
            found[kind].append(sum(policy[board][ACTIONS[c]] for c in cells))
    return {kind: sum(values) / len(values) for kind, values in found.items()}


def outcome_vs_perfect(policy: Policy, seat: int) -> dict[str, float]:
    """Exact probabilities of ``win``/``draw``/``loss`` for ``policy`` in seat ``seat`` against
    the minimax opponent (uniform among its best moves)."""
    _check(policy, reachable_positions())

    @cache
    def value(board: str) -> tuple[float, float, float]:  # (win, draw, loss) for the policy
        if has_line(board):  # the player who just moved completed a line
            return (1.0, 0.0, 0.0) if mover(board) != seat else (0.0, 0.0, 1.0)
        if EMPTY not in board:
            return (0.0, 1.0, 0.0)
        if mover(board) == seat:
            moves = policy[board].items()
            weighted = [(p, value(child(board, ACTIONS.index(m)))) for m, p in moves]
        else:
            best = best_cells(board)
            weighted = [(1 / len(best), value(child(board, c))) for c in best]
        return tuple(sum(p * v[k] for p, v in weighted) for k in range(3))

    win, draw, loss = value(EMPTY * 9)
    return {"win": win, "draw": draw, "loss": loss}


def tictactoe_metrics(policy: Policy) -> dict[str, float]:
    """Optimal-move share, exact loss rate vs perfect play, tactics."""
    as_x, as_o = outcome_vs_perfect(policy, 0), outcome_vs_perfect(policy, 1)
    skills = tactics(policy)
    return {
        "optimal_move_share": optimal_move_share(policy),
        "vs_perfect/loss_rate": (as_x["loss"] + as_o["loss"]) / 2,
        "vs_perfect/loss_rate_as_x": as_x["loss"],
        "vs_perfect/loss_rate_as_o": as_o["loss"],
        "vs_perfect/draw_rate": (as_x["draw"] + as_o["draw"]) / 2,
        "tactics/take_win": skills["take_win"],
        "tactics/block": skills["block"],
        "positions": len(reachable_positions()),
    }


def minimax_policy() -> Policy:
    """Perfect play: uniform over the minimax-optimal moves of every board."""
    policy = {}
    for board in reachable_positions():
        best = best_cells(board)
        policy[board] = {ACTIONS[c]: 1 / len(best) for c in best}
    return policy


def _check(policy: Policy, boards: tuple[str, ...]) -> None:
    missing = [b for b in boards if b not in policy]
    if missing:
        raise ValueError(f"the policy lacks {len(missing)} reachable boards, e.g. {missing[0]!r}")


def exact_positions(**game_kwargs) -> dict[str, Game]:
    """Every reachable board with a player to move, as a positioned match. (TicTacToe has no
    constructor options; any given are refused as the game itself would refuse them.)"""
    if game_kwargs:
        raise TypeError(f"TicTacToe takes no options, got {sorted(game_kwargs)}")
    return {board: position_game(board) for board in reachable_positions()}


EXACT = ExactMetrics(exact_positions, tictactoe_metrics, headline="vs_perfect/loss_rate",
                     label="loss/perfect")
