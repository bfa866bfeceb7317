"""Checkpoints: HF-format model + tokenizer and the training state, written atomically, each
verified by its own manifest.

``checkpoints/step_<N>/`` holds ``config.json``, ``model.safetensors`` (a LoRA run: PEFT's
``adapter_config.json`` and ``adapter_model.safetensors`` instead), tokenizer files,
``optimizer.safetensors`` (every optimizer tensor, flattened; the adapter's alone with LoRA),
``trainer_state.json`` (step, elapsed time, RAE baselines, optimizer hyper-parameters),
optional extra tensors such as
``reference.safetensors`` and, written last, ``manifest.json``::

    {"format": 1, "step": N,
     "files": {"model.safetensors": {"size": 1234, "sha256": "9f86d0..."}, ...}}

Nothing is pickled, so a checkpoint from an untrusted source cannot run code.

Writing (``save``): every tensor is checked first, and a non-finite one raises `CheckpointError`
naming it and the step before anything is written. Files go to ``.tmp_step_<N>``, each is
fsynced, the manifest is written and fsynced last, and the folder is renamed into place.

Reading (``latest``): the newest checkpoint that verifies (``problem`` returns None: the manifest's
files are present with their sizes and sha256, ``trainer_state.json`` parses and its step is the
folder's, every safetensors file opens, the optimizer holds the tensors the state records). Each
newer one that fails is logged as ``skipping checkpoint <path>: <why>``. ``load_state`` repeats
the checks that would silently corrupt a resume, for callers that skip ``latest``.

Checkpoints of spiral versions before manifests (no ``manifest.json``, and no
``checkpoint_format`` in ``trainer_state.json``) are accepted, with a warning, when they pass
the checks that need no manifest; flipped bytes inside their tensors cannot be detected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from spiral.models import lora

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
OPTIMIZER_FILE = "optimizer.safetensors"
FORMAT = 1  # trainer_state.json's "checkpoint_format"; absent before manifests
_STEP = re.compile(r"^step_(\d+)$")
_BOOKKEEPING = ("checkpoint_format", "optimizer_tensors", "optimizer_param_groups")


class CheckpointError(ValueError):
    """A checkpoint that must not be written or resumed from; the message names the culprit."""


def save(run_dir: Path, step: int, model, tokenizer, optimizer, state: dict, keep: int,
         extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write checkpoint ``step`` atomically, then prune (see ``_prune``).

    ``extra`` maps a name to tensors saved as ``<name>.safetensors`` (e.g. the KL reference).
    A non-finite tensor raises `CheckpointError` and nothing is written.
    """
    extra = extra or {}
    check_finite(step, model, optimizer, extra)
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step_{step}", root / f".tmp_step_{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(tmp, step, model, tokenizer, optimizer, state, extra)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync(root)
    _prune(root, step, keep)
    return final


def check_finite(step: int, model, optimizer, extra: dict | None = None) -> None:
    """Raise `CheckpointError` naming the first tensor of ``step``'s checkpoint (a weight, an
    optimizer state entry or an ``extra`` tensor) that holds nan or inf."""
    groups = {"weight": model.state_dict()}
    groups |= {f"{name} tensor": tensors for name, tensors in (extra or {}).items()}
    groups["optimizer state"] = {f"{index}.{name}": value for index, entry in
                                 optimizer.state_dict()["state"].items()
                                 for name, value in entry.items()}
    for kind, tensors in groups.items():
        for name, value in tensors.items():
            if (torch.is_tensor(value) and value.is_floating_point()
                    and not bool(torch.isfinite(value).all())):
                raise CheckpointError(f"refusing to write checkpoint step_{step}: {kind} "
                                      f"{name!r} holds non-finite values (nan or inf)")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The ``step_<N>`` folders, oldest first, whether or not they verify (``latest`` checks)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP.match(p.name) and p.is_dir()]
    return sorted(found, key=_step_of)


