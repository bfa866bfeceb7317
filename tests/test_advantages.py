"""RAE checked against hand-computed values."""

import pytest

from spiral.learning.advantages import RoleBaselines, role_conditioned_advantages
from spiral.records import Episode, Turn


def turn(player, k):
    return Turn("G", player, k, [1, 2], [3, 4], [-0.5, -0.5], "x", "[a]")


def episode(returns, turns, players=(0, 1), game="G"):
    return Episode(game, 0, players, turns=turns, returns=returns)


def test_baseline_read_before_update_and_ema():
    baselines = RoleBaselines(decay=0.5, values={"G/0": 0.4, "G/1": -0.2})
    eps = [episode((1.0, -1.0), [turn(0, 0), turn(1, 1)]),
           episode((-1.0, 1.0), [turn(0, 0), turn(1, 1)])]
    samples = role_conditioned_advantages(eps, baselines, drop_zero=False)
    # both episodes use the baselines as they were before this step
    assert [s.advantage for s in samples] == pytest.approx([0.6, -0.8, -1.4, 1.2])
    # EMA in episode order: 0.4 -> 0.5*0.4+0.5*1 = 0.7 -> 0.5*0.7+0.5*(-1) = -0.15
    assert baselines.get("G", 0) == pytest.approx(-0.15)
    # -0.2 -> 0.5*-0.2+0.5*-1 = -0.6 -> 0.5*-0.6+0.5*1 = 0.2
    assert baselines.get("G", 1) == pytest.approx(0.2)


def test_every_turn_of_a_player_gets_its_advantage_and_gamma_discounts_earlier_turns():
    baselines = RoleBaselines(decay=0.9)
    ep = episode((2.0, -2.0), [turn(0, 0), turn(1, 1), turn(0, 2), turn(1, 3), turn(0, 4)])
    samples = role_conditioned_advantages([ep], baselines, gamma=0.5, drop_zero=False)
    p0 = [s.advantage for s in samples if s.player == 0]
    p1 = [s.advantage for s in samples if s.player == 1]
    assert p0 == pytest.approx([0.5, 1.0, 2.0])  # gamma^2*2, gamma*2, 2 (baseline 0)
    assert p1 == pytest.approx([-1.0, -2.0])
    assert baselines.get("G", 0) == pytest.approx(0.2)


def test_gamma_discounts_the_advantage_not_only_the_return():
    """SPIRAL's gamma^k * (R - b): hand-computed with b = 0.5 for player 0, -0.25 for player 1."""
    baselines = RoleBaselines(decay=0.9, values={"G/0": 0.5, "G/1": -0.25})
    ep = episode((2.0, -2.0), [turn(0, 0), turn(1, 1), turn(0, 2), turn(1, 3), turn(0, 4)])
    samples = role_conditioned_advantages([ep], baselines, gamma=0.5, drop_zero=False)
    p0 = [s.advantage for s in samples if s.player == 0]
    p1 = [s.advantage for s in samples if s.player == 1]
    assert p0 == pytest.approx([0.375, 0.75, 1.5])  # 0.25*1.5, 0.5*1.5, 1.5
    assert p1 == pytest.approx([-0.875, -1.75])  # 0.5*(-1.75), -1.75
    assert baselines.get("G", 0) == pytest.approx(0.9 * 0.5 + 0.1 * 2.0)


def test_reinforce_ablation_ignores_baseline_but_still_tracks_it():
    baselines = RoleBaselines(decay=0.5, values={"G/0": 0.7})
    ep = episode((1.0, -1.0), [turn(0, 0), turn(1, 1)])
    samples = role_conditioned_advantages([ep], baselines, rae=False)
    assert [s.advantage for s in samples] == [1.0, -1.0]
    assert baselines.get("G", 0) == pytest.approx(0.85)


def test_zero_advantage_turns_dropped_and_baselines_per_game():
    baselines = RoleBaselines(decay=0.5, values={"A/0": 1.0, "B/0": -1.0})
    eps = [episode((1.0, -1.0), [turn(0, 0)], players=(0,), game="A"),
           episode((1.0, -1.0), [turn(0, 0)], players=(0,), game="B")]
    for ep in eps:
        for t in ep.turns:
            t.game_id = ep.game_id
    samples = role_conditioned_advantages(eps, baselines, drop_zero=True)
    assert [(s.game_id, s.advantage) for s in samples] == [("B", 2.0)]
    assert "A/1" not in baselines.values  # seat 1 was the fixed opponent's


def test_state_dict_round_trip_and_bad_decay():
    baselines = RoleBaselines(decay=0.95, values={"G/0": 0.25})
    again = RoleBaselines.from_state_dict(baselines.state_dict())
    assert again.values == baselines.values and again.decay == 0.95
    with pytest.raises(ValueError):
        RoleBaselines(decay=1.0)
