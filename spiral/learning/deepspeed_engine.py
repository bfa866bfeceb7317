"""The DeepSpeed engine (``learner.backend=deepspeed``): ZeRO stage 0-3, bf16, data-parallel.

The PPO loop is ``spiral.learning.ppo.PPO`` (the same update as the torch engine, summed over
ranks); this module supplies the engine. Choices:

- the optimizer is torch's AdamW handed to DeepSpeed, so the update is the torch engine's;
  DeepSpeed calls it after its own checks, so it is where a step is dropped that every rank
  agreed to skip (a non-finite loss on some rank) or, at stage 0, that has a non-finite
  gradient (stages 1-3 and bf16 skip those themselves, from an all-reduced norm);
  ``managed_gradient_accumulation=false`` lets our micro-batch count vary per minibatch: each
  ``step()`` is the accumulation boundary;
- ``model.dtype=bfloat16`` turns on DeepSpeed's bf16 mode (bf16 weights and activations, fp32
  master weights and Adam moments in the ZeRO partitions); gradient checkpointing is the
  model's own (``model.gradient_checkpointing``);
- ``weights()`` gathers full weights (under ZeRO-3 every rank must call it) for the actor;
- checkpoints stay spiral's (HF weights + ``optimizer.safetensors`` + JSON state, no pickle):
  the partitioned optimizer is saved and restored as full per-parameter tensors in the torch
  AdamW layout (plus fp32 master weights under bf16), so a checkpoint does not depend on the
  number of ranks and resumes on any of them.
"""

from __future__ import annotations

import contextlib

import torch

from spiral.config import LearnerConfig
from spiral.distributed import Dist, all_reduce
from spiral.learning.engines import adamw, trainable
from spiral.learning.ppo import dummy_group
from spiral.models.logprobs import LogprobModel
from spiral.models.lora import actor_weights, is_adapter

MOMENTS = ("exp_avg", "exp_avg_sq")


def ds_config(cfg: LearnerConfig, bf16: bool, cuda: bool) -> dict:
    """The DeepSpeed config of a learner config (batching is driven by ``PPO``)."""
    stage = cfg.deepspeed.zero_stage
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"learner.deepspeed.zero_stage={stage} is not one of 0, 1, 2, 3")
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.grad_clip,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": bf16},
        # overlap_comm overlaps the gradient reduce with backward, on CUDA streams; only
        # stages 2 and 3 have it (stages 0 and 1 fail at start-up with it on)
        "zero_optimization": {"stage": stage, "overlap_comm": cuda and stage >= 2,
                              "contiguous_gradients": True},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


class DeepSpeedEngine:
    """``Engine`` over a DeepSpeed engine wrapping ``LogprobModel``."""

    def __init__(self, model, cfg: LearnerConfig, dist: Dist, *, pad_id: int,
                 temperature: float, bf16: bool = False):
        import deepspeed

        self.dist = dist
        config = ds_config(cfg, bf16, cuda=next(model.parameters()).is_cuda)
        self.stage = config["zero_optimization"]["stage"]
        self.adam = adamw(model, cfg, kind=GuardedAdamW)
        self.adam.check_grads = self.stage == 0  # stage 0's grads are full and all-reduced
        self.engine, self.ds_optimizer, _, _ = deepspeed.initialize(
            model=LogprobModel(model, pad_id, temperature), optimizer=self.adam, config=config,
        )
        self.module: LogprobModel = self.engine.module
        self.optimizer = FullOptimizerState(self, bf16)

    def forward(self, group):
        return self.engine(group)

    def sync_context(self, last: bool):
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        # DeepSpeed averages gradients over ranks; the global loss is a sum
        self.engine.backward(loss * self.dist.world_size, scale_wrt_gas=False)

    def step(self, skip: bool = False) -> tuple[float, bool]:
        self.adam.hold = all_reduce([float(skip)], self.dist, "max")[0] > 0
        self.adam.stepped = False
        try:
            self.engine.step()
        finally:
            self.adam.hold = False
        norm = self.engine.get_global_grad_norm()
        return (float(norm) if norm is not None else 0.0), self.adam.stepped

    def set_lr(self, lr: float) -> None:
        """The learning rate for the next updates (the AdamW that DeepSpeed steps)."""
        for group in self.optimizer.base.param_groups:
            group["lr"] = lr

    def gathered(self, params: list[torch.nn.Parameter]):
        """Full tensors of ``params`` inside the block (a collective under ZeRO-3)."""
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None,
                                                 enabled=self.stage == 3)

    def weights(self) -> dict[str, torch.Tensor]:
        """Full weights in HF names, or a LoRA adapter's tensors (a collective under ZeRO-3,
        which gathers only what it returns: an adapter's tensors, never the frozen base)."""
        model = self.module.model
        params = trainable(model) if is_adapter(model) else list(model.parameters())
        with self.gathered(params):
            state = actor_weights(model)
            if self.stage == 3:
                return {k: v.detach().clone() for k, v in state.items()}
            return {k: v.detach() for k, v in state.items()}

    def checkpoint_view(self):
        """Every rank gathers the optimizer state and the weights (collectives)."""
        optimizer_state = self.optimizer.state_dict()
        return _WithWeights(self.module.model, self.weights()), _Fixed(optimizer_state)


