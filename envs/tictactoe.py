"""TicTacToe: three in a row on a 3x3 grid, as in open_spiel's ``tic_tac_toe``.

Rules: the cells are numbered 0..8 row by row. Player 0 plays X and moves first, player 1
plays O; players alternate marking one free cell, the move ``[4]`` marking cell 4. A player who
completes a row, column or diagonal of their mark wins (+1, the other -1); a full board with no
line is a draw (0 each). The whole board is public: there is no private information.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envs.core import format_moves, match_action

MARKS = "XO"  # player 0 is X, player 1 is O
EMPTY = "."
ACTIONS = [f"[{cell}]" for cell in range(9)]  # ACTIONS[cell] marks that cell
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
LINES_THROUGH = tuple(tuple(line for line in LINES if cell in line) for cell in range(9))
RULES = (
    "Tic-Tac-Toe: players take turns marking a free cell of the 3x3 board; the first to get "
    "three of their marks in a row, column or diagonal wins. Player 0 is X and moves first."
)


@dataclass
class TicTacToeState:
    """The board (``EMPTY``, ``"X"`` or ``"O"`` per cell, row-major), who moves, the winner."""

    board: list[str] = field(default_factory=lambda: [EMPTY] * 9)
    player: int = 0
    moves_made: int = 0
    winner: int | None = None


class TicTacToe:
    """3x3 TicTacToe; see the module docstring for the rules."""

    num_players = 2

    def __init__(self) -> None:
        self._state: TicTacToeState | None = None

    def reset(self, seed: int) -> None:
        """New match; TicTacToe has no chance, so ``seed`` changes nothing."""
        self._state = TicTacToeState()

    def current_player(self) -> int:
        return self._require_state().player

    def legal_actions(self) -> list[str]:
        state = self._require_state()
        if self._over(state):
            return []
        return [ACTIONS[cell] for cell, mark in enumerate(state.board) if mark == EMPTY]

    def parse_action(self, text: str) -> str | None:
        """Model answer (``4``, ``[4]``, ``\\boxed{4}``) -> canonical legal action, or None."""
        if self._state is None:
            return None
        return match_action(text, self.legal_actions())

    def step(self, action: str) -> None:
        state = self._require_state()
        if self._over(state):
            raise ValueError("the game is over")
        if action not in self.legal_actions():
            raise ValueError(f"illegal action {action!r}; legal: {self.legal_actions()}")
        cell = ACTIONS.index(action)
        mark = MARKS[state.player]
        board = state.board
        board[cell] = mark
        state.moves_made += 1
        if any(board[a] == board[b] == board[c] for a, b, c in LINES_THROUGH[cell]):
            state.winner = state.player
        state.player = 1 - state.player

    def is_terminal(self) -> bool:
        return self._over(self._require_state())

    def returns(self) -> tuple[float, float]:
        winner = self._require_state().winner
        if winner is None:
            return (0.0, 0.0)
        return (1.0, -1.0) if winner == 0 else (-1.0, 1.0)

    def observe(self, player: int) -> str:
        state = self._require_state()
        lines = [
            RULES,
            f"You are Player {player} ({MARKS[player]}).",
            "Board (free cells show their number):",
            board_text(state.board),
        ]
        if self._over(state):
            lines.append("The game is over. " + self._result_text(state))
        elif player == state.player:
            lines.append(format_moves(self.legal_actions()))
        else:
            lines.append(f"Waiting for Player {state.player}.")
        return "\n".join(lines)

    def render(self) -> str:
        state = self._require_state()
        return f"{board_text(state.board)}\nto move: P{state.player}, winner: {state.winner}"

    def board(self) -> str:
        """The public board as 9 characters (``"X"``, ``"O"`` or ``"."``), row-major."""
        return "".join(self._require_state().board)

    # ----------------------------------------------------------------- internals

    def _require_state(self) -> TicTacToeState:
        if self._state is None:
            raise RuntimeError("call reset(seed) before using the game")
        return self._state

    @staticmethod
    def _over(state: TicTacToeState) -> bool:
        return state.winner is not None or state.moves_made == 9

    @staticmethod
    def _result_text(state: TicTacToeState) -> str:
        if state.winner is None:
            return "It is a draw."
        return f"Player {state.winner} ({MARKS[state.winner]}) wins."


def board_text(board: list[str] | str) -> str:
    """Rows like `` X | O | 2 `` separated by ``---+---+---``; free cells show their number."""
    shown = [str(cell) if mark == EMPTY else mark for cell, mark in enumerate(board)]
    rows = [" " + " | ".join(shown[row : row + 3]) + " " for row in (0, 3, 6)]
    return "\n---+---+---\n".join(rows)
