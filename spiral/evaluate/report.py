"""The Markdown summary of an evaluation (``eval.md``), built from the report in ``eval.json``.

Tables: games (win / draw / loss / invalid rates, each with its 95% Wilson interval, per game
and opponent), exact metrics (Kuhn exploitability, TicTacToe optimality), math (accuracy and
response lengths per benchmark, and their average), tasks (accuracy with its interval, per
category and difficulty), then any notes.
"""

from __future__ import annotations

from typing import Any

OUTCOMES = ("win", "draw", "loss", "invalid")
MATH_COLUMNS = (  # (header, metric key after eval/math/<bench>/, format)
    ("problems", "problems", "{:.0f}"),
    ("samples", "samples", "{:.0f}"),
    ("accuracy", "accuracy", "{:.1%}"),
    ("tokens mean", "response_tokens_mean", "{:.0f}"),
    ("median", "response_tokens_median", "{:.0f}"),
    ("p90", "response_tokens_p90", "{:.0f}"),
    ("max", "response_tokens_max", "{:.0f}"),
    ("truncated", "truncated_rate", "{:.1%}"),
)


def markdown(report: dict[str, Any]) -> str:
    """The whole ``eval.md`` text for ``report`` (see `spiral.evaluate.runner.run`)."""
    metrics = report["metrics"]
    lines = [f"# Evaluation of `{report['checkpoint']}`", ""]
    if report.get("model_path") and report["model_path"] != report["checkpoint"]:
        lines += [f"Model: `{report['model_path']}` (step {report.get('step', 0)})", ""]
    if report.get("pairs"):
        lines += ["## Games", "", *games_table(metrics, report["pairs"]), ""]
    if report.get("exact_keys"):
        lines += ["## Exact metrics", "", *exact_table(metrics, report["exact_keys"]), ""]
    if report.get("math_benchmarks"):
        lines += ["## Math", "", *math_table(metrics, report["math_benchmarks"]), ""]
    if report.get("tasks"):
        lines += ["## Tasks", "", *tasks_table(metrics, report["tasks"]), ""]
    if report.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in report["notes"]], ""]
    return "\n".join(lines)


def games_table(metrics: dict[str, float], pairs: list[list[str]]) -> list[str]:
    head = ["game", "opponent", "matches", *OUTCOMES]
    rows = []
    for game_id, opponent in pairs:
        prefix = f"eval/{game_id}/{opponent}"
        cells = [_rate(metrics, f"{prefix}/{outcome}_rate") for outcome in OUTCOMES]
        rows.append([f"`{game_id}`", f"`{opponent}`", f"{metrics[prefix + '/n']:.0f}", *cells])
    return _table(head, rows)


def exact_table(metrics: dict[str, float], keys: list[str]) -> list[str]:
    rows = []
    for key in keys:
        game_id, _, name = key.removeprefix("eval/").partition("/")
        value = metrics[key]
        shown = str(value) if isinstance(value, int) else f"{value:.4f}"
        rows.append([f"`{game_id}`", name, shown])
    return _table(["game", "metric", "value"], rows)


def math_table(metrics: dict[str, float], names: list[str]) -> list[str]:
    rows = []
    for name in names:
        prefix = f"eval/math/{name}/"
        rows.append([name, *[fmt.format(metrics[prefix + key]) for _, key, fmt in MATH_COLUMNS]])
    if "eval/math/overall/accuracy" in metrics:
        overall = f"**{metrics['eval/math/overall/accuracy']:.1%}**"
        mean = f"{metrics['eval/math/overall/response_tokens_mean']:.0f}"
        rows.append(["**average**", "", "", overall, mean, "", "", "", ""])
    return _table(["benchmark", *[label for label, _, _ in MATH_COLUMNS]], rows)


def tasks_table(metrics: dict[str, float], task_ids: list[str]) -> list[str]:
    """Accuracy (with its interval), format and cut rates and lengths per task; accuracy per
    category and difficulty below each task."""
    rows = []
    for task_id in task_ids:
        prefix = f"eval/tasks/{task_id}/"
        shares = [f"{metrics[prefix + key]:.1%}" for key in ("format_rate", "cut_rate")]
        rows.append([f"`{task_id}`", "all", _rate(metrics, prefix + "accuracy"), *shares,
                     f"{metrics[prefix + 'response_tokens_mean']:.0f}"])
        for key in sorted(k for k in metrics if k.startswith(prefix) and k.count("/") == 4):
            rows.append(["", key.split("/")[3], f"{metrics[key]:.1%}", "", "", ""])
    return _table(["task", "category", "accuracy", "formatted", "cut", "tokens mean"], rows)


def _rate(metrics: dict[str, float], key: str) -> str:
    low, high = metrics.get(key + "_ci_low"), metrics.get(key + "_ci_high")
    if low is None or high is None:
        return f"{metrics[key]:.1%}"
    return f"{metrics[key]:.1%} ({low:.1%}–{high:.1%})"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    escape = lambda cell: str(cell).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return lines
