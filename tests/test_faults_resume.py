"""Relaunching a run directory: one run at a time, explicit config changes, damaged metrics.

Each test copies one finished two-step Kuhn run (trained once per module, evaluation off) and
relaunches it the way a user would: ``train(cfg)`` in process, or ``python -m spiral.launch``
where the exit status and the one-line message are what is checked.
"""

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys

import pytest

from spiral.config import EnvConfig, EvalConfig, RunConfig
from spiral.training import guard
from spiral.training.rundir import RunDir
from spiral.training.train import train


def small(out_dir, **overrides):
    cfg = RunConfig(
        steps=2, out_dir=str(out_dir), checkpoint_every=1, save_games_every=0, progress=False,
        env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=4),
        eval=EvalConfig(every=0),
    )
    return dataclasses.replace(cfg, **overrides)


def steps_logged(out_dir):
    return [row["step"] for row in RunDir(out_dir).read_metrics()]


def launch(out_dir, *overrides):
    command = [sys.executable, "-m", "spiral.launch", "+exp=kuhn", f"out_dir={out_dir}",
               "eval.every=0", "progress=false", *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def refusal(stderr: str) -> str:
    """The one line a refused launch prints (and no traceback)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def snapshot(out_dir):
    """Every file under out_dir but the lock and Hydra's log, with its bytes."""
    return {p.relative_to(out_dir): p.read_bytes() for p in sorted(out_dir.rglob("*"))
            if p.is_file() and p.name not in (".lock", "launch.log")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    path = tmp_path_factory.mktemp("finished") / "run"
    train(small(path))
    assert steps_logged(path) == [1, 2]
    return path


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run, moved: its saved out_dir differs (a key that may change)."""
    return shutil.copytree(finished, tmp_path / "run")


def test_a_second_launch_is_refused_naming_the_holder(tmp_path):
    lock = guard.RunLock(tmp_path)
    assert lock.acquire() is None
    try:
        done = launch(tmp_path, "steps=1")
        assert done.returncode == 2
        line = refusal(done.stderr)
        assert f"PID {os.getpid()}" in line and str(tmp_path) in line
        with pytest.raises(guard.RunRefused, match=f"PID {os.getpid()}"):
            train(small(tmp_path))
    finally:
        lock.release()
    assert {p.name for p in tmp_path.iterdir()} <= {".lock", "launch.log"}  # nothing written


def test_a_killed_holder_does_not_block_the_resume(run):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from spiral.training.guard import RunLock; "
         "assert RunLock(sys.argv[1]).acquire() is None; print('held', flush=True); "
         "time.sleep(600)", str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(guard.RunRefused, match=f"PID {holder.pid}"):
            train(small(run, steps=3))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    train(small(run, steps=3))  # the dead holder's lock file is still there, unlocked
    assert steps_logged(run) == [1, 2, 3]


def test_another_seed_is_refused_with_the_diff_until_forced(run, caplog):
    before = snapshot(run)
    with pytest.raises(guard.RunRefused) as refused:
        train(small(run, steps=3, seed=1))
    line = str(refused.value)
    assert "seed: 0 -> 1" in line and "resume_force=true" in line and "out_dir: " not in line
    assert snapshot(run) == before  # metrics.jsonl, config.yaml, checkpoints: untouched

    with caplog.at_level(logging.WARNING, logger="spiral.training.guard"):
        train(small(run, steps=3, seed=1, resume_force=True))
    assert "seed: 0 -> 1" in caplog.text
    assert steps_logged(run) == [1, 2, 3]
    assert "seed: 1\n" in (run / "config.yaml").read_text()


def test_a_run_whose_checkpoints_all_fail_is_not_restarted_over_its_metrics(run):
    """Starting over would truncate metrics.jsonl: with checkpoints present and none good, the
    relaunch stops and says what to do."""
    for folder in (run / "checkpoints").iterdir():
        (folder / "model.safetensors").write_bytes(b"garbage")
    before = snapshot(run)
    with pytest.raises(guard.RunRefused, match="no checkpoint passes its checks"):
        train(small(run, steps=3))
    assert snapshot(run) == before and steps_logged(run) == [1, 2]


def test_another_game_list_is_refused_from_the_command_line(run):
    before = snapshot(run)
    done = launch(run, "steps=3", "env.games=[TicTacToe-v1]")
    assert done.returncode == 2
    assert "env.games: [KuhnPoker-v1] -> [TicTacToe-v1]" in refusal(done.stderr)
    assert snapshot(run) == before


def test_a_changed_step_count_is_allowed_and_logged(run, caplog):
    with caplog.at_level(logging.INFO, logger="spiral.training.guard"):
        train(small(run, steps=3))
    assert "steps: 2 -> 3" in caplog.text and "out_dir: " in caplog.text
    assert steps_logged(run) == [1, 2, 3]


def test_damaged_metrics_lines_are_dropped_on_resume(run, caplog):
    path = run / "metrics.jsonl"
    good = path.read_bytes().splitlines()
    garbage = [b"not json", b"[1, 2]", b'{"step": "2"}', b'{"loss": 0.5}', b'{"step": null}',
               b'{"step": 1.5}', b'{"step": true}', b"\xff\xfe{", b'{"step": 2, "train/lo']
    path.write_bytes(b"\n".join([good[0], *garbage[:4], good[1], *garbage[4:]]) + b"\n")
    assert steps_logged(run) == [1, 2]  # readers (plots) skip them too
    with caplog.at_level(logging.WARNING, logger="spiral.training.rundir"):
        train(small(run, steps=3))
    assert f"dropped {len(garbage)} line(s)" in caplog.text
    lines = path.read_bytes().splitlines()
    assert lines[:2] == good and steps_logged(run) == [1, 2, 3]


def test_every_config_key_is_either_fixed_or_free_on_resume():
    keys = guard.leaves(RunConfig())
    for key in keys:
        kinds = [key in guard.MUST_NOT_CHANGE, guard.may_change(key), key in guard.NOT_COMPARED]
        assert sum(kinds) == 1, f"{key}: classify it in spiral/training/guard.py"
    for name in guard.MUST_NOT_CHANGE + guard.MAY_CHANGE + guard.NOT_COMPARED:
        assert any(k == name or (name.endswith(".") and k.startswith(name)) for k in keys), name
