"""Export a trained model: ``python -m spiral.export RUN_OR_CHECKPOINT (--merge OUT | --out OUT)``.

RUN_OR_CHECKPOINT is a run directory (its newest checkpoint that verifies) or one
``checkpoints/step_<N>`` folder. Two exports:

- ``--merge OUT``: a plain Hugging Face model folder (``config.json``, ``model.safetensors``,
  tokenizer, chat template). A LoRA checkpoint's adapter is folded into its base weights
  (PEFT's ``merge_and_unload``), so the result loads with ``AutoModelForCausalLM`` and serves
  with vLLM like any model; a full fine-tuning checkpoint is written as its model.
- ``--out OUT``: the checkpoint as it is, without the training state (optimizer, RNG,
  baselines, manifest): a LoRA checkpoint stays an adapter folder that
  ``PeftModel.from_pretrained(base, OUT)`` loads; its ``adapter_config.json`` names the base
  that ``spiral.models.lora.base_path`` resolved, so it opens on this machine as it is.

OUT is written beside itself and renamed into place, so a failed export leaves nothing half
written; an existing OUT is refused. Mistakes end in one ``error: ...`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from spiral.errors import ConfigError, run_command

TRAINING_STATE = ("optimizer.safetensors", "trainer_state.json", "manifest.json",
                  "reference.safetensors")


def export(source: str, out: Path, merge: bool, log=print) -> None:
    """Write ``source``'s model to ``out`` (merged, or as saved without training state)."""
    import torch

    from spiral.config import ModelConfig
    from spiral.evaluate.runner import resolve_checkpoint
    from spiral.models import lora
    from spiral.models.loading import load_model, load_tokenizer

    path = Path(resolve_checkpoint(source))
    if out.exists():
        raise ConfigError(f"{out} exists; choose a new folder")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if merge:
            model = lora.merged(load_model(str(path), ModelConfig(), torch.device("cpu")))
            model.save_pretrained(tmp, safe_serialization=True)
            load_tokenizer(str(path)).save_pretrained(tmp)
        else:
            shutil.copytree(path, tmp, ignore=shutil.ignore_patterns(*TRAINING_STATE))
            if lora.is_adapter_folder(tmp):
                _name_base(tmp, lora.base_path(path))
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{'merged model' if merge else 'model'} from {path} written to {out}")


def _name_base(folder: Path, base: str) -> None:
    """Record the base this machine resolved in the adapter's config (PEFT reads it)."""
    file = folder / "adapter_config.json"
    config = json.loads(file.read_text())
    config["base_model_name_or_path"] = base
    file.write_text(json.dumps(config, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiral.export",
                                     description="Export a checkpoint as a Hugging Face model.")
    parser.add_argument("source", help="a run directory or a checkpoints/step_<N> folder")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--merge", type=Path, metavar="OUT",
                        help="a plain HF model; a LoRA adapter is merged into its base")
    target.add_argument("--out", type=Path, metavar="OUT",
                        help="the model or adapter as saved, without the training state")
    args = parser.parse_args(argv)
    return run_command(export, args.source, args.merge or args.out, args.merge is not None)


if __name__ == "__main__":
    raise SystemExit(main())
