"""LoRA adapters (``learner.lora.rank > 0``) through PEFT: wrap, share, sync, load.

A LoRA run trains a low-rank update ``W + (alpha / r) B A`` of the chosen linear layers and
leaves every base weight frozen. What that buys, and how spiral uses it:

- **One copy of the base.** The HF actor, an adapter opponent and the KL reference never copy
  the base weights: `share_base` makes a second ``PeftModel`` whose frozen tensors *are* the
  learner's and whose adapter tensors are its own, and the KL reference is the learner's model
  with its adapter switched off (``disable_adapter``; `AdapterOff`), which is the initial policy
  exactly, since PEFT starts ``B`` at zero.
- **Small syncs and checkpoints.** `actor_weights` is what an actor needs after an update: the
  adapter's tensors (PEFT names) for a PEFT model, every weight otherwise; `load_actor_weights`
  is its inverse. A checkpoint of a LoRA run is a PEFT adapter folder (``adapter_config.json``,
  ``adapter_model.safetensors``) plus the optimizer state of the adapter alone, so
  ``PeftModel.from_pretrained(base, checkpoint)`` loads it as users expect.
- **Where the base lives.** An adapter folder names its base in ``adapter_config.json``
  (``base_model_name_or_path``, the folder the run loaded). `base_path` follows it, or, when
  that folder is gone (another machine), the run's own ``model.name_or_path`` from
  ``trainer_state.json`` (``embedded`` or a prepared name resolves anywhere).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from spiral.config import LoraConfig

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ALL_LINEAR = "all-linear"


def is_adapter(model) -> bool:
    """Whether ``model`` is a PEFT model (trains an adapter over frozen base weights)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def is_adapter_folder(path) -> bool:
    """Whether ``path`` holds a PEFT adapter rather than a whole model."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def peft_config(cfg: LoraConfig):
    """PEFT's ``LoraConfig`` for a causal LM from spiral's ``learner.lora``."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType

    targets = ALL_LINEAR if tuple(cfg.target_modules) == (ALL_LINEAR,) else list(
        cfg.target_modules)
    return PeftLoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.rank, lora_alpha=cfg.alpha,
                          lora_dropout=cfg.dropout, target_modules=targets, bias="none")


def wrap(model, cfg: LoraConfig, seed: int = 0):
    """``model`` with a fresh adapter of ``cfg``; only the adapter's tensors require grad.

    PEFT draws ``A`` at random (``B`` starts at 0): from ``seed``, not the global RNG, so a
    run's adapter, and with it every step, depends on the run's seed alone.

    With gradient checkpointing on, the embeddings' output is made to require grad: every base
    weight is frozen, so without it the checkpointed layers would see no input that needs a
    gradient and the adapter inside them would get none.
    """
    from peft import get_peft_model

    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            wrapped = get_peft_model(model, peft_config(cfg))
    except ValueError as err:  # e.g. a target module the model does not have
        from spiral.errors import ConfigError

        raise ConfigError(f"learner.lora.target_modules={list(cfg.target_modules)}: "
                          f"{str(err).splitlines()[0]}") from err
    if getattr(model, "is_gradient_checkpointing", False):
        wrapped.enable_input_require_grads()
    return wrapped


def actor_weights(model) -> dict[str, torch.Tensor]:
    """What an actor needs after an update: the adapter's tensors of a PEFT model (PEFT's
    names, without the adapter name), every weight (HF names) of any other model."""
    if is_adapter(model):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model, save_embedding_layers=False)
        return {k: v.detach() for k, v in state.items()}
    return model.state_dict()


def save_kwargs(model) -> dict:
    """Keyword arguments of ``model.save_pretrained`` for a checkpoint. An adapter of
    ``embed_tokens`` or ``lm_head`` is saved as its low-rank factors: PEFT would add the whole
    (frozen, unchanged) embedding matrices by default. ``model`` may wrap the model it saves
    (``.model``, as DeepSpeed's gathered view does)."""
    inner = getattr(model, "model", model)
    return {"save_embedding_layers": False} if is_adapter(model) or is_adapter(inner) else {}


def load_actor_weights(model, tensors: dict[str, torch.Tensor]) -> None:
    """The inverse of `actor_weights`: every tensor must find its place."""
    if not is_adapter(model):
        model.load_state_dict(tensors)
        return
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, tensors)
    missing = [k for k in result.missing_keys if ".lora_" in k]
    if result.unexpected_keys or missing:
        raise ValueError(f"adapter tensors do not fit the model: unexpected "
                         f"{result.unexpected_keys[:3]}, missing {missing[:3]}")


def base_weights(model) -> dict[str, torch.Tensor]:
    """The frozen base weights of a PEFT model under the base model's own HF names (what an
    engine that applies adapters itself, such as vLLM, loads once)."""
    base = model.get_base_model()
    out = {}
    for name, value in base.state_dict().items():
        if ".lora_" in name:
            continue
        out[name.replace(".base_layer.", ".")] = value
    return out


