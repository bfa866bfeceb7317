"""SimpleNegotiation: two players trade resources they value differently.

Rules (after TextArena's SimpleNegotiation, the negotiation game of SPIRAL):

- Resource types default to Wheat, Wood, Sheep, Brick and Ore. At the start each player gets a
  random integer quantity of every resource (``quantity_range``, inclusive) and a private
  per-unit value for every resource: the resource's base value plus or minus up to 20%.
- Player 0 moves first; players alternate. On a turn the player does exactly one of:
  ``[Offer: 2 Wheat, 1 Wood -> 3 Sheep]`` — what the offerer gives -> what it wants. It may only
  give resources it holds in those amounts; each side names at least one unit; a resource
  may not appear on both sides. A new offer replaces any pending one.
  ``[Accept]`` — only when the opponent's offer is pending and this player holds what it asks
  for; the trade is executed.
  ``[Deny]`` — rejects the pending offer, or passes when there is none.
  An offer stays pending for exactly one turn: the reply (accept, deny or counter-offer)
  resolves it.
- After ``max_turns`` turns in total the match ends. Each player's gain is the change of its
  inventory value measured with its own private values; the larger gain wins (+1 / -1), equal
  gains draw (0 / 0).

Information: a player sees its own holdings and values, the public action history and the
offer pending to it. The opponent's holdings and values stay private (as in TextArena); trades
are public, so holdings can be partly inferred. Resources are conserved by every trade.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from envs.core import answer_text, format_moves, normalize

BASE_VALUES = {"Wheat": 5, "Wood": 10, "Sheep": 15, "Brick": 25, "Ore": 40}
ACCEPT, DENY = "[Accept]", "[Deny]"
OFFER_FORM = "[Offer: <amount> <Resource>, ... -> <amount> <Resource>, ...]"
RULES = (
    "Negotiation game: trade resources so that the value of your inventory (by your own private "
    "values) grows more than your opponent's grows by theirs.\n"
    "Offer = what you give -> what you want; only give what you hold. A new offer replaces the "
    "pending one; accepting executes the trade."
)

Bundle = tuple[tuple[str, int], ...]  # (resource, amount) pairs in the game's resource order
_OFFER = re.compile(r"^offer\s*:?\s*(.*?)\s*(?:->|→|=>)\s*(.*)$")
_ITEM = re.compile(r"^(\d{1,9})\s*([a-z]+)$")  # amounts up to 9 digits
_ITEM_SEPARATOR = re.compile(r"\s*(?:,|\+|&|\band\b)\s*")
_MAX_SAMPLED_AMOUNT = 5


@dataclass(frozen=True)
class Offer:
    """A pending trade: ``offerer`` gives ``give`` and receives ``want``."""

    offerer: int
    give: Bundle
    want: Bundle


@dataclass
class NegotiationState:
    """Everything about one match; ``holdings[p][resource]`` and ``values[p][resource]``."""

    holdings: list[dict[str, int]]
    values: list[dict[str, int]]
    start_values: list[int]
    player: int = 0
    turn: int = 0
    pending: Offer | None = None  # always made by the player not to move
    history: list[str] = field(default_factory=list)


def bundle_text(bundle: Bundle) -> str:
    return ", ".join(f"{amount} {resource}" for resource, amount in bundle)


def offer_text(give: Bundle, want: Bundle) -> str:
    """The canonical action for an offer, e.g. ``[Offer: 2 Wheat -> 1 Ore]``."""
    return f"[Offer: {bundle_text(give)} -> {bundle_text(want)}]"


class SimpleNegotiation:
    """Two-player resource trading; see the module docstring for the rules."""

    num_players = 2

    def __init__(
        self,
        resources: dict[str, int] | None = None,
        quantity_range: tuple[int, int] = (5, 25),
        max_turns: int = 10,
    ) -> None:
        """``resources`` maps each resource name (in display order) to its base value;
        ``quantity_range`` bounds the starting quantities (inclusive)."""
        self.base_values = dict(BASE_VALUES if resources is None else resources)
        self.resources = list(self.base_values)
        distinct = len({r.lower() for r in self.resources}) == len(self.resources)
        alphabetic = all(r.isascii() and r.isalpha() for r in self.resources)
        if len(self.resources) < 2 or not distinct or not alphabetic:
            raise ValueError(f"need >= 2 distinct alphabetic resource names: {self.resources}")
        self.quantity_range = tuple(quantity_range)
        self.max_turns = max_turns
        self.state: NegotiationState | None = None

    # ----------------------------------------------------------------- protocol

    def reset(self, seed: int) -> None:
        rng = random.Random(seed)
        low, high = self.quantity_range
        holdings = [{r: rng.randint(low, high) for r in self.resources} for _ in range(2)]
        values = [
            {r: _private_value(rng, b) for r, b in self.base_values.items()} for _ in range(2)
        ]
        self.state = NegotiationState(holdings, values, start_values=[0, 0])
        self.state.start_values = [self.inventory_value(p) for p in range(2)]

    def current_player(self) -> int:
        return self._require_state().player

    def legal_actions(self) -> None:
        return None

    def is_terminal(self) -> bool:
        return self._require_state().turn >= self.max_turns

    def returns(self) -> tuple[float, float]:
        if not self.is_terminal():
            return (0.0, 0.0)
        gain0, gain1 = self.gain(0), self.gain(1)
        if gain0 == gain1:
            return (0.0, 0.0)
        return (1.0, -1.0) if gain0 > gain1 else (-1.0, 1.0)

    def parse_action(self, text: str) -> str | None:
        """Model answer -> canonical action valid now, or None. Never raises."""
        if self.state is None or self.is_terminal():
            return None
        move = self._parse_move(normalize(answer_text(text)).strip("[] "))
        if move == "accept":
            return ACCEPT if self.can_accept() else None
        if move == "deny":
            return DENY
        if isinstance(move, Offer) and self._can_give(move.offerer, move.give):
            return offer_text(move.give, move.want)
        return None

    def step(self, action: str) -> None:
        if self.state is None or not isinstance(action, str) or self.parse_action(action) != action:
            raise ValueError(f"not a valid canonical action now: {action!r}")
        state = self.state
        if action == ACCEPT:
            self._execute(state.pending)
            state.pending = None
        elif action == DENY:
            state.pending = None
        else:
            state.pending = self._parse_move(normalize(action))
        state.history.append(f"Player {state.player}: {action}")
        state.player = 1 - state.player
        state.turn += 1

    def observe(self, player: int) -> str:
        state = self._require_state()
        inventory = ", ".join(
            f"{r} {state.holdings[player][r]} x {state.values[player][r]}" for r in self.resources
        )
        lines = [
            RULES,
            f"You are Player {player}.",
            f"Your inventory (quantity x your value per unit): {inventory}.",
            f"Your inventory value: {self.inventory_value(player)} "
            f"(start {state.start_values[player]}).",
            "History:" if state.history else "History: none",
            *state.history,
        ]
        if self.is_terminal():
            return "\n".join([*lines, "The game is over."])
        lines.append(f"Turns left in the game: {self.max_turns - state.turn}.")
        if player != state.player:
            return "\n".join([*lines, f"Waiting for Player {state.player} to move."])
        lines.append(self._pending_line())
        moves = [OFFER_FORM, ACCEPT, DENY] if self.can_accept() else [OFFER_FORM, DENY]
        return "\n".join([*lines, format_moves(moves)])

    def render(self) -> str:
        state = self._require_state()
        lines = [f"turn {state.turn}/{self.max_turns}, to move: Player {state.player}"]
        for p in range(2):
            stock = ", ".join(
                f"{r} {state.holdings[p][r]}@{state.values[p][r]}" for r in self.resources
            )
            lines.append(
                f"Player {p}: {stock}; value {self.inventory_value(p)} (gain {self.gain(p):+d})"
            )
        pending = state.pending
        if pending is not None:
            lines.append(
                f"pending from Player {pending.offerer}: {offer_text(pending.give, pending.want)}"
            )
        return "\n".join([*lines, *state.history])

    # ----------------------------------------------------------------- queries

    def inventory_value(self, player: int) -> int:
        """``player``'s inventory valued with its own private values."""
        state = self._require_state()
        return sum(state.holdings[player][r] * state.values[player][r] for r in self.resources)

    def gain(self, player: int) -> int:
        return self.inventory_value(player) - self._require_state().start_values[player]

    def can_accept(self) -> bool:
        """Whether an offer is pending and the player to move holds what it asks for."""
        state = self._require_state()
        return state.pending is not None and self._can_give(state.player, state.pending.want)

    def sample_action(self, rng: random.Random) -> str:
        """A random valid canonical action: Accept (if valid), Deny or an offer, uniformly."""
        kinds = [DENY]
        if self.can_accept():
            kinds.append(ACCEPT)
        holdings = self._require_state().holdings[self.current_player()]
        held = [r for r in self.resources if holdings[r] > 0]
        if held:
            kinds.append("offer")
        kind = rng.choice(kinds)
        return kind if kind != "offer" else self._random_offer(rng, held)

    # ----------------------------------------------------------------- internals

    def _require_state(self) -> NegotiationState:
        if self.state is None:
            raise ValueError("call reset(seed) first")
        return self.state

    def _random_offer(self, rng: random.Random, held: list[str]) -> str:
        holdings = self._require_state().holdings[self.current_player()]
        give_names = rng.sample(held, rng.randint(1, min(2, len(held), len(self.resources) - 1)))
        others = [r for r in self.resources if r not in give_names]
        want_names = rng.sample(others, rng.randint(1, min(2, len(others))))
        give = {r: rng.randint(1, min(holdings[r], _MAX_SAMPLED_AMOUNT)) for r in give_names}
        want = {r: rng.randint(1, _MAX_SAMPLED_AMOUNT) for r in want_names}
        return offer_text(self._bundle(give), self._bundle(want))

    def _parse_move(self, answer: str) -> str | Offer | None:
        """A normalized answer -> "accept", "deny", an Offer by the player to move, or None."""
        if answer in ("accept", "deny"):
            return answer
        match = _OFFER.match(answer)
        if match is None:
            return None
        give, want = self._parse_side(match.group(1)), self._parse_side(match.group(2))
        if not give or not want or set(give) & set(want):
            return None
        return Offer(self.current_player(), self._bundle(give), self._bundle(want))

    def _parse_side(self, text: str) -> dict[str, int] | None:
        """``"2 wheat, 1 wood"`` -> ``{"Wheat": 2, "Wood": 1}``; None if any item is invalid."""
        amounts: dict[str, int] = {}
        for item in _ITEM_SEPARATOR.split(text):
            match = _ITEM.match(item)
            resource = None if match is None else self._resource_name(match.group(2))
            if resource is None or int(match.group(1)) <= 0:
                return None
            amounts[resource] = amounts.get(resource, 0) + int(match.group(1))
        return amounts

    def _resource_name(self, word: str) -> str | None:
        """Case-insensitive resource name, also in a plural ending in "s"; None if unknown."""
        by_lower = {r.lower(): r for r in self.resources}
        return by_lower.get(word) or (by_lower.get(word[:-1]) if word.endswith("s") else None)

    def _bundle(self, amounts: dict[str, int]) -> Bundle:
        return tuple((r, amounts[r]) for r in self.resources if r in amounts)

    def _can_give(self, player: int, bundle: Bundle) -> bool:
        holdings = self._require_state().holdings[player]
        return all(holdings[resource] >= amount for resource, amount in bundle)

    def _execute(self, offer: Offer) -> None:
        holdings = self._require_state().holdings
        giver, taker = holdings[offer.offerer], holdings[1 - offer.offerer]
        for resource, amount in offer.give:
            giver[resource] -= amount
            taker[resource] += amount
        for resource, amount in offer.want:
            taker[resource] -= amount
            giver[resource] += amount

    def _pending_line(self) -> str:
        pending = self._require_state().pending
        if pending is None:
            return "No offer is pending to you."
        line = (
            f"Pending offer to you: Player {pending.offerer} gives {bundle_text(pending.give)}"
            f" and wants {bundle_text(pending.want)}."
        )
        return line if self.can_accept() else line + " You lack the resources to accept it."


