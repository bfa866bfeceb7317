"""Role-conditioned advantage estimation (RAE), SPIRAL's variance reduction for self-play.

In a zero-sum game played by one policy in both seats, the expected return of a seat is not 0:
seat 0 of Kuhn Poker is worth -1/18 at equilibrium and first-move advantages are common. RAE
keeps an exponential moving average of the return per (game, player) and subtracts it:

    A(game, player) = R_player - b[game, player]        (b read before this step's update)
    b[game, player] <- decay * b + (1 - decay) * R       (once per episode, in episode order)

Every turn of a player in a match gets that player's advantage, optionally discounted so that
a turn followed by k more turns of the same player gets gamma^k * (R - b), as SPIRAL does: the
baseline estimates R, so it is discounted with it. (Discounting R alone, gamma^k * R - b, would
push every early turn towards -b whatever the outcome.) ``rae=False`` gives plain REINFORCE
(A = R), the paper's ablation.
"""

from __future__ import annotations

import copy

from spiral.distributed import Dist, all_gather_objects
from spiral.records import Episode, Sample


class RoleBaselines:
    """EMA baseline per (game, player); part of the checkpoint."""

    def __init__(self, decay: float = 0.95, values: dict[str, float] | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"baseline decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.values: dict[str, float] = dict(values or {})

    @staticmethod
    def key(game_id: str, player: int) -> str:
        return f"{game_id}/{player}"

    def get(self, game_id: str, player: int) -> float:
        return self.values.get(self.key(game_id, player), 0.0)

    def update(self, game_id: str, player: int, ret: float) -> None:
        key = self.key(game_id, player)
        self.values[key] = self.decay * self.values.get(key, 0.0) + (1.0 - self.decay) * ret

    def state_dict(self) -> dict:
        return {"decay": self.decay, "values": dict(self.values)}

    @classmethod
    def from_state_dict(cls, state: dict) -> RoleBaselines:
        return cls(state["decay"], state["values"])


def role_conditioned_advantages(
    episodes: list[Episode],
    baselines: RoleBaselines,
    *,
    rae: bool = True,
    gamma: float = 1.0,
    drop_zero: bool = True,
) -> list[Sample]:
    """Samples for every policy turn, then the baselines updated with this step's returns."""
    frozen = {
        (ep.game_id, p): baselines.get(ep.game_id, p) for ep in episodes for p in ep.model_players
    }
    samples = []
    for ep in episodes:
        for player in ep.model_players:
            baseline = frozen[ep.game_id, player] if rae else 0.0
            samples += _player_samples(ep, player, baseline, gamma, drop_zero)
    for ep in episodes:
        for player in ep.model_players:
            baselines.update(ep.game_id, player, ep.returns[player])
    return samples


def _player_samples(
    ep: Episode, player: int, baseline: float, gamma: float, drop_zero: bool
) -> list[Sample]:
    turns = [t for t in ep.turns if t.player == player]
    samples = []
    for k, turn in enumerate(turns):
        advantage = gamma ** (len(turns) - 1 - k) * (ep.returns[player] - baseline)
        if drop_zero and advantage == 0.0:
            continue
        samples.append(
            Sample(
                prompt_ids=turn.prompt_ids,
                response_ids=turn.response_ids,
                advantage=advantage,
                actor_logprobs=turn.logprobs,
                game_id=ep.game_id,
                player=player,
            )
        )
    return samples


def role_returns(episodes: list[Episode]) -> list[tuple[str, int, float]]:
    """(game, player, return) for every policy seat, in the order RAE updates its baselines."""
    return [(ep.game_id, p, float(ep.returns[p])) for ep in episodes for p in ep.model_players]


def shared_advantages(
    episodes: list[Episode], baselines: RoleBaselines, dist: Dist, **kwargs
) -> list[Sample]:
    """RAE samples of this rank's episodes; ``baselines`` advance with every rank's returns.

    Advantages use the baselines as they stood before the step (as on one process); then each
    rank applies all ranks' returns in rank order, so ``baselines`` stays identical everywhere.
    ``kwargs`` are those of ``role_conditioned_advantages`` (rae, gamma, drop_zero).
    """
    samples = role_conditioned_advantages(episodes, copy.deepcopy(baselines), **kwargs)
    for shard in all_gather_objects(role_returns(episodes), dist):
        for game_id, player, ret in shard:
            baselines.update(game_id, player, ret)
    return samples
