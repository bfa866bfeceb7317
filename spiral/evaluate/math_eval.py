"""Math transfer: sample answers to benchmark problems, grade them, report accuracy and lengths.

As in SPIRAL's evaluation, each problem is asked through the model's chat template with the
standard instruction (reason step by step, final answer in ``\\boxed{}``), answered ``samples``
times at temperature 0.6 and top-p 0.95 with a long generation budget, and graded with
math-verify in worker processes (`spiral.evaluate.grade.check_many`, a hard per-answer timeout).
Accuracy is pass@1 averaged over the samples. Per benchmark the metrics are::

    eval/math/<bench>/accuracy              mean correctness over problems x samples
    eval/math/<bench>/problems, samples     how many problems, answers per problem
    eval/math/<bench>/timeouts              answers whose grading timed out (graded wrong)
    eval/math/<bench>/truncated_rate        share of answers cut at max_new_tokens
    eval/math/<bench>/response_tokens_{mean,median,p90,max}

and ``eval/math/overall/accuracy`` is the mean of the benchmark accuracies (the paper's average
column), with ``eval/math/overall/response_tokens_mean`` over every answer. A benchmark whose
data is missing (no file, hub offline) is skipped with a note, not an error.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
from pathlib import Path

from spiral.config import ActorConfig
from spiral.evaluate.grade import DEFAULT_TIMEOUT_S, Verdict, check_many, length_stats
from spiral.evaluate.math_bench import (
    BenchmarkUnavailableError,
    MathProblem,
    benchmark,
    load_benchmark,
    math_messages,
)
from spiral.rollout.actor import Actor, Generation

logger = logging.getLogger(__name__)


def evaluate_math(actor: Actor, tokenizer, names: tuple[str, ...] | list[str],
                  data_dir: str | None = None, limit: int | None = None, samples: int = 4,
                  seed: int = 0, temperature: float = 0.6, top_p: float = 0.95, *,
                  max_new_tokens: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                  workers: int | None = None, enable_thinking: bool | None = None,
                  notes: list[str] | None = None,
                  predictions_dir: str | Path | None = None) -> dict[str, float]:
    """Accuracy (pass@1 over ``samples`` answers) and response lengths per benchmark.

    ``actor`` generates; when it carries an ``ActorConfig`` as ``cfg`` (both spiral actors do),
    a shallow copy with ``top_p`` and ``max_new_tokens`` (None: keep the actor's) is used, so a
    training actor set up for short game answers can be passed as is. Unknown benchmark names
    raise ``ValueError`` before any work; a benchmark that cannot be loaded is skipped and a
    sentence saying why is appended to ``notes``. With ``predictions_dir``, every answer is
    written to ``<bench>.jsonl`` rows ``{"id", "sample", "prediction", "answer", "verdict",
    "tokens", "finished"}`` (re-gradable with ``python -m spiral.evaluate.grade``).
    """
    for name in names:
        benchmark(name)  # unknown names fail here, naming the choices
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    actor = with_sampling(actor, top_p, max_new_tokens)
    metrics: dict[str, float] = {}
    accuracies, lengths = [], []
    for name in names:
        problems = _load(name, data_dir, limit, notes)
        if problems is None:
            continue
        generations = _answer(actor, tokenizer, problems, samples, _seed(seed, name),
                              temperature, enable_thinking)
        golds = [p.answer for p in problems for _ in range(samples)]
        verdicts = check_many([(g.text, gold) for g, gold in zip(generations, golds)],
                              timeout_s, workers)
        metrics |= benchmark_metrics(name, generations, verdicts, len(problems), samples)
        accuracies.append(metrics[f"eval/math/{name}/accuracy"])
        lengths += [len(g.token_ids) for g in generations]
        if predictions_dir is not None:
            write_predictions(Path(predictions_dir) / f"{name}.jsonl", problems, samples,
                              generations, verdicts)
    if accuracies:
        metrics["eval/math/overall/accuracy"] = sum(accuracies) / len(accuracies)
        metrics["eval/math/overall/benchmarks"] = len(accuracies)
        metrics["eval/math/overall/response_tokens_mean"] = length_stats(lengths)["mean"]
    return metrics


def with_sampling(actor: Actor, top_p: float, max_new_tokens: int | None) -> Actor:
    """``actor`` with its ``cfg`` (an ``ActorConfig``) set to the math sampling settings."""
    cfg = getattr(actor, "cfg", None)
    if not isinstance(cfg, ActorConfig):
        return actor
    changes = {"top_p": top_p}
    if max_new_tokens is not None:
        changes["max_new_tokens"] = max_new_tokens
    clone = copy.copy(actor)
    clone.cfg = dataclasses.replace(cfg, **changes)
    return clone


def benchmark_metrics(name: str, generations: list[Generation], verdicts: list[Verdict],
                      problems: int, samples: int) -> dict[str, float]:
    """The ``eval/math/<name>/...`` metrics of one benchmark's graded answers."""
    prefix = f"eval/math/{name}"
    n = len(verdicts)
    out = {
        f"{prefix}/accuracy": sum(v is Verdict.CORRECT for v in verdicts) / n if n else 0.0,
        f"{prefix}/problems": problems,
        f"{prefix}/samples": samples,
        f"{prefix}/timeouts": sum(v is Verdict.TIMEOUT for v in verdicts),
        f"{prefix}/truncated_rate": sum(not g.finished for g in generations) / n if n else 0.0,
    }
    stats = length_stats([len(g.token_ids) for g in generations])
    out |= {f"{prefix}/response_tokens_{key}": value for key, value in stats.items()}
    return out


def math_prompt(tokenizer, problem: str, enable_thinking: bool | None = None) -> list[int]:
    """Prompt token ids: the problem and the standard instruction through the chat template."""
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return list(tokenizer.apply_chat_template(
        math_messages(problem), add_generation_prompt=True, tokenize=True, return_dict=False,
        **extra,
    ))


def write_predictions(path: Path, problems: list[MathProblem], samples: int,
                      generations: list[Generation], verdicts: list[Verdict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i, (gen, verdict) in enumerate(zip(generations, verdicts)):
            problem = problems[i // samples]
            row = {"id": problem.id, "sample": i % samples, "prediction": gen.text,
                   "answer": problem.answer, "verdict": verdict.value,
                   "tokens": len(gen.token_ids), "finished": gen.finished}
            f.write(json.dumps(row) + "\n")


def _load(name: str, data_dir: str | None, limit: int | None,
          notes: list[str] | None) -> list[MathProblem] | None:
    try:
        problems = load_benchmark(name, data_dir=data_dir, limit=limit)
    except (FileNotFoundError, BenchmarkUnavailableError) as err:
        note = f"math benchmark {name} skipped: {err}"
    else:
        if problems:
            return problems
        note = f"math benchmark {name} skipped: it holds no problems"
    logger.warning(note)
    if notes is not None:
        notes.append(note)
    return None


def _answer(actor: Actor, tokenizer, problems: list[MathProblem], samples: int, seed: int,
            temperature: float, enable_thinking: bool | None) -> list[Generation]:
    """``samples`` answers per problem, problem after problem."""
    prompts = [math_prompt(tokenizer, p.problem, enable_thinking) for p in problems]
    return actor.generate([p for p in prompts for _ in range(samples)], seed=seed,
                          temperature=temperature)


def _seed(seed: int, name: str) -> int:
    return random.Random(f"math/{seed}/{name}").randrange(2**31)
