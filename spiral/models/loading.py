"""Loading models and tokenizers: the embedded tiny model, a prepared model, any HF path or hub
id, a checkpoint.

A prepared model (``spiral.errors.PREPARED_MODELS``, e.g. ``smollm2_135m``) is a pretrained
model that ``python -m spiral.models.prepare NAME`` converted once into spiral's cache; its name
resolves to that folder, and is never downloaded on the way (a `ModelError` names the command).
A path that is no usable model (missing, a folder without config.json, weights or tokenizer, a
hub id the hub does not have or cannot serve) raises `spiral.errors.ModelError` in one line,
which every command reports without a traceback.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spiral.config import ModelConfig
from spiral.errors import (
    PREPARED_MODELS,
    ConfigError,
    ModelError,
    model_folder_problem,
    prepared_folder,
    prepared_problem,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_path(name_or_path: str) -> str:
    """'embedded' -> the cached embedded model (built on first use); a prepared name -> its
    folder (a `ModelError` saying how to prepare it, if it is not); anything else as given."""
    if name_or_path == "embedded":
        from spiral.models.tiny import embedded_model_path

        return str(embedded_model_path())
    if name_or_path in PREPARED_MODELS:
        problem = prepared_problem(name_or_path)
        if problem:
            raise ModelError(problem)
        return str(prepared_folder(name_or_path))
    return name_or_path


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def _from_pretrained(load, path: str, **kwargs):
    """``load(path)``, with a path that is no usable model as a one-line `ModelError`."""
    if Path(path).exists():
        problem = model_folder_problem(Path(path))
        if problem:
            raise ModelError(problem)
        return load(path, **kwargs)
    try:
        return load(path, **kwargs)
    except (OSError, ValueError) as err:  # hub: no such repo, no network, an invalid id
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load {path!r}: no such local folder, and from the Hugging Face "
                         f"hub: {first}") from err


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelError(f"the tokenizer at {path} has no chat template; spiral prompts need one")
    return tokenizer


def load_model(path: str, cfg: ModelConfig, device: torch.device):
    """An HF causal LM in the configured dtype on ``device`` (safetensors weights only); a PEFT
    adapter folder (a LoRA run's checkpoint) loads over its base model, frozen."""
    from transformers import AutoModelForCausalLM

    from spiral.models import lora

    if lora.is_adapter_folder(path):
        return lora.load(path, load_model(lora.base_path(path), cfg, device))
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, path,
                             dtype=DTYPES[cfg.dtype], use_safetensors=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model.to(device)
