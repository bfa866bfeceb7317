"""Math benchmark loading and math-verify grading (spiral.evaluate.math_bench / .grade).

The benchmark files live beside the repository in ../shared/data/math; tests that need them
skip when that directory is absent.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from spiral.evaluate.grade import (
    Verdict,
    _GradingPool,
    check_answer,
    check_many,
    gold_latex,
    grade_answer,
    grade_many,
    length_stats,
    prediction_latex,
    summarize,
    summarize_verdicts,
)
from spiral.evaluate.math_bench import (
    BENCHMARKS,
    MATH_INSTRUCTION,
    BenchmarkUnavailableError,
    MathProblem,
    hub_answer,
    load_benchmark,
    math_messages,
)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "math"
SIZES = {
    "math500": 500,
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
    "minerva_math": 272,
    "olympiadbench": 675,
    "gsm8k": 1319,
}


@pytest.fixture(scope="module")
def math_dir() -> Path:
    if not (DATA_DIR / "math500.jsonl").is_file():
        pytest.skip(f"math benchmark files not found in {DATA_DIR} (see shared/data/README.md)")
    return DATA_DIR


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point: problem i gets the answer of order[i]."""
    rng = random.Random(seed)
    order = list(range(n))
    while any(i == j for i, j in enumerate(order)):
        rng.shuffle(order)
    return order


def self_and_shuffled(problems: list[MathProblem], template: str) -> tuple[list, list]:
    """Rows answering each problem with its own gold, and with another problem's gold."""
    own = [(template.format(p.answer), p.answer) for p in problems]
    order = derangement(len(problems), seed=0)
    shuffled = [
        (template.format(problems[j].answer), problems[i].answer)
        for i, j in enumerate(order)
        if problems[i].answer != problems[j].answer
    ]
    return own, shuffled


def grade_in_pool(problems: list[MathProblem], template: str) -> tuple[list, list, list]:
    own, shuffled = self_and_shuffled(problems, template)
    verdicts = check_many(own + shuffled, workers=2)
    return own, verdicts[: len(own)], verdicts[len(own) :]


@pytest.fixture(scope="module")
def math500_graded(math_dir: Path) -> tuple[list, list, list]:
    return grade_in_pool(load_benchmark("math500", math_dir), "so the answer is \\boxed{{{}}}.")


@pytest.fixture(scope="module")
def gsm8k_graded(math_dir: Path) -> tuple[list, list, list]:
    return grade_in_pool(load_benchmark("gsm8k", math_dir), "So she makes {} in total.")


# --------------------------------------------------------------------------- grading


def test_every_math500_gold_grades_correct_as_boxed_answer(math500_graded):
    own, verdicts, _ = math500_graded
    failed = [gold for (_, gold), v in zip(own, verdicts, strict=True) if v is not Verdict.CORRECT]
    assert len(own) == 500
    assert failed == []


def test_math500_answers_of_other_problems_grade_wrong(math500_graded):
    _, _, verdicts = math500_graded
    assert len(verdicts) >= 480  # only pairs whose gold strings differ
    wrong = sum(v is Verdict.WRONG for v in verdicts)
    assert wrong / len(verdicts) >= 0.95
    assert Verdict.TIMEOUT not in verdicts


def test_gsm8k_plain_number_answers(gsm8k_graded):
    own, verdicts, shuffled = gsm8k_graded
    assert len(own) == 1319
    assert all(v is Verdict.CORRECT for v in verdicts)
    assert sum(v is Verdict.WRONG for v in shuffled) / len(shuffled) >= 0.95


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("so the answer is \\boxed{\\frac{1}{2}}", "0.5", True),
        ("\\boxed{2}", "3", False),
        ("The answer is 18.", "18", True),
        ("First \\boxed{2}, but on reflection the answer is \\boxed{3}.", "3", True),
        (
            "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
            True,
        ),
        ("\\boxed{(3, \\pi)}", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
        ("\\boxed{8, 4}", "8$,$4", True),  # OlympiadBench joins answers with "$,$"
        ("\\boxed{(-\\infty, 0) \\cup \\{1\\}}", "(-\\infty, 0) \\cup\\{1\\}$.", True),
        ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True),
        ("I do not know.", "3", False),
        ("", "3", False),
        ("\\boxed{3}", "", False),
        (None, "3", False),
    ],
)
def test_hand_cases(prediction, gold, expected):
    assert grade_answer(prediction, gold) is expected


