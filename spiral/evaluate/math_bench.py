"""Math benchmarks for measuring transfer: loading problems and building their prompts.

SPIRAL trains only on games and measures transfer on seven math benchmarks. Each benchmark is a
list of `MathProblem(id, problem, answer)`, where `answer` is the gold final answer (LaTeX where
the benchmark uses it) that `spiral.evaluate.grade` compares with a model's response.

Two sources, one schema:

- a local directory (``data_dir`` or the ``SPIRAL_MATH_DIR`` environment variable) holding
  ``<name>.jsonl`` files, one ``{"id": str, "problem": str, "answer": str}`` object per line;
  this is what offline runs and the tests use;
- otherwise the Hugging Face hub, through the optional ``datasets`` library (imported only
  then). Each hub dataset has its own field names; `BENCHMARKS` records them and the loader
  maps every row to the schema above (GSM8K's answer is the number after ``####``, AIME 2024's
  is the last ``\\boxed{}`` of its solution field, OlympiadBench's answer list is joined with
  ", ").

>>> problems = load_benchmark("math500", data_dir="data/math", limit=8)
>>> messages = math_messages(problems[0].problem)   # for tokenizer.apply_chat_template
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envs.core import last_boxed

MATH_DIR_ENV = "SPIRAL_MATH_DIR"
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

AnswerFormat = Literal["plain", "gsm8k", "boxed"]


@dataclass(frozen=True)
class MathProblem:
    """One benchmark problem: a stable id, the problem text and the gold final answer."""

    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the Hugging Face hub and how its rows map to `MathProblem`."""

    dataset: str  # hub dataset id
    config: str | None  # dataset config (subset) name, if the dataset has several
    split: str
    problem_field: str
    answer_field: str
    # "plain": the field is the final answer (a string, number or list of strings);
    # "gsm8k": a worked solution ending in "#### <number>"; "boxed": a solution whose last
    # \boxed{} holds the answer.
    answer_format: AnswerFormat = "plain"


@dataclass(frozen=True)
class Benchmark:
    """A math benchmark: its local file name and its hub source."""

    name: str
    file: str
    hub: HubSource


# Hub ids, splits and field names as published on huggingface.co. The OlympiadBench subset is
# its English, text-only, open-ended math part (675 problems, like the local file).
BENCHMARKS: dict[str, Benchmark] = {
    name: Benchmark(name, f"{name}.jsonl", hub)
    for name, hub in (  # hub: dataset, config, split, problem field, answer field, format
        ("math500", HubSource("HuggingFaceH4/MATH-500", None, "test", "problem", "answer")),
        ("aime24", HubSource("math-ai/aime24", None, "test", "problem", "solution", "boxed")),
        ("aime25", HubSource("math-ai/aime25", None, "test", "problem", "answer")),
        ("amc23", HubSource("math-ai/amc23", None, "test", "question", "answer")),
        ("minerva_math", HubSource("math-ai/minervamath", None, "test", "question", "answer")),
        (
            "olympiadbench",
            HubSource(
                "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", "question", "final_answer"
            ),
        ),
        ("gsm8k", HubSource("openai/gsm8k", "main", "test", "question", "answer", "gsm8k")),
    )
}


class BenchmarkUnavailableError(RuntimeError):
    """The hub cannot be used (offline, or `datasets` not installed) and no data_dir was given."""


def benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; an unknown name raises ``ValueError`` listing the names."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown math benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def load_benchmark(
    name: str, data_dir: str | os.PathLike[str] | None = None, limit: int | None = None
) -> list[MathProblem]:
    """The problems of benchmark ``name``, in file order, at most ``limit`` of them.

    They come from ``data_dir/<name>.jsonl`` when ``data_dir`` (or ``$SPIRAL_MATH_DIR``) is set,
    else from the Hugging Face hub. Raises ``ValueError`` for an unknown name or a malformed
    line, ``FileNotFoundError`` for a missing file and ``BenchmarkUnavailableError`` when the
    hub cannot be used.
    """
    spec = benchmark(name)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    directory = data_dir if data_dir is not None else os.environ.get(MATH_DIR_ENV) or None
    if directory is not None:
        problems = _read_problems(Path(directory) / spec.file, spec)
    else:
        problems = _load_from_hub(spec)
    return problems if limit is None else problems[:limit]


def _read_problems(path: Path, spec: Benchmark) -> list[MathProblem]:
    """Parse a ``.jsonl`` benchmark file; errors name the file and the line."""
    if not path.is_file():
        raise FileNotFoundError(
            f"math benchmark file not found: {path}. Put {spec.name} there as JSON lines "
            f'{{"id": str, "problem": str, "answer": str}}, or unset data_dir and '
            f"{MATH_DIR_ENV} to download {spec.hub.dataset} from the Hugging Face hub"
        )
    problems = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                problems.append(_parse_line(line, path, number))
    return problems


def _parse_line(line: str, path: Path, number: int) -> MathProblem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
    fields = {}
    for key in ("id", "problem", "answer"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"{path}:{number}: field {key!r} must be a string")
        fields[key] = row[key]
    return MathProblem(**fields)


def _hub_is_offline() -> bool:
    flags = (os.environ.get(key, "") for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag.strip().upper() in {"1", "ON", "YES", "TRUE"} for flag in flags)


def _load_from_hub(spec: Benchmark) -> list[MathProblem]:
    hint = (
        f"pass data_dir (or set {MATH_DIR_ENV}) to a directory holding {spec.file}, "
        f"one JSON object per line with id, problem and answer"
    )
    if _hub_is_offline():
        raise BenchmarkUnavailableError(
            f"cannot download {spec.hub.dataset} for {spec.name!r}: the hub is offline "
            f"(HF_HUB_OFFLINE); {hint}"
        )
    try:
        import datasets
    except ImportError as exc:
        raise BenchmarkUnavailableError(
            f"loading {spec.name!r} from the hub needs the 'datasets' package "
            f"(pip install datasets); or {hint}"
        ) from exc
    hub = spec.hub
    try:
        rows = datasets.load_dataset(hub.dataset, hub.config, split=hub.split)
        return [
            MathProblem(
                id=f"{spec.name}-{index}",
                problem=str(row[hub.problem_field]),
                answer=hub_answer(row[hub.answer_field], hub.answer_format),
            )
            for index, row in enumerate(rows)
        ]
    except Exception as exc:  # network, authentication, or a changed dataset schema
        raise BenchmarkUnavailableError(
            f"could not load {hub.dataset} (config {hub.config}, split {hub.split}) for "
            f"{spec.name!r}: {type(exc).__name__}: {exc}; {hint}"
        ) from exc


def hub_answer(value: Any, answer_format: AnswerFormat = "plain") -> str:
    """A hub answer field as a final-answer string in the local files' form."""
    if isinstance(value, list | tuple):
        return ", ".join(hub_answer(item, answer_format) for item in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if answer_format == "gsm8k":
        text = text.rpartition("####")[2].strip().replace(",", "")
    elif answer_format == "boxed":
        boxed = last_boxed(text)
        text = text if boxed is None else boxed.strip()
    return _strip_math_delimiters(text)


def _strip_math_delimiters(text: str) -> str:
    match = re.fullmatch(r"\$+(.*?)\$+", text, flags=re.DOTALL)
    return (match.group(1) if match else text).strip()


def math_messages(problem: str) -> list[dict[str, str]]:
    """Chat messages asking for a step-by-step solution with the answer in ``\\boxed{}``."""
    return [{"role": "user", "content": f"{problem}\n\n{MATH_INSTRUCTION}"}]