def latest(run_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; each newer one is logged with why it was skipped."""
    for path in reversed(list_checkpoints(run_dir)):
        why = problem(path)
        if why is None:
            if not (path / MANIFEST).exists():
                log.warning("checkpoint %s has no %s (written before spiral had manifests); "
                            "resuming from it after structural checks only", path, MANIFEST)
            return path
        log.warning("skipping checkpoint %s: %s", path, why)
    return None


def problem(path: Path) -> str | None:
    """Why checkpoint ``path`` cannot be resumed from (a file named in one line), or None."""
    path = Path(path)
    if not _STEP.match(path.name):
        return "the folder is not named step_<N>"
    step = _step_of(path)
    try:
        has_manifest = (path / MANIFEST).is_file()
        if has_manifest:
            _check_manifest(path, _read_json(path / MANIFEST, MANIFEST), step)
        state = _read_json(path / STATE_FILE, STATE_FILE)
        if not has_manifest and "checkpoint_format" in state:
            raise CheckpointError(f"{MANIFEST} is missing (an incomplete or altered checkpoint)")
        _check_step(state, step, path.name)
        _check_tensors(path, state, step)
    except CheckpointError as err:
        return " ".join(str(err).split())  # one line
    return None


def load_state(path: Path, optimizer) -> dict:
    """Restore the optimizer in place; returns the trainer state (step, baselines, ...).

    Refuses (`CheckpointError` naming the file) a step that disagrees with a ``step_<N>`` folder
    name, and an optimizer file without the tensors the state records (or, in a checkpoint from
    before manifests, with none at a step > 0): Adam would silently restart.
    """
    path = Path(path)
    try:
        state = _read_json(path / STATE_FILE, STATE_FILE)
        for key in ("step", "optimizer_param_groups"):
            if key not in state:
                raise CheckpointError(f"{STATE_FILE} has no {key!r}")
        if _STEP.match(path.name):
            _check_step(state, _step_of(path), path.name)
        tensors = _load_tensors(path / OPTIMIZER_FILE)
        _check_optimizer(state, len(tensors), state["step"])
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {path}: {err}") from err
    groups = state["optimizer_param_groups"]
    _restore_optimizer(optimizer, tensors, groups)
    return {k: v for k, v in state.items() if k not in _BOOKKEEPING}


def load_extra(path: Path, name: str) -> dict[str, torch.Tensor] | None:
    """Tensors saved under ``name`` by ``save(extra=...)``, or None."""
    file = Path(path) / f"{name}.safetensors"
    return _load_tensors(file) if file.exists() else None


# --------------------------------------------------------------------------- writing


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies safetensors accepts: it refuses tensors that share memory, as a model with tied
    input/output embeddings (Qwen3 up to 4B, SmolLM2) has in its state dict; a tensor whose
    storage an earlier one already uses is cloned, and loading restores the tie."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        storage = value.untyped_storage().data_ptr()
        out[key] = value.clone() if storage in seen else value
        seen.add(storage)
    return out


def _write(tmp: Path, step: int, model, tokenizer, optimizer, state: dict, extra: dict) -> None:
    model.save_pretrained(tmp, safe_serialization=True, **lora.save_kwargs(model))
    tokenizer.save_pretrained(tmp)
    tensors, groups = _flatten_optimizer(optimizer)
    save_file(tensors, tmp / OPTIMIZER_FILE)
    for name, named_tensors in extra.items():
        save_file(_unshared(named_tensors), tmp / f"{name}.safetensors")
    payload = {**state, "step": step, "checkpoint_format": FORMAT,
               "optimizer_tensors": len(tensors), "optimizer_param_groups": groups}
    (tmp / STATE_FILE).write_text(json.dumps(payload, indent=2))
    _seal(tmp, step)


def _seal(folder: Path, step: int) -> None:
    """fsync every file, then write ``manifest.json`` (sizes, sha256) last; fsync the folders."""
    files = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[file.relative_to(folder).as_posix()] = {"size": file.stat().st_size,
                                                      "sha256": _sha256(file, sync=True)}
    with open(folder / MANIFEST, "w") as f:
        json.dump({"format": FORMAT, "step": step, "files": files}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    for sub in [p for p in folder.rglob("*") if p.is_dir()] + [folder]:
        _fsync(sub)


def _prune(root: Path, newest: int, keep: int) -> None:
    """After writing step ``newest``: remove leftovers of interrupted writes; checkpoints of later
    steps (the run resumed from an earlier one because they failed verification, so they belong
    to an abandoned continuation and would disagree with metrics.jsonl); and, when keep > 0,
    everything older than the newest ``keep`` checkpoints whose files are all there."""
    for leftover in root.glob(".tmp_step_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    folders = list_checkpoints(root.parent)
    for path in folders:
        if _step_of(path) > newest:
            shutil.rmtree(path, ignore_errors=True)
    if keep <= 0:
        return
    whole = [p for p in folders if _step_of(p) <= newest and _looks_whole(p)]
    oldest_kept = _step_of(whole[-keep:][0])
    for path in folders:
        if _step_of(path) < oldest_kept:
            shutil.rmtree(path, ignore_errors=True)


def _looks_whole(path: Path) -> bool:
    """Every file the manifest lists is there at its size (no hashing: pruning is frequent)."""
    try:
        files = _read_json(path / MANIFEST, MANIFEST)["files"]
        return all((path / rel).is_file() and (path / rel).stat().st_size == entry["size"]
                   for rel, entry in files.items())
    except (CheckpointError, KeyError, TypeError, AttributeError):
        return not (path / MANIFEST).exists() and (path / STATE_FILE).is_file()  # pre-manifest


# --------------------------------------------------------------------------- checking


def _check_manifest(path: Path, manifest: dict, step: int) -> None:
    files = manifest.get("files")
    if manifest.get("step") != step or not isinstance(files, dict):
        raise CheckpointError(f"{MANIFEST} is not the manifest of step {step}")
    for required in (STATE_FILE, OPTIMIZER_FILE):
        if required not in files:
            raise CheckpointError(f"{MANIFEST} does not list {required}")
    for rel, entry in files.items():  # cheap checks first, then the hashes
        if not (path / rel).is_file():
            raise CheckpointError(f"{rel} is missing")
        size = (path / rel).stat().st_size
        if not isinstance(entry, dict) or size != entry.get("size"):
            raise CheckpointError(f"{rel} has {size} bytes, {MANIFEST} records "
                                  f"{entry.get('size') if isinstance(entry, dict) else entry}")
    for rel, entry in files.items():
        if _sha256(path / rel) != entry.get("sha256"):
            raise CheckpointError(f"{rel} does not match its sha256 in {MANIFEST} (corrupted)")


def _check_step(state: dict, step: int, folder: str) -> None:
    if state.get("step") != step:
        raise CheckpointError(f"{STATE_FILE} says step {state.get('step')!r}, the folder is "
                              f"{folder}")


def _check_tensors(path: Path, state: dict, step: int) -> None:
    """Every safetensors file opens; the model weights are there; the optimizer is complete."""
    if not list(path.glob("model*.safetensors")) and not (path / lora.ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"no model weights (model*.safetensors or {lora.ADAPTER_WEIGHTS})")
    if not (path / OPTIMIZER_FILE).is_file():
        raise CheckpointError(f"{OPTIMIZER_FILE} is missing")
    for file in sorted(path.rglob("*.safetensors")):
        try:
            with safe_open(file, framework="pt") as f:
                count = len(list(f.keys()))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{file.relative_to(path)} does not open: {err}") from err
        if file.name == OPTIMIZER_FILE:
            _check_optimizer(state, count, step)


def _check_optimizer(state: dict, count: int, step: int) -> None:
    recorded = state.get("optimizer_tensors")
    if recorded is not None and count != recorded:
        raise CheckpointError(f"{OPTIMIZER_FILE} holds {count} tensors, {STATE_FILE} records "
                              f"{recorded}: Adam would silently restart")
    if recorded is None and count == 0 and step > 0:
        raise CheckpointError(f"{OPTIMIZER_FILE} holds no optimizer state at step {step}: "
                              "Adam would silently restart")


def _read_json(file: Path, name: str) -> dict:
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{name} is missing") from err
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise CheckpointError(f"{name} does not parse: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{name} is not a JSON object")
    return data


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(file)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{file.name} does not load: {err}") from err


def _sha256(file: Path, sync: bool = False) -> str:
    with open(file, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        if sync:
            os.fsync(f.fileno())
    return digest


def _step_of(path: Path) -> int:
    return int(_STEP.match(path.name).group(1))


# --------------------------------------------------------------------------- optimizer layout


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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
