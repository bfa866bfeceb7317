"""Supervised fine-tuning and expert iteration, with training's run directory, checkpoints,
resume and logging (``python -m spiral.sft``)::

    for step in range(start + 1, steps + 1):
        examples = step_batch(data, batch_size, seed, step)          # mode=sft
                   or ei_step_data(actor, task, seed=(seed, step))     # mode=expert_iteration
        stats = learner.update(examples)       # token-level cross-entropy (spiral.learning.sft)
        actor.load_weights(learner.weights())
        every k steps: evaluate (tasks' test accuracy, games vs opponents, exact metrics);
        checkpoint; log

The run directory is training's (`RunDir`: ``metrics.jsonl``, ``config.yaml``,
``checkpoints/step_<N>/`` written by the learner, verified on resume), as are the run lock
(``spiral.training.guard``) and the step seeds. Everything random derives from (seed, step) or
lives in the checkpoint (optimizer, the learner's shuffling RNG), so a relaunch resumes from the
newest good checkpoint and replays the steps after it as an uninterrupted run would. The config
a relaunch is compared with is the checkpoint's: `MUST_NOT_CHANGE` keys refuse (unless
``resume_force=true``), `MAY_CHANGE` keys are logged.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch

import tasks
from spiral import distributed
from spiral.config import EnvConfig
from spiral.evaluate.exact import exact_metrics, headlines
from spiral.evaluate.games import evaluate_opponents
from spiral.evaluate.math_eval import with_sampling
from spiral.evaluate.tasks import evaluate_tasks
from spiral.learning.sft import Example, SFTLearner, make_sft_learner
from spiral.models import checkpoint, lora
from spiral.models.loading import load_tokenizer, pick_device, resolve_path
from spiral.models.prompting import Prompter
from spiral.rollout.actor import HFActor
from spiral.sft_config import SFTConfig
from spiral.training import guard
from spiral.training.expert_iteration import ei_step_data
from spiral.training.rundir import Progress, RunDir
from spiral.training.sft_data import build_examples, step_batch
from spiral.training.train import _rng_json, _rng_state, _step_seed

log = logging.getLogger(__name__)

MUST_NOT_CHANGE = (  # what defines the run: its data, targets, sampling and optimizer shape
    "seed", "mode", "batch_size", "data.", "ei.", "model.name_or_path", "model.enable_thinking",
    "actor.temperature", "actor.top_p", "actor.max_new_tokens",
    "learner.weight_decay", "learner.betas", "learner.lora.",
)
MAY_CHANGE = (  # how long and how it runs; a name ending in "." covers its group
    "steps", "out_dir", "checkpoint_every", "keep_checkpoints", "progress",
    "model.family", "model.dtype", "model.gradient_checkpointing",
    "actor.backend", "actor.batch_size", "actor.vllm.",
    "learner.backend", "learner.device", "learner.lr", "learner.lr_final",
    "learner.lr_decay_steps", "learner.grad_clip", "learner.epochs", "learner.minibatches",
    "learner.micro_batch_tokens", "learner.deepspeed.", "eval.", "tracking.",
)


@dataclasses.dataclass
class SFTRun:
    cfg: SFTConfig
    run: RunDir
    tokenizer: object
    learner: SFTLearner
    prompter: Prompter
    actor: HFActor | None  # samples EI answers and evaluation matches; None when unused
    examples: list[Example] = dataclasses.field(default_factory=list)  # mode=sft: the data
    task: object = None  # mode=expert_iteration: the task whose answers are sampled
    start: int = 0
    elapsed_before: float = 0.0
    dist: distributed.Dist = distributed.ONE_PROCESS


def sft(cfg: SFTConfig) -> Path:
    """Run to ``cfg.steps`` (resuming if ``out_dir`` holds a checkpoint); returns out_dir.
    Raises ``guard.RunRefused`` while another run holds ``out_dir`` or when a key that defines
    the run changed."""
    dist = distributed.setup(cfg.learner.device, need_group=cfg.learner.backend == "deepspeed")
    with guard.exclusive(Path(cfg.out_dir), dist):
        r = build(cfg, dist)
        try:
            return _run(r)
        finally:
            r.run.close()  # the trackers (TensorBoard, W&B), if any


def needs_actor(cfg: SFTConfig) -> bool:
    return cfg.mode == "expert_iteration" or bool(cfg.eval.every and (cfg.eval.tasks
                                                                       or cfg.eval.games))


def build(cfg: SFTConfig, dist: distributed.Dist) -> SFTRun:
    """Load the model (or the run's latest checkpoint), the learner, actor and data."""
    run = RunDir(Path(cfg.out_dir))
    resume_from = checkpoint.latest(run.path) if dist.is_main else None
    resume_from = distributed.all_gather_objects(resume_from, dist)[0]  # rank 0 decides for all
    check_resume(cfg, resume_from, dist)
    base = str(resume_from) if resume_from else resolve_path(cfg.model.name_or_path)
    tokenizer = load_tokenizer(base)
    model = lora.trainable(cfg.model.name_or_path, resume_from, cfg.model, cfg.learner.lora,
                           pick_device(cfg.learner.device), seed=cfg.seed)
    actor = None
    if needs_actor(cfg):  # its own copy, or a view sharing the adapter's frozen base
        actor = HFActor(lora.actor_copy(model, cfg.learner.shards_weights), tokenizer, cfg.actor)
    learner = make_sft_learner(model, cfg.learner, pad_id=tokenizer.pad_token_id, dist=dist,
                               bf16=cfg.model.dtype == "bfloat16", seed=cfg.seed)
    r = SFTRun(cfg, run, tokenizer, learner, Prompter(tokenizer, cfg.model.enable_thinking),
               actor, dist=dist)
    if cfg.mode == "sft":
        r.examples = build_examples(cfg, tokenizer, r.prompter)
    else:
        r.task = tasks.make(cfg.data.task, **cfg.data.task_kwargs)
    if resume_from:
        state = checkpoint.load_state(resume_from, learner.optimizer)
        r.start, r.elapsed_before = state["step"], state["elapsed_s"]
        learner.rng.setstate(_rng_state(state["learner_rng"]))
    if dist.is_main:
        run.prepare(r.start, cfg)
    distributed.barrier(dist)
    return r


def _run(r: SFTRun) -> Path:
    """Evaluate at step 0, then step, evaluate, log and checkpoint up to ``cfg.steps``."""
    cfg = r.cfg
    started = time.time()
    elapsed = lambda: r.elapsed_before + time.time() - started  # noqa: E731
    if r.start == 0 and cfg.eval.every and (cfg.eval.tasks or cfg.eval.games):
        metrics = evaluate(r, step=0) | {"time/elapsed_s": elapsed()}
        if r.dist.is_main:
            r.run.log(0, metrics)
    bar = Progress(cfg.steps, r.start, enabled=cfg.progress and r.dist.is_main,
                   exact=headlines(cfg.eval.games))
    for step in range(r.start + 1, cfg.steps + 1):
        metrics = sft_step(r, step)
        if cfg.eval.every and (step % cfg.eval.every == 0 or step == cfg.steps):
            metrics |= evaluate(r, step)
        metrics["time/elapsed_s"] = elapsed()
        if r.dist.is_main:
            r.run.log(step, metrics)
        bar.update(metrics)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(r, step, metrics["time/elapsed_s"])
    bar.close()
    return r.run.path


def sft_step(r: SFTRun, step: int) -> dict[str, float]:
    """One step's examples (this rank's share), one SFT update; the step's metrics."""
    cfg = r.cfg
    seed = _step_seed(cfg.seed, step)
    torch.manual_seed(seed)
    metrics: dict[str, float] = {}
    if cfg.mode == "sft":
        batch = step_batch(r.examples, cfg.batch_size, cfg.seed, step)
        lo, hi = distributed.shard_range(len(batch), r.dist.rank, r.dist.world_size)
        examples = batch[lo:hi]
    else:
        examples, metrics = ei_step_data(cfg, r.actor, r.prompter, r.task, seed,
                                         pad_id=r.tokenizer.pad_token_id, dist=r.dist)
    r.learner.set_lr(cfg.learner.lr_at(step))  # every step: a resumed optimizer keeps its own
    stats = r.learner.update(examples)
    if r.actor is not None:
        r.actor.load_weights(r.learner.weights())
    return stats | metrics | {"train/lr": cfg.learner.lr_at(step)}


def evaluate(r: SFTRun, step: int) -> dict[str, float]:
    """Test-split accuracy of ``eval.tasks``; ``eval.games`` against ``eval.opponents`` and
    their exact metrics (the functions training's online evaluation calls)."""
    cfg, ev = r.cfg, r.cfg.eval
    started = time.perf_counter()
    actor = with_sampling(r.actor, ev.top_p, None)
    seed = _step_seed(cfg.seed + 7919, step)
    metrics: dict[str, float] = {}
    if ev.tasks:
        metrics |= evaluate_tasks(actor, r.prompter, ev.tasks, ev.task_problems, seed=seed,
                                  temperature=ev.temperature, top_p=ev.top_p,
                                  task_kwargs={cfg.data.task: cfg.data.task_kwargs})
    if ev.games:
        game_kwargs = {cfg.data.game: cfg.data.game_kwargs}
        env = EnvConfig(games=ev.games, game_kwargs=game_kwargs)
        metrics |= evaluate_opponents(actor, r.prompter, env, ev.games, ev.opponents, ev.matches,
                                      seed=seed, temperature=ev.temperature)
        if ev.exact:
            exact, _ = exact_metrics(
                ev.games, mode=ev.exact_policy, model=r.learner.model, tokenizer=r.tokenizer,
                actor=actor, prompter=r.prompter, samples=ev.exact_samples,
                seed=_step_seed(cfg.seed, step), temperature=ev.temperature,
                game_kwargs=game_kwargs)
            metrics |= exact
    metrics["time/eval_s"] = time.perf_counter() - started
    return metrics


def save_checkpoint(r: SFTRun, step: int, elapsed_s: float) -> None:
    state = {"elapsed_s": elapsed_s, "learner_rng": _rng_json(r.learner.rng.getstate()),
             "config": dataclasses.asdict(r.cfg)}
    r.learner.save_checkpoint(r.run.path, step, r.tokenizer, state, keep=r.cfg.keep_checkpoints)
    distributed.barrier(r.dist)  # no rank runs ahead of a checkpoint it may resume from


def check_resume(cfg: SFTConfig, resume_from: Path | None,
                 dist: distributed.Dist = distributed.ONE_PROCESS) -> None:
    """Training's resume checks (``spiral.training.guard``) with this command's key lists."""
    refusal = None
    if dist.is_main:
        out_dir = Path(cfg.out_dir)
        refusal = guard.no_good_checkpoint(out_dir) if resume_from is None else None
        saved, source = guard.saved_config(out_dir, resume_from)
        if refusal is None and saved is not None:
            refusal = review(cfg, saved, source)
    guard.agree(refusal, dist)


def review(cfg: SFTConfig, saved: dict, source: str) -> str | None:
    """Log what changed since ``saved``; the refusal, if a key that defines the run changed or
    ``out_dir`` holds another command's run."""
    if "mode" not in saved:
        return (f"{cfg.out_dir} holds a run of another command ({source} has no 'mode'); "
                "choose another out_dir")
    return guard.review(cfg, saved, source, may_change)


def may_change(key: str) -> bool:
    """Whether ``key`` may differ on resume (an unlisted key may not: the safe side)."""
    return listed(key, MAY_CHANGE)


def listed(key: str, names: tuple[str, ...]) -> bool:
    return any(key == name or (name.endswith(".") and key.startswith(name)) for name in names)