def _private_value(rng: random.Random, base: int) -> int:
    """A player's per-unit value: ``base`` plus or minus up to 20%, at least 1."""
    spread = base // 5
    return max(1, rng.randint(base - spread, base + spread))


class RuleBasedNegotiator:
    """Accepts offers that raise its own inventory value; otherwise offers one unit of its
    least valuable held resource for one unit of its most valuable other resource when that
    raises its value, and denies when no such trade exists. Uses only its own values."""

    name = "rule"

    def act(self, game: SimpleNegotiation, rng: random.Random) -> str:
        state = game.state
        me = game.current_player()
        values = state.values[me]
        pending = state.pending
        if pending is not None and game.can_accept():
            received = sum(values[r] * amount for r, amount in pending.give)
            paid = sum(values[r] * amount for r, amount in pending.want)
            if received > paid:
                return ACCEPT
        held = [r for r in game.resources if state.holdings[me][r] > 0]
        if not held:
            return DENY
        order = {r: rng.random() for r in game.resources}  # random tie-break between equals
        give = min(held, key=lambda r: (values[r], order[r]))
        want = max((r for r in game.resources if r != give), key=lambda r: (values[r], order[r]))
        if values[want] <= values[give]:
            return DENY
        return offer_text(((give, 1),), ((want, 1),))