def share_base(model):
    """A copy of PEFT model ``model`` that shares its frozen tensors (the base) and owns copies
    of its trainable ones (the adapter). Buffers are copied: they are small."""
    frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
    return copy.deepcopy(model, memo=dict(frozen))


def actor_copy(model, sharded: bool = False):
    """The hf actor's model: a copy of ``model`` or, for a PEFT model, a `share_base` view (one
    base in memory). ``sharded``: the learner will shard ``model`` (ZeRO-3), so it is copied
    whole, before that happens."""
    return share_base(model) if is_adapter(model) and not sharded else copy.deepcopy(model)


class AdapterOff(torch.nn.Module):
    """A PEFT model seen with its adapter disabled: the base model, for the KL reference.

    Wraps the model like ``LogprobModel`` wraps its model, so the PPO loop scores it the same
    way; nothing is copied. Only called under ``torch.no_grad``.
    """

    def __init__(self, model):
        super().__init__()
        self.peft = [model]  # a list: not registered as a submodule, so not in state_dict()

    def __call__(self, *args, **kwargs):
        model = self.peft[0]
        training = model.training
        model.eval()  # the reference is scored as the policy's old log-probs are: no dropout
        try:
            with model.disable_adapter():
                return model(*args, **kwargs)
        finally:
            model.train(training)

    def get_output_embeddings(self):  # an LM head in learner.lora.target_modules has one too
        return _Disabled(self.peft[0], self.peft[0].get_output_embeddings())

    def get_decoder(self):
        return _Disabled(self.peft[0], self.peft[0].get_decoder())

    def parameters(self, recurse: bool = True):
        return self.peft[0].parameters(recurse)


class _Disabled:
    """A submodule of a PEFT model whose calls run with the adapter disabled."""

    def __init__(self, peft_model, module):
        self.peft_model, self.module = peft_model, module

    def __call__(self, *args, **kwargs):
        with self.peft_model.disable_adapter():
            return self.module(*args, **kwargs)

    def parameters(self, recurse: bool = True):
        return self.module.parameters(recurse)


def base_path(folder) -> str:
    """The base model of adapter ``folder``: its recorded base when that exists, else the run's
    ``model.name_or_path`` (resolved: ``embedded`` and prepared names work on any machine)."""
    from spiral.errors import ModelError
    from spiral.models.loading import resolve_path

    folder = Path(folder)
    recorded = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if recorded and Path(recorded).is_dir():
        return recorded
    state = folder / "trainer_state.json"
    if state.is_file():
        name = json.loads(state.read_text()).get("config", {}).get("model", {}).get(
            "name_or_path")
        if name:
            return resolve_path(name)
    if recorded:
        return recorded  # a hub id
    raise ModelError(f"{folder / ADAPTER_CONFIG} names no base model (base_model_name_or_path)")


def load(folder, base_model):
    """Adapter ``folder`` applied to ``base_model`` (loaded from `base_path`), frozen."""
    from peft import PeftModel

    device = next(base_model.parameters()).device
    return PeftModel.from_pretrained(base_model, str(folder), is_trainable=False).to(device)


def adapter_over(model, folder):
    """An opponent's view: adapter ``folder`` over the frozen base that PEFT model ``model``
    trains (shared, not copied); ``model`` itself is left as it was."""
    view = share_base(model)
    view.load_adapter(str(folder), adapter_name="opponent", is_trainable=False)
    view.set_adapter("opponent")
    return view.eval().requires_grad_(False)


def same_base(model, folder) -> bool:
    """Whether adapter ``folder`` was trained on the base that PEFT model ``model`` wraps."""
    mine = next(iter(model.peft_config.values())).base_model_name_or_path
    return bool(mine) and Path(mine).resolve() == Path(base_path(folder)).resolve()


def trainable(name_or_path: str, resume_from, model_cfg, cfg: LoraConfig, device,
              seed: int = 0):
    """The model a run trains: ``name_or_path`` (resolved) with a fresh adapter of ``cfg`` or,
    resuming, the checkpoint's adapter; without LoRA, the checkpoint or the base itself."""
    from safetensors.torch import load_file

    from spiral.models.loading import load_model, resolve_path

    if not cfg.enabled:
        path = str(resume_from) if resume_from else resolve_path(name_or_path)
        return load_model(path, model_cfg, device)
    model = wrap(load_model(resolve_path(name_or_path), model_cfg, device), cfg, seed)
    if resume_from:
        load_actor_weights(model, load_file(Path(resume_from) / ADAPTER_WEIGHTS))
    return model


def merged(model):
    """A plain HF model with the adapter folded into its weights (PEFT's ``merge_and_unload``)."""
    return model.merge_and_unload() if is_adapter(model) else model
