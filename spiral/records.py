"""Typed records that flow through the loop: turns and episodes from the rollout, samples for
the learner. Metrics are computed from these, never from padded tensors. Attempts are the
task rollout's records: one verified response to a single-turn task problem."""

from __future__ import annotations

from dataclasses import dataclass, field

from envs.core import last_boxed


@dataclass
class Turn:
    """One move of one player, as the policy produced it."""

    game_id: str
    player: int
    turn: int  # index of this move in the match (both players' moves count)
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]  # sampling log-probs of response_ids under the actor
    text: str  # decoded response
    action: str | None  # canonical move, None when the answer was invalid
    observation: str = ""  # the observation text (kept for transcripts)
    cut: bool = False  # the response hit the token limit (an invalid move, told apart)

    def invalid_reason(self) -> str | None:
        """Why the move was invalid: "cut" (at the token limit), "unparseable" (no
        ``\\boxed{}`` answer) or "illegal" (a boxed answer that is no legal move); None if valid."""
        if self.action is not None:
            return None
        if self.cut:
            return "cut"
        return "unparseable" if last_boxed(self.text) is None else "illegal"


@dataclass
class Episode:
    """One finished match."""

    game_id: str
    seed: int
    model_players: tuple[int, ...]  # seats played by the policy: (0, 1) in self-play
    turns: list[Turn] = field(default_factory=list)  # the policy's turns only
    moves: list[tuple[int, str]] = field(default_factory=list)  # every move: (player, move)
    returns: tuple[float, ...] = (0.0, 0.0)
    invalid_player: int | None = None  # who made the invalid move that ended the match
    truncated: bool = False  # stopped at max_turns (scored as a draw)
    opponent: str = "self"

    def outcome(self, player: int) -> str:
        """'win', 'loss', 'draw' or 'invalid' from ``player``'s point of view."""
        if self.invalid_player == player:
            return "invalid"
        mine, theirs = self.returns[player], self.returns[1 - player]
        return "win" if mine > theirs else "loss" if mine < theirs else "draw"


@dataclass
class Attempt:
    """One sampled response to a task problem, verified by the task."""

    task_id: str
    key: str  # the problem's stable key (tasks.Problem.key)
    category: str
    difficulty: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]  # sampling log-probs of response_ids under the actor
    text: str  # decoded response
    cut: bool  # the response hit the token limit
    reward: float  # the task's reward in [0, 1] (0 for a cut response unless parsed as is)
    correct: bool
    formatted: bool  # an answer in the required format was found
    group: int  # index of the problem within the step: its responses form one group


@dataclass
class Sample:
    """One turn prepared for the learner."""

    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float
    actor_logprobs: list[float]
    game_id: str = ""
    player: int = 0

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)
