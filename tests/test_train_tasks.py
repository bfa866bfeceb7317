"""Games and tasks in one run: self-play matches and GRPO task answers in one update, both
logged and evaluated; a tasks-only run; the config refuses a run that trains nothing."""

import dataclasses

import pytest

from spiral.config import EnvConfig, EvalConfig, RunConfig, TasksConfig
from spiral.errors import ConfigError
from spiral.launch import check_run
from spiral.training.train import train
from tests.test_train import metrics, steps_logged

TASKS = TasksConfig(ids=("GameTheory-v1",), problems_per_step=2, group_size=2)


def mixed(out_dir, **overrides):
    cfg = RunConfig(
        steps=2, out_dir=str(out_dir), checkpoint_every=2, save_games_every=0, progress=False,
        env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=4), tasks=TASKS,
        eval=EvalConfig(every=2, games=2, opponents=("random",), exact=False, task_problems=3),
    )
    return dataclasses.replace(cfg, **overrides)


def test_games_and_tasks_train_in_one_update_and_are_both_logged(tmp_path):
    out = train(mixed(tmp_path))
    assert steps_logged(out) == [0, 1, 2]
    step = metrics(out)[1]
    assert step["rollout/games"] == 4
    assert step["rollout/tasks/GameTheory-v1/problems"] == 2
    assert step["rollout/tasks/GameTheory-v1/samples"] == 2
    assert "rollout/KuhnPoker-v1/return_player0" in step
    final = metrics(out)[2]
    assert final["eval/tasks/GameTheory-v1/problems"] == 3
    assert 0.0 <= final["eval/tasks/GameTheory-v1/accuracy"] <= 1.0
    assert "eval/KuhnPoker-v1/random/win_rate" in final


def test_a_tasks_only_run_plays_no_game_and_evaluates_only_its_tasks(tmp_path):
    cfg = mixed(tmp_path, steps=1, env=EnvConfig(games_per_step=0))
    out = train(cfg)
    final = metrics(out)[1]
    assert final["rollout/games"] == 0
    assert "eval/tasks/GameTheory-v1/accuracy" in final
    assert not any(key.startswith("eval/KuhnPoker-v1") for key in final)


def test_a_run_that_trains_nothing_or_an_unknown_task_is_refused():
    with pytest.raises(ConfigError, match="env.games_per_step=0 trains no game"):
        check_run(RunConfig(env=EnvConfig(games_per_step=0)))
    with pytest.raises(ConfigError, match="tasks.ids: unknown task 'Chess-v9'"):
        check_run(RunConfig(tasks=TasksConfig(ids=("Chess-v9",))))


def test_spiral_evaluate_reports_tasks_greedily(tmp_path):
    from spiral.evaluate import runner

    cfg = runner.to_config({"checkpoint": "embedded", "games": [], "tasks": "GameTheory-v1",
                            "task_problems": 3, "temperature": 0, "exact": False,
                            "out_dir": str(tmp_path)})
    report = runner.run(cfg, log=lambda line: None)
    assert report["tasks"] == ["GameTheory-v1"]
    assert report["metrics"]["eval/tasks/GameTheory-v1/problems"] == 3
    assert "## Tasks" in (tmp_path / "eval.md").read_text()
    with pytest.raises(ConfigError, match="tasks: unknown task 'Nope-v1'"):
        runner.to_config({"checkpoint": "embedded", "tasks": ["Nope-v1"]})