class FullOptimizerState:
    """DeepSpeed's partitioned optimizer seen as a torch AdamW ``state_dict`` of full tensors.

    ``state_dict`` and ``load_state_dict`` are collectives: every rank calls them. Entries per
    parameter (in ``model.parameters()`` order): ``exp_avg``, ``exp_avg_sq``, ``step`` and,
    when the weights are bf16, ``master`` (the fp32 weights the optimizer updates).
    """

    def __init__(self, engine: DeepSpeedEngine, bf16: bool):
        self.engine, self.bf16 = engine, bf16

    @property
    def base(self) -> torch.optim.Optimizer:
        return self.engine.adam

    def _params(self) -> list[torch.nn.Parameter]:
        return trainable(self.engine.module.model)

    def state_dict(self) -> dict:
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.base.param_groups]
        params = self._params()
        groups[0]["params"] = list(range(len(params)))
        if not self.base.state:
            return {"state": {}, "param_groups": groups[:1]}
        step = next(iter(self.base.state.values()))["step"]
        state = {}
        for i, param in enumerate(params):
            entry = {k: safe_get_full_optimizer_state(param, k).detach().cpu() for k in MOMENTS}
            entry["step"] = torch.as_tensor(step, dtype=torch.float32).detach().cpu().clone()
            if self.bf16:
                entry["master"] = safe_get_full_fp32_param(param).detach().cpu()
            state[i] = entry
        return {"state": state, "param_groups": groups[:1]}

    def load_state_dict(self, full: dict) -> None:
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

        group = full["param_groups"][0]
        for g in self.base.param_groups:
            g.update({k: v for k, v in group.items() if k != "params"})
        if not full["state"]:
            return
        self._create_states()
        params = self._params()
        for index, entry in full["state"].items():
            param = params[int(index)]
            for key in MOMENTS:
                safe_set_full_optimizer_state(param, entry[key].to(torch.float32), key)
            if "master" in entry:
                safe_set_full_fp32_param(param, entry["master"].to(torch.float32))
        step = float(full["state"][next(iter(full["state"]))]["step"])
        for per_param in self.base.state.values():
            per_param["step"].fill_(step)

    def _create_states(self) -> None:
        """Run one step with lr 0 on a zero-weight batch: AdamW creates its (zero) moments and
        the weights stay as they are (an update of exactly 0, weight decay times lr 0)."""
        saved = [(g["lr"], g["weight_decay"]) for g in self.base.param_groups]
        for g in self.base.param_groups:
            g["lr"], g["weight_decay"] = 0.0, 0.0
        logp, _ = self.engine.forward(dummy_group(self.engine.module.pad_id))
        self.engine.backward(logp.sum() * 0.0, last=True)
        self.engine.step()
        for g, (lr, decay) in zip(self.base.param_groups, saved):
            g["lr"], g["weight_decay"] = lr, decay


class GuardedAdamW(torch.optim.AdamW):
    """torch AdamW that leaves weights and state untouched while ``hold`` is set, or when
    ``check_grads`` and a gradient is non-finite; ``stepped`` says whether it updated."""

    hold, check_grads, stepped = False, False, False

    @torch.no_grad()
    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if self.hold or (self.check_grads and grads and not bool(
                torch.stack([torch.isfinite(g).all() for g in grads]).all())):
            return None
        self.stepped = True
        return super().step(closure)


class _Fixed:
    """A precomputed ``state_dict`` (what ``checkpoint.save`` reads from an optimizer)."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state


class _WithWeights:
    """An HF model saved with explicitly gathered weights (ZeRO-3 params are placeholders)."""

    def __init__(self, model, weights: dict[str, torch.Tensor]):
        self.model, self.weights = model, weights

    def save_pretrained(self, path, **kwargs) -> None:
        self.model.save_pretrained(path, state_dict=self.weights, **kwargs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.weights
