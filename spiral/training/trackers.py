"""Live trackers beside ``metrics.jsonl``: TensorBoard and Weights & Biases (``tracking.*``).

``metrics.jsonl`` stays the run's record (one line per step, rewritten on resume so each step
appears once); the trackers get the same numbers as they are logged, for watching long runs:

- **TensorBoard** (``tracking.tensorboard=true``): event files in ``out_dir/tensorboard``, one
  scalar per metric key at its step (``tensorboard --logdir out_dir/tensorboard``). A resume from
  checkpoint ``C`` opens the writer with ``purge_step=C + 1``, so the events the interrupted run
  wrote past its checkpoint are discarded, as ``metrics.jsonl``'s lines are.
- **Weights & Biases** (``tracking.wandb=true``): a run in ``tracking.wandb_project`` whose files
  are in ``out_dir/wandb``; ``tracking.wandb_mode=offline`` (the default) needs no account and
  ``wandb sync out_dir/wandb/offline-run-*`` uploads it later. Its id is kept in
  ``out_dir/wandb_id``, so a relaunch continues the same W&B run (``resume="allow"``). W&B
  keeps the first value it received for a step: the steps an interrupted run logged past its
  checkpoint keep those values (a resumed run repeats them exactly on the same machine).

Both packages are optional (``pip install -e '.[track]'``); asking for one that is missing is
refused at config time (`check`).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from spiral.config import TrackingConfig
from spiral.errors import ConfigError

PACKAGES = (("tensorboard", "tensorboard"), ("wandb", "wandb"))  # (tracking key, package)
WANDB_ID = "wandb_id"


def check(cfg: TrackingConfig) -> None:
    """Refuse (`ConfigError`) a ``tracking.<key>=true`` whose package is not installed."""
    for key, package in PACKAGES:
        if getattr(cfg, key) and importlib.util.find_spec(package) is None:
            raise ConfigError(f"tracking.{key}=true needs the {package} package, which is not "
                              "installed (pip install -e '.[track]')")


class Trackers:
    """The trackers ``cfg`` asks for, opened on a run directory from step ``start``."""

    def __init__(self, cfg: TrackingConfig, run_dir: Path, start: int, config: dict):
        self.writers = []
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writers.append(_TensorBoard(SummaryWriter(
                log_dir=str(Path(run_dir) / "tensorboard"), purge_step=start + 1)))
        if cfg.wandb:
            self.writers.append(_WandB.open(cfg, Path(run_dir), config))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        scalars = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)}
        for writer in self.writers:
            writer.log(step, scalars)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []


class _TensorBoard:
    def __init__(self, writer):
        self.writer = writer

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run):
        self.run = run

    @classmethod
    def open(cls, cfg: TrackingConfig, run_dir: Path, config: dict) -> _WandB:
        import wandb
        from wandb.sdk.lib.runid import generate_id

        id_file = run_dir / WANDB_ID
        run_id = id_file.read_text().strip() if id_file.is_file() else generate_id()
        id_file.write_text(run_id)
        run = wandb.init(project=cfg.wandb_project, id=run_id, resume="allow", dir=str(run_dir),
                         mode=cfg.wandb_mode, config=config, name=run_dir.name)
        return cls(run)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step, commit=True)  # the step is complete: show it now

    def close(self) -> None:
        self.run.finish()
