"""Loading models and tokenizers: the embedded tiny model, any HF path or hub id, a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from spiral.config import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_path(name_or_path: str) -> str:
    """'embedded' -> the cached embedded model (built on first use); anything else as given."""
    if name_or_path == "embedded":
        from spiral.models.tiny import embedded_model_path

        return str(embedded_model_path())
    return name_or_path


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("learner.device=cuda but no CUDA device is available")
    return torch.device(name)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer at {path} has no chat template; spiral prompts need one")
    return tokenizer


def load_model(path: str, cfg: ModelConfig, device: torch.device):
    """An HF causal LM in the configured dtype on ``device`` (safetensors weights only)."""
    from transformers import AutoModelForCausalLM

    if Path(path).is_dir() and not any(Path(path).glob("*.safetensors")):
        raise FileNotFoundError(f"{path} holds no *.safetensors weights (pickle is not loaded)")
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=DTYPES[cfg.dtype], use_safetensors=True
    )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model.to(device)
