"""What a launch checks before it touches ``out_dir``: one run at a time, and what changed.

**One run per out_dir.** Rank 0 holds ``fcntl.flock`` on ``out_dir/.lock`` (which names its PID
and host) from before the model loads until ``train`` returns. A second launch on the same
directory is refused at once, naming the holder. The kernel drops the lock when its process
dies, so a killed run (even ``kill -9``) never blocks its own resume; the file stays behind and
means nothing while unlocked. Under torchrun the other ranks share rank 0's lock and refuse with
it. flock needs a local or lock-aware file system (on some NFS setups it is a no-op).

**A resume says what changed.** The config a relaunch is compared with is the one the resumed
state was trained under: the newest checkpoint's (``trainer_state.json``), else ``config.yaml``
of a run that died before its first checkpoint. Keys fall into two groups, and a test keeps
every ``RunConfig`` key in one of them:

- ``MUST_NOT_CHANGE``: what defines the experiment — the games and their rewards, the opponent,
  the base model, the seed, the prompt and sampling policy that PPO's log-probs are taken under,
  the advantage estimator and the loss. A change stops the relaunch (status 2) with the diff;
  ``resume_force=true`` continues anyway, with a warning. ``learner.betas`` and
  ``learner.weight_decay`` are here because the resumed optimizer restores its own saved
  values: a new value would be written to config.yaml and not used.
- ``MAY_CHANGE``: how long and how the run proceeds (``steps``, checkpoint and transcript
  cadence, ``eval.*``), the schedules (``lr_final``, ``lr_decay_steps``, ``kl_beta_final``,
  ``kl_decay_steps``), and the engine: backend, device, precision, batch and memory knobs.
  Checkpoints are backend-independent (full tensors in the torch AdamW layout), so a run may
  move from ``learner.backend=torch`` to ``deepspeed`` or from ``hf`` to ``vllm``. A change is
  logged.

Where ``lr`` and ``kl_beta`` belong. ``learner.lr`` may change: it is the optimizer's step size,
not part of the objective, the trainer applies it every step (``set_lr``), so a new value takes
effect cleanly, and lowering it is the usual cure for an unstable run — the schedule keys that
already move it may change too. ``algo.kl_beta`` must not: it weighs a term of the objective
(``J - beta * KL(pi || ref)``), and whether it is zero decides whether the run has a KL reference
at all — resuming a ``kl_beta=0`` run with ``kl_beta>0`` would find no saved reference, and the
reverse would silently drop the anchor. Its annealing tail (``kl_beta_final``,
``kl_decay_steps``) may change, like lr's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spiral import distributed
from spiral.config import RunConfig, plain
from spiral.errors import UserError
from spiral.models import checkpoint

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
FORCE = "resume_force=true"

MUST_NOT_CHANGE = (
    "seed",
    "env.games", "env.game_kwargs", "env.opponent", "env.max_turns", "env.invalid_penalty",
    "env.invalid_other", "env.parse_cut", "env.instruction",
    "tasks.ids", "tasks.group_size", "tasks.scale", "tasks.difficulty", "tasks.kwargs",
    "model.name_or_path", "model.enable_thinking",
    "actor.temperature", "actor.top_p", "actor.max_new_tokens",
    "learner.weight_decay", "learner.betas",
    "learner.lora.rank", "learner.lora.alpha", "learner.lora.dropout",
    "learner.lora.target_modules",
    "algo.rae", "algo.baseline_decay", "algo.gamma", "algo.drop_zero_advantage", "algo.clip_eps",
    "algo.kl_beta", "algo.ref_update_every", "algo.norm_tokens", "algo.old_logprobs",
)
MAY_CHANGE = (  # a name ending in "." covers its whole group
    "steps", "out_dir", "checkpoint_every", "keep_checkpoints", "save_games_every", "progress",
    "env.games_per_step", "env.samples_per_step", "tasks.problems_per_step",
    "model.family", "model.dtype", "model.gradient_checkpointing",
    "actor.backend", "actor.batch_size", "actor.vllm.",
    "learner.backend", "learner.device", "learner.lr", "learner.lr_final",
    "learner.lr_decay_steps", "learner.grad_clip", "learner.epochs", "learner.minibatches",
    "learner.micro_batch_tokens", "learner.deepspeed.",
    "algo.kl_beta_final", "algo.kl_decay_steps", "tracking.",
    "eval.",
)
NOT_COMPARED = ("resume_force",)  # how to launch, not what the run is


class RunRefused(UserError):
    """The launch may not go on, and nothing in out_dir has changed: the command prints this in
    one line and exits with status 2 (`spiral.errors.run_command`)."""


@contextlib.contextmanager
def exclusive(out_dir: Path, dist: distributed.Dist = distributed.ONE_PROCESS) -> Iterator[None]:
    """Hold ``out_dir``'s run lock (rank 0) for the ``with`` block, or refuse on every rank."""
    lock = RunLock(out_dir) if dist.is_main else None
    try:
        agree(lock.acquire() if lock else None, dist)
        yield
    finally:
        if lock:
            lock.release()


