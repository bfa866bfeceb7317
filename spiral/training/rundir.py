"""The run directory (fixed layout): metrics.jsonl, checkpoints/, games/, config.yaml.

On resume from checkpoint ``C``, metric lines of steps after ``C`` (logged by the interrupted
run but not covered by a checkpoint) are dropped, so every step appears exactly once. A line
that is not a JSON object with an integer ``step`` (a torn write, a hand edit) is dropped too,
with a warning that counts them; the kept lines are rewritten in order, with nothing between.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path

from spiral.evaluate.games import outcome_rates
from spiral.evaluate.tasks import task_metrics
from spiral.records import Attempt, Episode
from spiral.rollout.selfplay import RolloutStats
from spiral.rollout.transcripts import save_games

log = logging.getLogger(__name__)


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metrics_path = self.path / "metrics.jsonl"
        self.trackers = None  # TensorBoard / W&B (spiral.training.trackers), opened by prepare

    def prepare(self, start: int, cfg) -> None:
        """Create the layout, save the resolved config, drop metrics past ``start``, open the
        trackers ``cfg.tracking`` asks for."""
        (self.path / "games").mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        config = OmegaConf.create(dataclasses.asdict(cfg))
        (self.path / "config.yaml").write_text(OmegaConf.to_yaml(config))
        self._drop_past(start)
        tracking = getattr(cfg, "tracking", None)
        if tracking is not None and (tracking.tensorboard or tracking.wandb):
            from spiral.training.trackers import Trackers

            self.trackers = Trackers(tracking, self.path, start,
                                     OmegaConf.to_container(config))

    def close(self) -> None:
        """Flush and close the trackers (metrics.jsonl is flushed at every line)."""
        if self.trackers is not None:
            self.trackers.close()
            self.trackers = None

    def _drop_past(self, start: int) -> None:
        """Keep the metric lines of steps up to ``start`` (none on a fresh start)."""
        if not self.metrics_path.exists():
            return
        kept = []
        if start > 0:  # a fresh start keeps nothing
            lines = [line for line in self.metrics_path.read_bytes().splitlines() if line.strip()]
            rows = [(line, _row(line)) for line in lines]
            bad = sum(row is None for _, row in rows)
            if bad:
                log.warning("%s: dropped %d line(s) that are not a JSON object with an integer "
                            "'step'", self.metrics_path, bad)
            kept = [line for line, row in rows if row is not None and row["step"] <= start]
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_bytes(b"".join(line + b"\n" for line in kept))
        os.replace(tmp, self.metrics_path)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
            f.flush()
        if self.trackers is not None:
            self.trackers.log(step, metrics)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        rows = (_row(line) for line in self.metrics_path.read_bytes().splitlines())
        return [row for row in rows if row is not None]

    def save_games(self, step: int, episodes: list[Episode]) -> Path:
        return save_games(self.path / "games", step, episodes)


class Progress:
    """tqdm bar showing step, games/s, loss, invalid moves, each trained game's headline exact
    metric (``exact``: metric key -> label, e.g. Kuhn exploitability as "expl") and the win
    rate vs random (mean over the trained games)."""

    KEYS = {"rollout/games_per_s": "games/s", "train/loss": "loss",
            "rollout/invalid_rate": "invalid"}

    def __init__(self, total: int, start: int, enabled: bool,
                 exact: dict[str, str] | None = None):
        from tqdm import tqdm

        self.keys = {**self.KEYS, **(exact or {})}
        self.bar = tqdm(total=total, initial=start, disable=not enabled, desc="spiral",
                        dynamic_ncols=True)
        self.shown: dict[str, str] = {}

    def update(self, metrics: dict[str, float]) -> None:
        for key, label in self.keys.items():
            if key in metrics:
                self.shown[label] = f"{metrics[key]:.3g}"
        wins = [value for key, value in metrics.items()
                if key.startswith("eval/") and key.endswith("/random/win_rate")]
        if wins:  # several games (multigame): their mean
            self.shown["win/rand"] = f"{sum(wins) / len(wins):.2f}"
        self.bar.set_postfix(self.shown, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def summarize(episodes: list[Episode], rollout: RolloutStats) -> dict[str, float]:
    """Rollout metrics from typed episodes: speed, outcomes, returns, lengths."""
    n = len(episodes)
    turns = [t for ep in episodes for t in ep.turns]
    out = {
        "rollout/games": n,
        "rollout/games_per_s": n / rollout.seconds if rollout.seconds else 0.0,
        "rollout/generate_share": rollout.generate_seconds / rollout.seconds
        if rollout.seconds else 0.0,
        "rollout/invalid_rate": sum(ep.invalid_player is not None for ep in episodes) / max(n, 1),
        "rollout/truncated_rate": sum(ep.truncated for ep in episodes) / max(n, 1),
        # share of the policy's turns cut at actor.max_new_tokens (invalid, but not unparseable)
        "rollout/cut_rate": _mean([float(t.cut) for t in turns]),
        "rollout/moves_per_game": sum(len(ep.moves) for ep in episodes) / max(n, 1),
        "rollout/response_tokens_mean": _mean([len(t.response_ids) for t in turns]),
        "rollout/prompt_tokens_mean": _mean([len(t.prompt_ids) for t in turns]),
        "time/rollout_s": rollout.seconds,
    }
    by_game: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        by_game[ep.game_id].append(ep)
    for game_id, group in by_game.items():
        for player in (0, 1):
            returns = [ep.returns[player] for ep in group if player in ep.model_players]
            if returns:
                out[f"rollout/{game_id}/return_player{player}"] = sum(returns) / len(returns)
        out |= outcome_rates(group, f"rollout/{game_id}", with_ci=False)
        out |= invalid_reasons(group, f"rollout/{game_id}/invalid")
    return out


def task_rollout_metrics(cfg, attempts: list[Attempt]) -> dict[str, float]:
    """``rollout/tasks/<task id>/...``: reward, accuracy, format and cut rates of the step's
    answers to each trained task (``spiral.evaluate.tasks.task_metrics``)."""
    out: dict[str, float] = {}
    for task_id in cfg.tasks.ids:
        mine = [a for a in attempts if a.task_id == task_id]
        out |= task_metrics(mine, f"rollout/tasks/{task_id}", problems=cfg.tasks.problems_per_step,
                            samples=cfg.tasks.group_size)
    return out


def invalid_reasons(episodes: list[Episode], prefix: str) -> dict[str, float]:
    """Share of the policy's turns that were invalid, per reason (`Turn.invalid_reason`):
    ``<prefix>/cut``, ``<prefix>/unparseable``, ``<prefix>/illegal``."""
    turns = [t for ep in episodes for t in ep.turns]
    reasons = Counter(t.invalid_reason() for t in turns)
    return {f"{prefix}/{reason}": reasons[reason] / max(len(turns), 1)
            for reason in ("cut", "unparseable", "illegal")}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _row(line: bytes) -> dict | None:
    """A metrics line as a dict, or None unless it is a JSON object with an integer ``step``."""
    try:
        row = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError)
        return None
    ok = isinstance(row, dict) and type(row.get("step")) is int
    return row if ok else None
