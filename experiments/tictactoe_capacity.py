"""Can a model learn TicTacToe at all? Supervised training on perfect play, then exact metrics.

    python experiments/tictactoe_capacity.py [--model embedded | --fresh 8x256] [--steps 1000]
        [--lr 1e-3] [--quick]

Self-play RL gets a noisy reward per match; this bench gives the model the best signal there
is: every one of the 4,520 reachable boards labelled with each of its minimax-optimal moves
(the canonical answer the embedded model starts from), trained with the next-token loss on
the answer. The exact metrics (`envs.tictactoe_solver`) before and after say how
far ``--steps`` batches of perfect labels move the model's tactics (taking an immediate win,
blocking one) and its loss rate against perfect play: an upper bound on what self-play can
teach the same model in as many samples. ``--fresh LAYERSxWIDTH`` trains a model of that
shape built from random weights (`spiral.models.tiny.new_model`, the embedded tokenizer)
instead: does a bigger model learn the board? It also reports what tactics alone are worth: the
exact loss rate against perfect play of the starting policy with the winning or blocking cells
given all the probability wherever a board has them (``loss_rate_with_perfect_tactics``).
An experiment, not a benchmark. Figures: experiments/results/tictactoe_capacity.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import time
from pathlib import Path

import torch

import envs
from envs import tictactoe_solver as ttt
from envs.core import Policy
from envs.tictactoe import ACTIONS
from envs.tictactoe_solver import best_cells
from spiral.config import ModelConfig
from spiral.evaluate.exact import policy_logprob
from spiral.models.loading import load_model, load_tokenizer, resolve_path
from spiral.models.logprobs import pad_batch
from spiral.models.prompting import Prompter
from spiral.models.tiny import TinySpec, encode_examples, new_model

os.environ.setdefault("SPIRAL_BENCH_RESULTS", str(Path(__file__).parent / "results"))
sys.path.append(str(Path(__file__).parents[1] / "bench"))
from common import record, table  # noqa: E402

BENCH = "tictactoe_capacity"
ANSWER = envs.spec("TicTacToe-v1").answer_text  # the canonical answer of a move
SHOWN = ("tactics/take_win", "tactics/block", "vs_perfect/loss_rate", "optimal_move_share")


def perfect_play_examples() -> list[tuple[str, str]]:
    """(observation, answer) for every reachable board and each of its optimal moves."""
    examples = []
    for board in ttt.reachable_positions():
        game = ttt.position_game(board)
        observation = game.observe(game.current_player())
        examples += [(observation, ANSWER(ACTIONS[c], game)) for c in best_cells(board)]
    return examples


def model_policy(model, tokenizer) -> Policy:
    model.eval()
    return policy_logprob(model, tokenizer, Prompter(tokenizer), ttt.exact_positions(), ANSWER)[0]


def exact_metrics(policy: Policy) -> dict[str, float]:
    metrics = ttt.tictactoe_metrics(policy)
    return {key: metrics[key] for key in SHOWN}


def with_perfect_tactics(policy: Policy) -> Policy:
    """``policy`` moved onto the cells that win now, else onto those that block (in
    proportion to its own probabilities there); other boards unchanged."""
    out = {}
    for board, probs in policy.items():
        moves = [ACTIONS[c] for c in ttt.tactical_cells(board)[1]]
        mass = sum(probs[m] for m in moves)
        out[board] = {m: probs[m] / mass if m in moves else 0.0 for m in probs} if moves \
            else probs
    return out


def supervise(model, encoded, steps: int, batch: int, lr: float, seed: int) -> list[float]:
    """AdamW on the answer tokens of random batches of ``encoded``; returns the losses."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95))
    model.train()
    losses = []
    for _ in range(steps):
        input_ids, attention, labels = pad_batch(rng.sample(encoded, batch), pad_id=0)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def fresh_model(shape: str, tokenizer):
    """A random-weight model of the embedded architecture, ``"LAYERSxWIDTH"`` (e.g. 8x256)."""
    layers, width = (int(n) for n in shape.split("x"))
    spec = dataclasses.replace(TinySpec(), num_layers=layers, hidden_size=width,
                               intermediate_size=3 * width, num_heads=width // 32,
                               num_kv_heads=width // 64)
    return new_model(tokenizer, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="HF path or 'embedded'")
    parser.add_argument("--fresh", metavar="LAYERSxWIDTH",
                        help="a random-weight model of this shape instead of --model")
    parser.add_argument("--steps", type=int, default=1000, help="supervised batches")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 steps: a smoke run")
    args = parser.parse_args(argv)
    steps = 10 if args.quick else args.steps
    torch.manual_seed(args.seed)
    path = resolve_path(args.model)
    tokenizer = load_tokenizer(path)
    model = fresh_model(args.fresh, tokenizer) if args.fresh else load_model(
        path, ModelConfig(), torch.device("cpu"))
    encoded = encode_examples(tokenizer, perfect_play_examples())
    start = model_policy(model, tokenizer)
    before = exact_metrics(start)
    ceiling = ttt.tictactoe_metrics(with_perfect_tactics(start))
    ceiling = ceiling[f"eval/{ttt.GAME_ID}/vs_perfect/loss_rate"]
    started = time.perf_counter()
    losses = supervise(model, encoded, steps, args.batch, args.lr, args.seed)
    seconds = time.perf_counter() - started
    after = exact_metrics(model_policy(model, tokenizer))
    rows = [(key, f"{before[key]:.3f}", f"{after[key]:.3f}") for key in SHOWN]
    first, last = (losses[0], sum(losses[-20:]) / len(losses[-20:])) if losses else (0.0, 0.0)
    print(f"{len(encoded)} labelled answers; {steps} steps of {args.batch} at lr {args.lr} "
          f"in {seconds:.0f} s; answer loss {first:.3f} -> {last:.3f} (last 20 steps)")
    print(table(rows, ("metric", "before", "after")))
    print(f"loss rate vs perfect play of the starting policy with perfect tactics: {ceiling:.3f}")
    record(BENCH, "supervised_examples", steps * args.batch, "answers")
    record(BENCH, "loss_rate_with_perfect_tactics", ceiling, "probability")
    for key in SHOWN:
        name = key.replace("/", "_")
        record(BENCH, f"{name}_before", before[key], "probability")
        record(BENCH, f"{name}_after", after[key], "probability")


if __name__ == "__main__":
    main()