class RunLock:
    """``fcntl.flock`` on ``out_dir/.lock``; the holder writes ``<pid> <host>`` into it."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns None, or why not (naming the holder) without waiting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not O_TRUNC: the holder's PID
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            who = " on ".join(holder[:2]) if holder else "unknown"
            return (f"{self.path.parent} is in use by another run (PID {who}); wait for it to "
                    f"end, stop it, or choose another out_dir")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def agree(refusal: str | None, dist: distributed.Dist) -> None:
    """Every rank refuses when rank 0 does: rank 0 raises `RunRefused` (its one line), the
    others exit with the same status without a word."""
    refused = distributed.all_reduce([float(refusal is not None)], dist, "max")[0] > 0
    if refusal is not None:
        raise RunRefused(refusal)
    if refused:
        raise SystemExit(2)


def check_resume(cfg: RunConfig, resume_from: Path | None,
                 dist: distributed.Dist = distributed.ONE_PROCESS) -> None:
    """Compare ``cfg`` with the config ``out_dir`` was run with; refuse a must-not-change
    difference unless ``cfg.resume_force``, log the rest. Reads files only (rank 0)."""
    refusal = None
    if dist.is_main:
        refusal = no_good_checkpoint(Path(cfg.out_dir)) if resume_from is None else None
        saved, source = saved_config(Path(cfg.out_dir), resume_from)
        if refusal is None and saved is not None:
            refusal = review(cfg, saved, source)
    agree(refusal, dist)


def no_good_checkpoint(out_dir: Path) -> str | None:
    """A refusal when ``out_dir`` holds checkpoints but none passes its checks: starting over
    would drop the run's metrics, so a person decides (the warnings above say what is wrong)."""
    found = checkpoint.list_checkpoints(out_dir)
    if not found:
        return None
    names = ", ".join(p.name for p in found)
    return (f"{out_dir}: no checkpoint passes its checks ({names}; see the warnings above); "
            f"move {out_dir / 'checkpoints'} away to start over, or use another out_dir")


def saved_config(out_dir: Path, resume_from: Path | None) -> tuple[dict | None, str]:
    """The config of the state a launch resumes: its checkpoint's, else ``config.yaml``."""
    if resume_from is not None:
        state = json.loads((Path(resume_from) / checkpoint.STATE_FILE).read_text())
        if isinstance(state.get("config"), dict):
            return state["config"], f"checkpoint {Path(resume_from).name}"
    path = Path(out_dir) / "config.yaml"
    if not path.exists():
        return None, ""
    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(OmegaConf.load(path))
    return (saved if isinstance(saved, dict) else None), str(path)


def review(cfg, saved: dict, source: str, changeable=None) -> str | None:
    """Log what changed since ``saved``; returns the refusal, if a frozen key changed.

    ``changeable(key)`` says which keys may differ (default `may_change`: training's lists;
    ``spiral.sft`` passes its own)."""
    changeable = changeable or may_change
    changes = config_changes(saved, cfg)
    frozen = [c for c in changes if not changeable(c[0])]
    allowed = [c for c in changes if changeable(c[0])]
    if frozen and not cfg.resume_force:
        return (f"{cfg.out_dir}: keys that define the run changed since {source} (saved -> new): "
                f"{_diff(frozen)}; use another out_dir, or add {FORCE} to resume anyway")
    if frozen:
        log.warning("%s: resuming %s although keys that define the run changed since %s: %s",
                    FORCE, cfg.out_dir, source, _diff(frozen))
    if allowed:
        log.info("relaunching %s; changed since %s: %s", cfg.out_dir, source, _diff(allowed))
    return None


def config_changes(saved: dict, cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(key, saved, new)`` for every leaf of ``cfg`` whose value differs from ``saved``'s.

    A key ``saved`` does not have (written by an older spiral) is not compared."""
    out = []
    for key, new in leaves(cfg).items():
        node: Any = saved
        for part in key.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT and key not in NOT_COMPARED and plain(node) != plain(new):
            out.append((key, plain(node), plain(new)))
    return out


def leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every non-dataclass field of ``cfg``, by dotted key (``algo.kl_beta``)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out |= leaves(value, f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def may_change(key: str) -> bool:
    """Whether ``key`` may differ on resume (an unlisted key may not: the safe side)."""
    return any(key == name or (name.endswith(".") and key.startswith(name))
               for name in MAY_CHANGE)


_ABSENT = object()


def _diff(changes: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{key}: {_show(old)} -> {_show(new)}" for key, old, new in changes)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, (dict, bool)) or value is None:
        return json.dumps(value, sort_keys=True)
    return str(value)
