"""Game transcripts: ``games/step_<N>.jsonl``, one match per line, for inspection and replay
(``python -m spiral.replay``). Training and ``spiral.evaluate`` write them the same way."""

from __future__ import annotations

import json
from pathlib import Path

from spiral.records import Episode


def save_games(folder: Path, step: int, episodes: list[Episode]) -> Path:
    """Write ``episodes`` to ``folder/step_<step>.jsonl``; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:06d}.jsonl"
    with open(path, "w") as f:
        for ep in episodes:
            f.write(json.dumps(transcript(ep, step)) + "\n")
    return path


def transcript(ep: Episode, step: int) -> dict:
    """A JSON-able record of one match, for inspection and replay."""
    return {
        "step": step, "game_id": ep.game_id, "seed": ep.seed, "opponent": ep.opponent,
        "model_players": list(ep.model_players), "returns": list(ep.returns),
        "invalid_player": ep.invalid_player, "truncated": ep.truncated,
        "moves": [[p, m] for p, m in ep.moves],
        "turns": [{"player": t.player, "turn": t.turn, "observation": t.observation,
                   "response": t.text, "action": t.action, "cut": t.cut}
                  for t in ep.turns],
    }
