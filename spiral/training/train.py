"""SPIRAL training: one policy plays both seats, RAE centres the returns, PPO-clip updates it.

    for step in range(start, steps):
        episodes = play(actor, games, n)                 # batched multi-turn self-play
        samples  = role_conditioned_advantages(episodes, baselines)   # training/collect.py
        stats    = learner.update(samples)               # token-level PPO-clip, Dr.GRPO norm
        actor.load_weights(learner.weights())
        every k steps: evaluate, checkpoint, save transcripts

Everything random derives from (seed, step), so a run resumed from its checkpoint at step C
replays steps C+1... exactly as an uninterrupted run would. Before anything in ``out_dir`` is
read or written, ``spiral.training.guard`` takes the run's lock (one run per out_dir) and
compares the config with the one the resumed state was trained under.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from spiral import distributed
from spiral.config import RunConfig
from spiral.evaluate.exact import exact_metrics, headlines
from spiral.evaluate.games import evaluate_opponents
from spiral.evaluate.math_eval import evaluate_math, with_sampling
from spiral.evaluate.tasks import evaluate_tasks
from spiral.learning.advantages import RoleBaselines
from spiral.learning.learner import Learner, make_learner
from spiral.models import checkpoint, lora
from spiral.models.loading import load_tokenizer, pick_device, resolve_path
from spiral.models.prompting import Prompter
from spiral.rollout.actor import Actor, HFActor
from spiral.rollout.opponents import named_opponent
from spiral.rollout.selfplay import RolloutStats
from spiral.training import guard
from spiral.training.collect import collect, collect_tasks
from spiral.training.rundir import Progress, RunDir, summarize, task_rollout_metrics


@dataclasses.dataclass
class Trainer:
    cfg: RunConfig
    run: RunDir
    tokenizer: object
    learner: Learner
    actor: Actor
    prompter: Prompter
    baselines: RoleBaselines
    opponent: object
    task_prompter: Prompter | None = None  # tasks get no game framing: always "brief"
    start: int = 0
    elapsed_before: float = 0.0
    dist: distributed.Dist = distributed.Dist()


def build(cfg: RunConfig, dist: distributed.Dist) -> Trainer:
    """Load the model (or the run's latest checkpoint) and every component of the loop.

    The caller holds out_dir's lock; a config change that must not happen refuses here, before
    the model loads."""
    run = RunDir(Path(cfg.out_dir))
    resume_from = checkpoint.latest(run.path) if dist.is_main else None
    resume_from = distributed.all_gather_objects(resume_from, dist)[0]  # rank 0 decides for all
    guard.check_resume(cfg, resume_from, dist)
    base = str(resume_from) if resume_from else resolve_path(cfg.model.name_or_path)
    device = pick_device(cfg.learner.device)
    tokenizer = load_tokenizer(base)
    model = lora.trainable(cfg.model.name_or_path, resume_from, cfg.model, cfg.learner.lora,
                           device, seed=cfg.seed)
    hf_copy = None  # the hf actor's model, made before ZeRO-3 shards the learner's
    if cfg.actor.backend == "hf":
        hf_copy = lora.actor_copy(model, cfg.learner.shards_weights)
    opponent = named_opponent(cfg.env.opponent, device, cfg.actor.max_new_tokens, policy=model)
    learner = _learner(cfg, model, tokenizer, dist)
    vllm_path = resolve_path(cfg.model.name_or_path) if cfg.learner.lora.enabled else base
    actor = _actor(cfg, vllm_path, hf_copy, tokenizer, learner, dist)
    trainer = Trainer(
        cfg, run, tokenizer, learner, actor, Prompter(tokenizer, cfg.model.enable_thinking,
                                                  instruction=cfg.env.instruction),
        RoleBaselines(cfg.algo.baseline_decay), opponent,
        Prompter(tokenizer, cfg.model.enable_thinking), dist=dist,
    )
    if resume_from:
        state = checkpoint.load_state(resume_from, learner.optimizer)
        trainer.start, trainer.elapsed_before = state["step"], state["elapsed_s"]
        trainer.baselines = RoleBaselines.from_state_dict(state["baselines"])
        learner.rng.setstate(_rng_state(state["learner_rng"]))
        learner.load_extra_state(resume_from)
    if dist.is_main:
        run.prepare(trainer.start, cfg)
    distributed.barrier(dist)
    return trainer


def _learner(cfg: RunConfig, model, tokenizer, dist: distributed.Dist) -> Learner:
    """One PPO loop over torch (one process, or DDP under torchrun) or DeepSpeed ZeRO."""
    return make_learner(model, cfg.learner, cfg.algo, pad_id=tokenizer.pad_token_id,
                        temperature=cfg.actor.temperature,
                        norm_tokens=cfg.algo.norm_tokens or cfg.actor.max_new_tokens,
                        dist=dist, bf16=cfg.model.dtype == "bfloat16", seed=cfg.seed)


def _actor(cfg: RunConfig, base: str, hf_copy, tokenizer, learner, dist: distributed.Dist):
    """transformers generate on a copy of the model, or a vLLM engine on this rank's device."""
    if cfg.actor.backend == "hf":
        return HFActor(hf_copy, tokenizer, cfg.actor)
    from spiral.rollout.vllm_actor import VLLMActor, model_logprobs

    reference = model_logprobs(learner.model, tokenizer.pad_token_id, cfg.actor.temperature)
    lora_cfg = cfg.learner.lora if cfg.learner.lora.enabled else None  # base: the base folder
    return VLLMActor(base, tokenizer, cfg.actor, learner.weights(), dtype=cfg.model.dtype,
                     seed=cfg.seed + dist.rank, reference=reference, lora=lora_cfg)


def train(cfg: RunConfig, stop=None, max_seconds: float | None = None) -> Path:
    """Train to ``cfg.steps`` (resuming if ``out_dir`` holds a checkpoint); returns out_dir.

    ``stop(metrics) -> bool`` and ``max_seconds`` end the run early (benchmarks use them); the
    step where it ends is checkpointed like the last one. Raises ``guard.RunRefused`` while
    another run holds ``out_dir``, or when a key that defines the run changed.
    """
    dist = distributed.setup(cfg.learner.device, need_group=cfg.learner.backend == "deepspeed"
                             or cfg.actor.backend == "vllm")
    with guard.exclusive(Path(cfg.out_dir), dist):
        trainer = build(cfg, dist)
        try:
            return _run(trainer, stop, max_seconds)
        finally:
            trainer.run.close()  # the trackers (TensorBoard, W&B), if any


def _run(t: Trainer, stop, max_seconds: float | None) -> Path:
    """The loop of ``train``: evaluate at step 0, then step, evaluate, log and checkpoint."""
    cfg = t.cfg
    started = time.time()
    elapsed = lambda: t.elapsed_before + time.time() - started  # noqa: E731
    if t.start == 0 and cfg.eval.every:
        metrics = evaluate(t, step=0) | {"time/elapsed_s": elapsed()}
        if t.dist.is_main:
            t.run.log(0, metrics)
    bar = Progress(cfg.steps, t.start, enabled=cfg.progress and t.dist.is_main,
                   exact=headlines(cfg.env.games))
    for step in range(t.start + 1, cfg.steps + 1):
        metrics = train_step(t, step)
        if cfg.eval.every and (step % cfg.eval.every == 0 or step == cfg.steps):
            metrics |= evaluate(t, step)
        metrics["time/elapsed_s"] = elapsed()
        if t.dist.is_main:
            t.run.log(step, metrics)
        bar.update(metrics)
        done = t.dist.is_main and ((stop is not None and stop(metrics)) or (
            max_seconds is not None and time.time() - started > max_seconds))
        done = distributed.all_reduce([float(done)], t.dist, "max")[0] > 0  # ranks stop together
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or done:
            save_checkpoint(t, step, metrics["time/elapsed_s"])
        if done:
            break
    bar.close()
    return t.run.path


def train_step(t: Trainer, step: int) -> dict[str, float]:
    """One rollout + one learner update; returns the step's metrics."""
    cfg = t.cfg
    torch.manual_seed(_step_seed(cfg.seed, step))
    rollout = RolloutStats()
    episodes, samples, rounds = collect(cfg, t.actor, t.prompter, t.baselines, t.dist,
                                        seed=_step_seed(cfg.seed, step), opponent=t.opponent,
                                        stats=rollout)
    attempts, task_samples = collect_tasks(cfg, t.actor, t.task_prompter, t.dist,
                                           seed=_step_seed(cfg.seed, step), stats=rollout)
    samples = samples + task_samples
    t.actor.sleep()  # vLLM frees its memory while the learner trains
    if cfg.algo.ref_update_every and step > 1 and (step - 1) % cfg.algo.ref_update_every == 0:
        t.learner.refresh_reference()
    if cfg.algo.kl_beta_final is not None:
        t.learner.set_kl_beta(cfg.algo.kl_beta_at(step))
    t.learner.set_lr(cfg.learner.lr_at(step))  # set every step: a resumed optimizer keeps its own
    stats = t.learner.update(samples)
    stats["train/kl_beta"] = cfg.algo.kl_beta_at(step)
    stats["train/lr"] = cfg.learner.lr_at(step)
    if cfg.env.samples_per_step:
        stats["rollout/rounds"] = float(rounds)
    t.actor.load_weights(t.learner.weights())
    episodes = distributed.gather_episodes(episodes, t.dist)  # all ranks' matches, on rank 0
    attempts = distributed.gather_episodes(attempts, t.dist)  # and all ranks' task answers
    if episodes is None:
        return stats  # rank 0 logs the step
    if cfg.save_games_every and step % cfg.save_games_every == 0:
        t.run.save_games(step, episodes)
    metrics = stats | summarize(episodes, rollout) | task_rollout_metrics(cfg, attempts)
    metrics |= {f"train/baseline/{k}": v for k, v in t.baselines.values.items()}
    return metrics


def evaluate(t: Trainer, step: int) -> dict[str, float]:
    """Online evaluation: fixed opponents on every trained game, the exact metrics of every
    trained game that registers them (the dispatch ``spiral.evaluate`` uses), and accuracy on
    every trained task's test split."""
    cfg = t.cfg
    started = time.perf_counter()
    actor = with_sampling(t.actor, cfg.eval.top_p, None)  # eval.top_p, SPIRAL's 0.95
    metrics = {}
    if cfg.tasks.ids:
        metrics |= evaluate_tasks(
            actor, t.task_prompter, cfg.tasks.ids, cfg.eval.task_problems,
            seed=_step_seed(cfg.seed + 7919, step), temperature=cfg.eval.temperature,
            top_p=cfg.eval.top_p, parse_cut=cfg.env.parse_cut, task_kwargs=cfg.tasks.kwargs)
    if cfg.env.games_per_step == 0:  # no game is trained
        metrics["time/eval_s"] = time.perf_counter() - started
        return metrics
    metrics |= evaluate_opponents(
        actor, t.prompter, cfg.env, cfg.env.games, cfg.eval.opponents, cfg.eval.games,
        seed=_step_seed(cfg.seed + 7919, step), temperature=cfg.eval.temperature,
    )
    if cfg.eval.exact:
        exact, _ = exact_metrics(
            cfg.env.games, mode=cfg.eval.exact_policy, model=t.learner.model,
            tokenizer=t.tokenizer, actor=actor, prompter=t.prompter,
            samples=cfg.eval.exact_samples, seed=_step_seed(cfg.seed, step),
            temperature=cfg.eval.temperature, game_kwargs=cfg.env.game_kwargs)
        metrics |= exact
    if cfg.eval.math:
        metrics |= evaluate_math(t.actor, t.tokenizer, cfg.eval.math, cfg.eval.math_dir,
                                 cfg.eval.math_limit, samples=1,
                                 seed=_step_seed(cfg.seed + 104729, step))
    metrics["time/eval_s"] = time.perf_counter() - started
    return metrics


def save_checkpoint(t: Trainer, step: int, elapsed_s: float) -> None:
    state = {
        "elapsed_s": elapsed_s,
        "baselines": t.baselines.state_dict(),
        "learner_rng": _rng_json(t.learner.rng.getstate()),
        "config": dataclasses.asdict(t.cfg),
    }
    t.learner.save_checkpoint(t.run.path, step, t.tokenizer, state, keep=t.cfg.keep_checkpoints)
    distributed.barrier(t.dist)  # no rank runs ahead of a checkpoint it may resume from


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % 2**31


def _rng_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)
