"""Env speed with uniform random play: games/s and env steps/s per game.

    python bench/env_speed.py [--quick]

(Named env_speed, not envs: a bench/envs.py would shadow the envs package for every script
run from bench/.)

A step is observe() + legal move choice + parse_action() + step(): what the rollout does per
move besides generation. Target: >= 20,000 steps/s for Kuhn Poker and TicTacToe, so env work
is negligible next to model inference.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import record, table  # noqa: E402

import envs  # noqa: E402

GAMES = ["KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1", "openspiel/leduc_poker",
         "openspiel/connect_four", "textarena/TicTacToe-v0"]


def run(game_id: str, seconds: float) -> tuple[float, float]:
    rng = random.Random(0)
    games = steps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        game = envs.make(game_id)
        game.reset(seed=games)
        while not game.is_terminal():
            game.observe(game.current_player())
            legal = game.legal_actions()
            move = rng.choice(legal) if legal is not None else game.sample_action(rng)
            game.step(game.parse_action(move))
            steps += 1
        games += 1
    elapsed = time.perf_counter() - started
    return games / elapsed, steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s per game instead of 3 s")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 3.0
    rows = []
    for game_id in GAMES:
        games_per_s, steps_per_s = run(game_id, seconds)
        record("envs", f"{game_id}/steps_per_s", round(steps_per_s), "steps/s")
        record("envs", f"{game_id}/games_per_s", round(games_per_s), "games/s")
        rows.append((game_id, f"{games_per_s:,.0f}", f"{steps_per_s:,.0f}"))
    print(table(rows, ("game", "games/s", "steps/s")))


if __name__ == "__main__":
    main()