def test_only_the_last_box_is_the_answer():
    # math-verify alone reads both boxes as the set {2, 3}
    response = "We get \\boxed{2}.\n\nWait, that misses a case: \\boxed{3}"
    assert prediction_latex(response) == "\\boxed{3}"
    assert grade_answer(response, "3")
    assert not grade_answer(response, "2")
    assert prediction_latex("The answer is 4.") == "The answer is 4."


def test_gold_latex_drops_stray_dollars_and_final_period():
    assert gold_latex("8$,$4") == "\\boxed{8,4}"
    assert gold_latex(" x+1. ") == "\\boxed{x+1}"
    assert gold_latex("\\$5") == "\\boxed{\\$5}"
    assert gold_latex("\\boxed{7}") == "\\boxed{7}"


def test_heavy_expression_times_out_in_main_thread():
    started = time.monotonic()
    assert check_answer("\\boxed{9^{9^{9^{9}}}}", "3", timeout_s=0.2) is Verdict.TIMEOUT
    assert time.monotonic() - started < 2.0
    assert check_answer("\\boxed{3}", "3", timeout_s=0.2) is Verdict.CORRECT  # alarm disarmed


def test_grading_off_the_main_thread_uses_a_worker_process():
    results = {}

    def grade() -> None:
        results["right"] = grade_answer("\\boxed{3}", "3")
        results["heavy"] = check_answer("\\boxed{9^{9^{9^{9}}}}", "3", timeout_s=0.2)

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=60)
    assert results == {"right": True, "heavy": Verdict.TIMEOUT}


def stubborn_worker(conn, timeout_s: float) -> None:
    """A grading worker that hangs beyond signals on "hang" and dies on "crash"."""
    conn.send("ready")
    while (task := conn.recv()) is not None:
        index, prediction, _ = task
        if prediction == "hang":
            time.sleep(600)
        if prediction == "crash":
            os._exit(3)
        conn.send((index, "correct"))


def test_pool_kills_stuck_workers_and_survives_crashes():
    tasks = [("ok", ""), ("hang", ""), ("ok", ""), ("crash", ""), ("ok", "")]
    started = time.monotonic()
    verdicts = _GradingPool(1, timeout_s=0.1, target=stubborn_worker).run(tasks)
    assert verdicts == [
        Verdict.CORRECT,
        Verdict.TIMEOUT,
        Verdict.CORRECT,
        Verdict.WRONG,
        Verdict.CORRECT,
    ]
    assert time.monotonic() - started < 30


def test_check_many_keeps_order_and_rejects_bad_arguments():
    rows = [("\\boxed{2}", "3"), ("\\boxed{3}", "3"), ("x = \\boxed{\\sqrt{2}}", "\\sqrt2")]
    assert grade_many(rows, workers=2) == [False, True, True]
    assert check_many([]) == []
    with pytest.raises(ValueError, match="workers"):
        check_many(rows, workers=0)
    with pytest.raises(ValueError, match="timeout_s"):
        grade_answer("\\boxed{3}", "3", timeout_s=0)


def test_summaries():
    assert summarize([True, False, True, True]) == {
        "accuracy": 0.75,
        "n": 4,
        "correct": 3,
        "timeouts": 0,
    }
    assert summarize([]) == {"accuracy": 0.0, "n": 0, "correct": 0, "timeouts": 0}
    verdicts = [Verdict.CORRECT, Verdict.TIMEOUT, Verdict.WRONG, Verdict.TIMEOUT]
    assert summarize_verdicts(verdicts) == {"accuracy": 0.25, "n": 4, "correct": 1, "timeouts": 2}
    assert length_stats([5, 1, 3, 2, 4, 6, 7, 8, 9, 100]) == {
        "mean": 14.5,
        "median": 5.5,
        "p90": 9.0,
        "max": 100.0,
    }
    assert length_stats([7]) == {"mean": 7.0, "median": 7.0, "p90": 7.0, "max": 7.0}
    assert length_stats([]) == {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}


# --------------------------------------------------------------------------- command line


