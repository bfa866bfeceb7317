"""TensorBoard and Weights & Biases (offline) beside metrics.jsonl: the same numbers at the same
steps, a resume that continues them, and a refusal when the package is missing."""

import dataclasses
import json
import subprocess
import sys

import pytest

from spiral.config import EnvConfig, EvalConfig, ModelConfig, RunConfig, TrackingConfig
from spiral.errors import ConfigError
from spiral.training import trackers
from spiral.training.rundir import RunDir
from spiral.training.train import train

pytest.importorskip("tensorboard", reason="needs the track extra: pip install -e '.[dev]'")
pytest.importorskip("wandb", reason="needs the track extra: pip install -e '.[dev]'")


def tracked(micro, out_dir, steps):
    return RunConfig(steps=steps, out_dir=str(out_dir), checkpoint_every=1, save_games_every=0,
                     progress=False, model=ModelConfig(name_or_path=str(micro)),
                     env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=4),
                     eval=EvalConfig(every=2, games=4, opponents=("random",)),
                     tracking=TrackingConfig(tensorboard=True, wandb=True))


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder)).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def run(micro, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("WANDB_SILENT", "true")
    out = tmp_path_factory.mktemp("tracked") / "run"
    train(tracked(micro, out, steps=1))
    with (out / "metrics.jsonl").open("a") as f:  # logged after step 1's checkpoint, then
        f.write(json.dumps({"step": 2, "train/loss": 99.0}) + "\n")  # killed: not kept
    train(tracked(micro, out, steps=2))
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_tensorboard_holds_every_metric_at_its_step(run):
    rows = RunDir(run).read_metrics()
    assert [r["step"] for r in rows] == [0, 1, 2]
    board = scalars(run / "tensorboard")
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                assert (row["step"], pytest.approx(value, rel=1e-6)) in board[key], key
    assert len(board["train/loss"]) == 2  # steps 1 and 2, each once, across the resume
    assert board["eval/KuhnPoker-v1/exploitability"][0][0] == 0


def test_the_wandb_run_continues_across_the_resume(run):
    run_id = (run / trackers.WANDB_ID).read_text()
    folders = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 2  # the first launch and the resume, one W&B run id
    for folder in folders:  # the offline record (wandb sync uploads it) holds keys and config
        record = (folder / f"run-{run_id}.wandb").read_bytes()
        assert b"train/loss" in record and b"KuhnPoker-v1" in record


def test_wandb_gets_the_logged_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = trackers.Trackers(TrackingConfig(wandb=True), tmp_path, 0, {"seed": 3})
    tracker.log(1, {"train/loss": 1.5, "rollout/games": 4, "note": "text", "bad": float("nan")})
    tracker.log(2, {"train/loss": 0.5})
    run = tracker.writers[0].run
    assert run.summary["train/loss"] == 0.5 and run.summary["rollout/games"] == 4
    assert not {"note", "bad"} & set(run.summary.keys())  # numbers only, finite ones
    assert run.config["seed"] == 3
    tracker.close()


def test_a_missing_tracker_package_is_refused_naming_the_key(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"tracking.wandb=true needs the wandb package"):
        trackers.check(TrackingConfig(wandb=True))
    trackers.check(TrackingConfig(tensorboard=True))


def test_tracking_keys_may_change_on_resume_and_modes_are_checked(tmp_path):
    from spiral.training import guard

    assert guard.may_change("tracking.wandb") and guard.may_change("tracking.tensorboard")
    done = subprocess.run([sys.executable, "-m", "spiral.launch", "+exp=kuhn",
                           f"out_dir={tmp_path / 'r'}", "tracking.wandb_mode=cloud"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "tracking.wandb_mode='cloud'" in done.stderr
    assert dataclasses.asdict(TrackingConfig())["wandb_mode"] == "offline"
