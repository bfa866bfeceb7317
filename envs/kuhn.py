"""Kuhn Poker: the smallest interesting poker game, as in open_spiel's ``kuhn_poker``.

Rules of one hand: the deck is J < Q < K. Each player antes 1 chip and is dealt one private
card; the third card stays hidden. The first player may ``[check]`` or ``[bet]`` (1 chip). After
a check the second player may ``[check]`` (showdown for the antes) or ``[bet]``; facing a bet a
player may ``[call]`` (showdown for 2 chips each) or ``[fold]`` (the bettor wins the antes). At
a showdown the higher card wins. The winner's chip gain is the loser's loss: +-1 or +-2.

With ``rounds=1`` (the default) player 0 acts first and the returns are the chip payoffs,
identical to open_spiel's ``kuhn_poker``. With ``rounds > 1`` this is SPIRAL's multi-hand
match: every hand is a fresh deal from the game's own RNG, the first player alternates
(player 0 opens hand 1, player 1 opens hand 2, ...), chips accumulate, and the match return is
+1 / -1 / 0 by the sign of the chip total.

Information states (for exploitability): the key of a decision is ``<card><history>`` where
``history`` holds one letter per move of the current hand, ``p`` for a pass (check or fold) and
``b`` for a bet or call, e.g. ``"Kpb"``: the opener holds K, checked and now faces a bet. These
map one-to-one onto open_spiel's keys (``"2pb"``: J, Q, K are 0, 1, 2).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from envs.core import format_moves, match_action

CARDS = "JQK"  # in rank order
CHECK, BET, CALL, FOLD = "[check]", "[bet]", "[call]", "[fold]"
OPEN_ACTIONS = (CHECK, BET)  # nobody has bet yet this hand
FACING_BET_ACTIONS = (CALL, FOLD)
PASS_ACTIONS = (CHECK, FOLD)  # written "p" in a history; BET and CALL are written "b"

# The betting histories that end a hand: showdowns, where the higher card wins the stake from
# the other player, and folds, with the opener's chip gain (the other player folds / it folds).
_SHOWDOWN_STAKE = {"pp": 1, "bb": 2, "pbb": 2}
_FOLD_GAIN = {"bp": 1, "pbp": -1}

# The 12 decision points of one hand, grouped by history ("", "p", "b", "pb"), cards J, Q, K:
# J Q K Jp Qp Kp Jb Qb Kb Jpb Qpb Kpb.
INFOSTATES: list[str] = [card + history for history in ("", "p", "b", "pb") for card in CARDS]

RULES = (
    "Kuhn Poker: a 3-card deck J < Q < K. Each player antes 1 chip and gets one private card.\n"
    "Check or bet 1 chip; facing a bet, call or fold. At showdown the higher card wins the pot."
)


@dataclass
class KuhnState:
    """One match: the current hand's deal and betting plus the running chip totals."""

    cards: tuple[str, str]  # cards[p] is player p's card in the current hand
    hand: int = 0  # 0-based hand number
    opener: int = 0  # who acts first in the current hand
    history: str = ""  # the current hand's moves as "p"/"b" letters
    moves: list[str] = field(default_factory=list)  # the current hand's canonical actions
    chips: list[int] = field(default_factory=lambda: [0, 0])  # net chips won so far
    over: bool = False