def run_cli(path: Path) -> subprocess.CompletedProcess:
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "spiral.evaluate.grade", str(path), "--workers", "1"]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_cli_prints_one_json_summary(tmp_path):
    rows = [
        {"id": "a", "prediction": "so the answer is \\boxed{\\frac{1}{2}}", "answer": "0.5"},
        {"id": "b", "prediction": "\\boxed{2}", "answer": "3"},
        {"id": "c", "prediction": "The answer is 18.", "answer": "18"},
        {"id": "d", "prediction": "\\boxed{x^2+2x+1}", "answer": "(x+1)^2"},
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_cli(path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"accuracy": 0.75, "n": 4, "correct": 3, "timeouts": 0}


def test_cli_rejects_malformed_file(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a", "prediction": "\\\\boxed{1}", "answer": "1"}\n{"id": "b"}\n')
    result = run_cli(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{path}:2" in result.stderr and "'prediction'" in result.stderr
    missing = run_cli(tmp_path / "absent.jsonl")
    assert missing.returncode == 2 and "absent.jsonl" in missing.stderr


# --------------------------------------------------------------------------- benchmarks


def test_benchmark_names():
    assert list(BENCHMARKS) == [
        "math500",
        "aime24",
        "aime25",
        "amc23",
        "minerva_math",
        "olympiadbench",
        "gsm8k",
    ]
    assert all(spec.file == f"{name}.jsonl" for name, spec in BENCHMARKS.items())


@pytest.mark.parametrize("name", list(SIZES))
def test_every_benchmark_loads_from_the_data_dir(math_dir, name):
    problems = load_benchmark(name, math_dir)
    assert len(problems) == SIZES[name]
    assert problems[0].id == f"{name}-0"
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.problem.strip() and p.answer.strip() for p in problems)


def test_limit_and_environment_variable(math_dir, monkeypatch):
    monkeypatch.setenv("SPIRAL_MATH_DIR", str(math_dir))
    problems = load_benchmark("aime24", limit=3)
    assert [p.id for p in problems] == ["aime24-0", "aime24-1", "aime24-2"]
    assert problems[0].answer == "204"
    with pytest.raises(ValueError, match="limit"):
        load_benchmark("aime24", limit=-1)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_benchmark("aime25", data_dir=tmp_path)
    assert str(tmp_path / "aime25.jsonl") in str(error.value)
    assert "math-ai/aime25" in str(error.value)


def test_unknown_benchmark_lists_the_names():
    with pytest.raises(ValueError) as error:
        load_benchmark("math5000", data_dir=".")
    for name in BENCHMARKS:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id": "x", "problem": "p"}', "'answer'"),
        ('{"id": 1, "problem": "p", "answer": "a"}', "'id'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "amc23.jsonl"
    path.write_text('{"id": "amc23-0", "problem": "1+1?", "answer": "2"}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=problem) as error:
        load_benchmark("amc23", tmp_path)
    assert f"{path}:3" in str(error.value)


def fake_datasets(rows: list[dict], calls: list) -> types.ModuleType:
    module = types.ModuleType("datasets")

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return rows

    module.load_dataset = load_dataset
    return module


@pytest.mark.parametrize(
    ("name", "row", "expected"),
    [
        ("gsm8k", {"question": "Q?", "answer": "2 + 2 = <<2+2=4>>4\n#### 1,234"}, "1234"),
        ("aime24", {"problem": "Q?", "solution": "so it is $\\boxed{204}$"}, "204"),
        ("olympiadbench", {"question": "Q?", "final_answer": ["$8$", "$4$"]}, "8, 4"),
        ("amc23", {"question": "Q?", "answer": 27.0}, "27"),
        ("math500", {"problem": "Q?", "answer": "\\frac{14}{3}"}, "\\frac{14}{3}"),
    ],
)
def test_hub_rows_map_to_the_local_schema(monkeypatch, name, row, expected):
    calls: list = []
    monkeypatch.delenv("SPIRAL_MATH_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets([row, row], calls))
    problems = load_benchmark(name, limit=1)
    hub = BENCHMARKS[name].hub
    assert calls == [(hub.dataset, hub.config, hub.split)]
    assert problems == [MathProblem(f"{name}-0", "Q?", expected)]


def test_hub_unavailable_says_to_pass_data_dir(monkeypatch):
    monkeypatch.delenv("SPIRAL_MATH_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchmarkUnavailableError, match="data_dir"):
        load_benchmark("math500")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(BenchmarkUnavailableError, match="pip install datasets"):
        load_benchmark("math500")
    changed_schema = [{"prompt": "Q?", "answer": "1"}]
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(changed_schema, []))
    with pytest.raises(BenchmarkUnavailableError, match="KeyError: 'problem'.*data_dir"):
        load_benchmark("math500")


def test_hub_answer_formats():
    assert hub_answer(["$x=1$", "$x=2$"]) == "x=1, x=2"
    assert hub_answer("$\\frac{1}{2}$") == "\\frac{1}{2}"
    assert hub_answer("no box here", "boxed") == "no box here"
    assert hub_answer(3.5) == "3.5"


def test_math_messages():
    messages = math_messages("What is $1+1$?")
    assert messages == [{"role": "user", "content": "What is $1+1$?\n\n" + MATH_INSTRUCTION}]
    assert MATH_INSTRUCTION.endswith("within \\boxed{}.")
