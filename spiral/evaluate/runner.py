"""Evaluate a checkpoint: games against fixed opponents, exact game metrics, math transfer.

``python -m spiral.evaluate`` composes ``configs/evaluate.yaml`` and calls `run`; the pieces are
plain functions of a typed `EvaluateConfig`, so training or a notebook can call them too:

- `evaluate_games`: every (game, opponent) pair, ``matches`` matches with the policy's seat
  alternated, through the same rollout (`spiral.rollout.selfplay.play`) and the same rates with 95%
  Wilson intervals (`spiral.evaluate.games.outcome_rates`) as training's online evaluation;
- `exact_game_metrics`: the exact metrics every evaluated game registers (Kuhn Poker's
  exploitability, TicTacToe's loss rate against perfect play; `spiral.evaluate.exact`);
- `math_metrics`: accuracy and response lengths on math benchmarks (`spiral.evaluate.math_eval`).

`run` writes ``out_dir/eval.json`` (config, flat metrics, Kuhn policy, notes), ``eval.md`` (the
tables of `spiral.evaluate.report`), ``games/step_<N>.jsonl`` (the transcripts, for
``python -m spiral.replay``) and ``math/<bench>.jsonl`` (every graded answer).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spiral.config import ActorConfig, EnvConfig, ModelConfig, from_mapping, ranged
from spiral.errors import (
    ConfigError,
    check_folder,
    check_game_kwargs,
    check_games,
    check_model_path,
    check_opponent,
)
from spiral.evaluate.exact import exact_metrics
from spiral.evaluate.games import outcome_rates, supported
from spiral.evaluate.math_bench import benchmark
from spiral.evaluate.math_eval import evaluate_math
from spiral.evaluate.report import markdown
from spiral.evaluate.tasks import evaluate_tasks
from spiral.models import checkpoint
from spiral.models.loading import DTYPES, load_model, load_tokenizer, pick_device, resolve_path
from spiral.models.prompting import INSTRUCTIONS, Prompter
from spiral.records import Episode
from spiral.rollout.actor import Actor, HFActor
from spiral.rollout.openai_opponent import OpenAIError, OpenAIOpponent
from spiral.rollout.opponents import named_opponent
from spiral.rollout.selfplay import play
from spiral.rollout.transcripts import save_games
from tasks import list_tasks

logger = logging.getLogger(__name__)

EXACT_POLICIES = ("logprob", "sample")
SHOWN_POLICY_SIZE = 64  # policies of at most this many positions go into eval.json
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class EvaluateConfig:
    """What to evaluate and how. The one source of the defaults: ``configs/evaluate.yaml``
    only requires ``checkpoint`` and names the output folder."""

    checkpoint: str  # HF model dir, hub id, "embedded", or a run dir (its latest checkpoint)
    out_dir: str = "runs/eval"  # eval.json, eval.md, games/ and math/ go here
    seed: int = ranged(0, ">= 0")  # everything random derives from this
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    dtype: str = "float32"  # float32 | bfloat16 | float16
    enable_thinking: bool | None = None  # chat-template flag for Qwen3-style templates
    batch_size: int = ranged(64, ">= 1")  # prompts per generation call
    # any registered id, e.g. SimpleNegotiation-v1, openspiel/leduc_poker
    games: tuple[str, ...] = ("KuhnPoker-v1", "TicTacToe-v1")
    opponents: tuple[str, ...] = ("random", "optimal")  # also checkpoint:PATH, openai:MODEL
    matches: int = ranged(64, ">= 1")  # matches per (game, opponent), seats alternated
    temperature: float = ranged(1.0, ">= 0", "0 is greedy")  # the policy's sampling temperature
    top_p: float = ranged(1.0, "(0, 1]")  # nucleus sampling of game answers (SPIRAL: 0.95)
    max_new_tokens: int = ranged(24, ">= 1")  # game answer limit (a cut answer is invalid)
    max_turns: int | None = ranged(None, ">= 1")  # overrides each game's turn limit (then a draw)
    # per-game constructor overrides, e.g. {KuhnPoker-v1: {rounds: 5}}
    game_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    instruction: str = "brief"  # "brief" or "reason" (SPIRAL's prompt), as in training
    parse_cut: bool = False  # parse answers cut at max_new_tokens (SPIRAL) instead of invalid
    exact: bool = True  # the exact metrics each game registers (Kuhn exploitability, ...)
    exact_policy: str = "logprob"  # policy from canonical-answer log-probs, or "sample"
    exact_samples: int = ranged(64, ">= 1")  # answers per position with exact_policy=sample
    tasks: tuple[str, ...] = ()  # verifiable tasks, e.g. [GameTheory-v1, Deduction-v1]
    task_problems: int = ranged(64, ">= 1")  # test-split problems per task
    math: tuple[str, ...] = ()  # math500 aime24 aime25 amc23 minerva_math olympiadbench gsm8k
    samples: int = ranged(4, ">= 1")  # answers per math problem; accuracy: pass@1 averaged
    math_dir: str | None = None  # local {"id","problem","answer"} jsonl dir; None = env or hub
    math_limit: int | None = ranged(None, ">= 1")  # problems per benchmark (None = all)
    math_temperature: float = ranged(0.6, ">= 0")  # SPIRAL's evaluation sampling (0: greedy)
    math_top_p: float = ranged(0.95, "(0, 1]")  # nucleus sampling for math answers
    math_max_new_tokens: int = ranged(8192, ">= 1")  # long generations for reasoning
    grade_timeout_s: float = ranged(5.0, "> 0")  # math-verify deadline per answer (then wrong)


def to_config(data: dict[str, Any]) -> EvaluateConfig:
    """Validate a plain mapping (e.g. the composed Hydra config); errors name the bad key.

    Checks ranges, choices, and what the config names: games, opponents, benchmarks, the
    checkpoint (a model folder, a run directory with a complete checkpoint, a hub id or
    ``embedded``), without loading anything."""
    data = dict(data)
    for key in ("games", "opponents", "math", "tasks"):  # games=X means [X]
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    if data.get("checkpoint") in (None, "", "???"):
        raise ConfigError("checkpoint is required: python -m spiral.evaluate checkpoint=PATH")
    cfg = from_mapping(EvaluateConfig, data)
    _check(cfg)
    return cfg


def _check(cfg: EvaluateConfig) -> None:
    for key, choices in (("device", DEVICES), ("dtype", tuple(DTYPES)),
                         ("exact_policy", EXACT_POLICIES), ("instruction", INSTRUCTIONS)):
        if getattr(cfg, key) not in choices:
            raise ConfigError(f"{key}={getattr(cfg, key)!r} is not one of {', '.join(choices)}")
    check_games(cfg.games, "games")
    for task_id in cfg.tasks:
        if task_id not in list_tasks():
            raise ConfigError(f"tasks: unknown task {task_id!r}; registered: "
                              f"{', '.join(list_tasks())}")
    check_game_kwargs(cfg.game_kwargs, "game_kwargs")
    for name in cfg.opponents:
        check_opponent(name, cfg.games, "opponents", training=False, remote=OpenAIOpponent)
    for name in cfg.math:
        try:
            benchmark(name)
        except ValueError as err:
            raise ConfigError(f"math: {err}") from err
    if cfg.math_dir is not None:
        check_folder(cfg.math_dir, "math_dir")
    if cfg.checkpoint != "embedded":  # resolving it would build the embedded model
        check_model_path(resolve_checkpoint(cfg.checkpoint), "checkpoint", shown=cfg.checkpoint,
                         run_dir=True)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is available; allowed here: auto, cpu")


# --------------------------------------------------------------------------- games


def env_config(cfg: EvaluateConfig) -> EnvConfig:
    """The rollout settings of the evaluation games (SPIRAL's invalid-move penalties)."""
    return EnvConfig(games=cfg.games, max_turns=cfg.max_turns, game_kwargs=cfg.game_kwargs,
                     parse_cut=cfg.parse_cut, instruction=cfg.instruction)


def evaluate_games(actor: Actor, prompter: Prompter, cfg: EvaluateConfig, notes: list[str],
                   device=None) -> tuple[dict[str, float], list[Episode], list[list[str]]]:
    """Outcome rates per (game, opponent); returns metrics, every episode, the pairs played.

    A pair without that opponent (no ``optimal`` player for most adapted games) or whose remote
    opponent fails is skipped with a note. Every pair uses seed ``cfg.seed``, as
    `spiral.evaluate.games.evaluate_opponents` does, so the numbers agree with it."""
    env = env_config(cfg)
    metrics: dict[str, float] = {}
    episodes: list[Episode] = []
    pairs: list[list[str]] = []
    opponents: dict[str, object] = {}
    for game_id in cfg.games:
        for name in cfg.opponents:
            if not supported(name, game_id):
                notes.append(f"{game_id} vs {name} skipped: no such opponent for this game")
                continue
            if name not in opponents:
                opponents[name] = named_opponent(name, device, cfg.max_new_tokens,
                                                 policy=getattr(actor, "model", None))
            try:
                played = play(actor, prompter, env, cfg.matches, cfg.seed,
                              opponent=opponents[name], games=(game_id,),
                              temperature=cfg.temperature)
            except OpenAIError as err:
                notes.append(f"{game_id} vs {name} skipped: {err}")
                continue
            metrics |= outcome_rates(played, f"eval/{game_id}/{name}")
            episodes += played
            pairs.append([game_id, name])
    return metrics, episodes, pairs


def exact_game_metrics(model, tokenizer, actor: Actor, prompter: Prompter,
                       cfg: EvaluateConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """The exact metrics of every evaluated game that registers them (``spiral.evaluate.exact``).

    Returns the metrics and the small policies they were computed from (Kuhn Poker's 12
    information states; not TicTacToe's 4,520 boards)."""
    metrics, policies = exact_metrics(
        cfg.games, mode=cfg.exact_policy, model=model, tokenizer=tokenizer, actor=actor,
        prompter=prompter, samples=cfg.exact_samples, seed=cfg.seed, temperature=cfg.temperature,
        game_kwargs=cfg.game_kwargs)
    small = {g: p for g, p in policies.items() if len(p) <= SHOWN_POLICY_SIZE}
    return metrics, {"policies": small} if small else {}


def math_metrics(actor: Actor, tokenizer, cfg: EvaluateConfig, notes: list[str],
                 predictions_dir: Path | None = None) -> dict[str, float]:
    """Math transfer with the configured benchmarks and SPIRAL's sampling settings."""
    return evaluate_math(
        actor, tokenizer, cfg.math, cfg.math_dir, cfg.math_limit, cfg.samples, cfg.seed,
        cfg.math_temperature, cfg.math_top_p, max_new_tokens=cfg.math_max_new_tokens,
        timeout_s=cfg.grade_timeout_s, enable_thinking=cfg.enable_thinking, notes=notes,
        predictions_dir=predictions_dir,
    )


# --------------------------------------------------------------------------- the command


def resolve_checkpoint(path: str) -> str:
    """``embedded`` -> the embedded model; a run dir -> its latest checkpoint; else as given."""
    run_dir = Path(path).expanduser()
    if (run_dir / "checkpoints").is_dir():
        latest = checkpoint.latest(run_dir)
        if latest is None:
            raise ConfigError(f"checkpoint={path!r}: {run_dir / 'checkpoints'} holds no complete "
                              "checkpoint")
        return str(latest)
    return resolve_path(path)


def checkpoint_step(path: str) -> int:
    """The training step of a spiral checkpoint (0 for any other model)."""
    state = Path(path) / checkpoint.STATE_FILE
    return int(json.loads(state.read_text())["step"]) if state.is_file() else 0


def run(cfg: EvaluateConfig, log=print) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint``; write eval.json, eval.md, transcripts; return the report."""
    started = time.perf_counter()
    out = Path(cfg.out_dir)
    (out / "games").mkdir(parents=True, exist_ok=True)
    path = resolve_checkpoint(cfg.checkpoint)
    device = pick_device(cfg.device)
    log(f"evaluating {path} on {device}")
    tokenizer = load_tokenizer(path)
    model = load_model(path, ModelConfig(dtype=cfg.dtype), device).eval()
    actor = HFActor(model, tokenizer, ActorConfig(
        temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size))
    prompter = Prompter(tokenizer, cfg.enable_thinking, instruction=cfg.instruction)
    notes: list[str] = []
    log(f"games: {', '.join(cfg.games)} against {', '.join(cfg.opponents)}")
    metrics, episodes, pairs = evaluate_games(actor, prompter, cfg, notes, device)
    step = checkpoint_step(path)
    if episodes:
        log(f"game transcripts: {save_games(out / 'games', step, episodes)}")
    exact: dict[str, float] = {}
    details: dict[str, Any] = {}
    if cfg.exact:
        log(f"exact metrics ({cfg.exact_policy} policy)")
        exact, details = exact_game_metrics(model, tokenizer, actor, prompter, cfg)
    metrics |= exact
    if cfg.math:
        log(f"math: {', '.join(cfg.math)}, {cfg.samples} samples per problem")
        metrics |= math_metrics(actor, tokenizer, cfg, notes, out / "math")
    if cfg.tasks:
        log(f"tasks: {', '.join(cfg.tasks)}, {cfg.task_problems} test problems each")
        metrics |= evaluate_tasks(actor, Prompter(tokenizer, cfg.enable_thinking), cfg.tasks,
                                  cfg.task_problems, cfg.seed, temperature=cfg.temperature,
                                  top_p=cfg.top_p, parse_cut=cfg.parse_cut)
    report = {
        "checkpoint": cfg.checkpoint, "model_path": path, "step": step,
        "config": dataclasses.asdict(cfg), "pairs": pairs, "exact_keys": list(exact),
        "math_benchmarks": [n for n in cfg.math if f"eval/math/{n}/accuracy" in metrics],
        "tasks": list(cfg.tasks),
        "metrics": metrics, **details, "notes": notes,
        "seconds": time.perf_counter() - started,
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "eval.md").write_text(markdown(report))
    return report