class KuhnPoker:
    """Kuhn Poker, one hand or a multi-hand match; see the module docstring for the rules."""

    num_players = 2

    def __init__(self, rounds: int = 1) -> None:
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
        self.rounds = rounds
        self._rng = random.Random(0)  # replaced by reset(seed)
        self._state: KuhnState | None = None
        self._rules = RULES
        if rounds > 1:
            self._rules += (
                f"\nThe match has {rounds} hands; the first player alternates each hand. "
                "Whoever has won more chips at the end wins the match."
            )

    # ----------------------------------------------------------------- protocol

    def reset(self, seed: int, deal: tuple[str, str] | None = None) -> None:
        """New match from ``random.Random(seed)``; ``deal`` fixes the first hand's cards
        (player 0's, player 1's), e.g. ``("K", "J")``, for enumeration and tests."""
        self._rng = random.Random(seed)
        cards = self._deal() if deal is None else _checked_deal(deal)
        self._state = KuhnState(cards=cards)

    def current_player(self) -> int:
        state = self._require_state()
        return state.opener ^ (len(state.history) & 1)

    def legal_actions(self) -> list[str]:
        state = self._require_state()
        if state.over:
            return []
        return list(FACING_BET_ACTIONS if state.history.endswith("b") else OPEN_ACTIONS)

    def parse_action(self, text: str) -> str | None:
        """Model answer -> canonical legal action, or None. Never raises."""
        if self._state is None:
            return None
        return match_action(text, self.legal_actions())

    def step(self, action: str) -> None:
        state = self._require_state()
        if state.over:
            raise ValueError("the game is over")
        if action not in self.legal_actions():
            raise ValueError(f"illegal action {action!r}; legal: {self.legal_actions()}")
        state.moves.append(action)
        state.history += "p" if action in PASS_ACTIONS else "b"
        gain = self._opener_gain(state)
        if gain is not None:
            state.chips[state.opener] += gain
            state.chips[1 - state.opener] -= gain
            self._next_hand(state)

    def is_terminal(self) -> bool:
        return self._require_state().over

    def returns(self) -> tuple[float, float]:
        state = self._require_state()
        if not state.over:
            return (0.0, 0.0)
        if self.rounds == 1:
            return (float(state.chips[0]), float(state.chips[1]))
        lead = state.chips[0] - state.chips[1]
        sign = (lead > 0) - (lead < 0)
        return (float(sign), float(-sign))

    def observe(self, player: int) -> str:
        state = self._require_state()
        lines = [self._rules, f"You are Player {player}."]
        if self.rounds > 1:
            lines.append(f"Hand {state.hand + 1} of {self.rounds}. {_chip_line(state.chips)}")
        lines.append(f"Your card: {state.cards[player]}")
        lines.append(self._betting_text(state))
        if state.over:
            lines.append(f"The game is over. {_chip_line(state.chips)}")
        elif player == self.current_player():
            lines.append(format_moves(self.legal_actions()))
        else:
            lines.append(f"Waiting for Player {self.current_player()}.")
        return "\n".join(lines)

    def render(self) -> str:
        state = self._require_state()
        return (
            f"KuhnPoker hand {state.hand + 1}/{self.rounds}: cards P0={state.cards[0]} "
            f"P1={state.cards[1]}, opener P{state.opener}, betting {state.moves}, "
            f"chips {state.chips}, over={state.over}"
        )

    # ----------------------------------------------------------------- information

    def private_card(self, player: int) -> str:
        """``player``'s card in the current hand (the only private information)."""
        return self._require_state().cards[player]

    def hand_history(self) -> str:
        """The current hand's public betting as ``p``/``b`` letters."""
        return self._require_state().history

    def chips(self) -> tuple[int, int]:
        """Net chips each player has won so far in the match (public)."""
        return tuple(self._require_state().chips)

    # ----------------------------------------------------------------- internals

    def _require_state(self) -> KuhnState:
        if self._state is None:
            raise RuntimeError("call reset(seed) before using the game")
        return self._state

    def _deal(self) -> tuple[str, str]:
        first, second = self._rng.sample(CARDS, 2)
        return (first, second)

    def _opener_gain(self, state: KuhnState) -> int | None:
        """The opener's chip gain if the hand just ended, else None."""
        history = state.history
        if history in _FOLD_GAIN:
            return _FOLD_GAIN[history]
        stake = _SHOWDOWN_STAKE.get(history)
        if stake is None:
            return None
        opener_card, other_card = state.cards[state.opener], state.cards[1 - state.opener]
        return stake if CARDS.index(opener_card) > CARDS.index(other_card) else -stake

    def _next_hand(self, state: KuhnState) -> None:
        if state.hand + 1 >= self.rounds:
            state.over = True
            return
        state.hand += 1
        state.opener = state.hand & 1
        state.cards = self._deal()
        state.history = ""
        state.moves = []

    def _betting_text(self, state: KuhnState) -> str:
        if not state.moves:
            return "Betting so far this hand: none."
        lines = [f"Player {state.opener ^ (i & 1)}: {move}" for i, move in enumerate(state.moves)]
        return "Betting so far this hand:\n" + "\n".join(lines)


def _chip_line(chips: list[int]) -> str:
    return f"Chips won: Player 0: {chips[0]:+d}, Player 1: {chips[1]:+d}."


def _checked_deal(deal: tuple[str, str]) -> tuple[str, str]:
    cards = tuple(deal)
    if len(cards) != 2 or not all(c in CARDS for c in cards) or cards[0] == cards[1]:
        raise ValueError(f"a deal is two different cards from {CARDS!r}, got {deal!r}")
    return (cards[0], cards[1])


# --------------------------------------------------------------------------- info states


def infostate_of(game: KuhnPoker) -> str:
    """The current player's information-state key in the current hand, e.g. ``"Qpb"``.

    Works for any ``rounds``: within a hand the key depends only on the player's own card and
    the hand's public betting (its length tells whether the player opened the hand)."""
    return game.private_card(game.current_player()) + game.hand_history()


def infostate_game(key: str, opponent_card: str | None = None, rounds: int = 1) -> KuhnPoker:
    """A game positioned at information state ``key`` (one of ``INFOSTATES``) of its first hand
    (of ``rounds``; chips 0-0, player 0 opening).

    The player to move holds ``key[0]``; the opponent holds ``opponent_card`` (by default the
    lowest other card). The acting player's observation does not depend on that choice."""
    if key not in INFOSTATES:
        raise ValueError(f"unknown Kuhn information state {key!r}; expected one of {INFOSTATES}")
    card, history = key[0], key[1:]
    others = [c for c in CARDS if c != card]
    opponent_card = others[0] if opponent_card is None else opponent_card
    if opponent_card not in others:
        raise ValueError(f"opponent_card must be one of {others}, got {opponent_card!r}")
    mover = len(history) & 1
    cards = (card, opponent_card) if mover == 0 else (opponent_card, card)
    game = KuhnPoker(rounds=rounds)
    game.reset(seed=0, deal=cards)
    for letter in history:
        game.step(action_for(letter, game.legal_actions()))
    return game


def action_for(letter: str, legal: list[str]) -> str:
    """The legal action written ``letter`` (``p``: check/fold, ``b``: bet/call)."""
    return next(a for a in legal if (a in PASS_ACTIONS) == (letter == "p"))


def answer_text(move: str, game: KuhnPoker) -> str:
    """The canonical answer for ``move``: a brief thought naming the seat, then the card and
    the move together, then the boxed move ("I am Player 1. Q calls. \\boxed{[call]}").

    The embedded model is pretrained on this form: with the move chosen right at the card's
    token, a 1M-parameter model learns card-dependent play (``spiral.models.tiny``)."""
    player = game.current_player()
    card, verb = game.private_card(player), move.strip("[]") + "s"
    return f"I am Player {player}. {card} {verb}. \\boxed{{{move}}}"
