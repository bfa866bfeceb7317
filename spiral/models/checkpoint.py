"""Checkpoints: HF-format model + tokenizer, and the training state, written atomically.

``checkpoints/step_<N>/`` holds ``config.json``, ``model.safetensors``, tokenizer files,
``optimizer.safetensors`` (every optimizer tensor, flattened) and ``trainer_state.json`` (step,
elapsed time, RAE baselines, optimizer hyper-parameters). Nothing is pickled, so a checkpoint
from an untrusted source cannot run code. A checkpoint is written to a temporary folder and
renamed into place, so a kill at any moment leaves only complete checkpoints under ``step_*``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "trainer_state.json"
_STEP = re.compile(r"^step_(\d+)$")


def save(run_dir: Path, step: int, model, tokenizer, optimizer, state: dict, keep: int,
         extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the newest ``keep``.

    ``extra`` maps a name to tensors saved as ``<name>.safetensors`` (e.g. the KL reference).
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".tmp_step_{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tensors, groups = _flatten_optimizer(optimizer)
    save_file(tensors, tmp / "optimizer.safetensors")
    for name, named_tensors in (extra or {}).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in named_tensors.items()},
                  tmp / f"{name}.safetensors")
    payload = {**state, "step": step, "optimizer_param_groups": groups}
    (tmp / STATE_FILE).write_text(json.dumps(payload, indent=2))
    _fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP.match(p.name) and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(_STEP.match(p.name).group(1)))


def latest(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_state(path: Path, optimizer) -> dict:
    """Restore the optimizer in place; returns the trainer state (step, baselines, ...)."""
    state = json.loads((Path(path) / STATE_FILE).read_text())
    tensors = load_file(Path(path) / "optimizer.safetensors")
    _restore_optimizer(optimizer, tensors, state.pop("optimizer_param_groups"))
    return state


def load_extra(path: Path, name: str) -> dict[str, torch.Tensor] | None:
    """Tensors saved under ``name`` by ``save(extra=...)``, or None."""
    file = Path(path) / f"{name}.safetensors"
    return load_file(file) if file.exists() else None


def _flatten_optimizer(optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    full = optimizer.state_dict()
    tensors = {}
    for index, per_param in full["state"].items():
        for name, value in per_param.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
    return tensors, full["param_groups"]


def _restore_optimizer(optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
