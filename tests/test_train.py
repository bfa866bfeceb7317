"""Training end to end on the embedded model: run directory, resume, kill -9."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spiral.config import AlgoConfig, EnvConfig, EvalConfig, RunConfig
from spiral.models import checkpoint
from spiral.training.train import train


def small(out_dir, **overrides):
    cfg = RunConfig(
        steps=3, out_dir=str(out_dir), checkpoint_every=2, save_games_every=1, progress=False,
        env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=6),
        eval=EvalConfig(every=2, games=4, opponents=("random",)),
    )
    return dataclasses.replace(cfg, **overrides)


def steps_logged(out_dir):
    return [json.loads(line)["step"] for line in (out_dir / "metrics.jsonl").read_text().split("\n")
            if line]


def metrics(out_dir):
    return {row["step"]: row for row in map(json.loads, (out_dir / "metrics.jsonl").open())}


def test_short_run_writes_the_fixed_run_directory(tmp_path):
    train(small(tmp_path))
    assert steps_logged(tmp_path) == [0, 1, 2, 3]
    rows = metrics(tmp_path)
    assert 0.0 <= rows[0]["eval/KuhnPoker-v1/exploitability"] <= 1.0
    assert 0.0 <= rows[2]["eval/KuhnPoker-v1/random/win_rate"] <= 1.0
    for key in ("train/loss", "rollout/games_per_s", "time/elapsed_s", "rollout/invalid_rate"):
        assert key in rows[1]
    assert rows[3]["time/elapsed_s"] >= rows[1]["time/elapsed_s"]
    last = tmp_path / "checkpoints" / "step_3"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "trainer_state.json",
                 "optimizer.safetensors"):
        assert (last / name).exists(), name
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_2", "step_3"]
    games = sorted((tmp_path / "games").glob("*.jsonl"))
    assert [g.name for g in games] == ["step_000001.jsonl", "step_000002.jsonl",
                                       "step_000003.jsonl"]
    record = json.loads(games[0].read_text().splitlines()[0])
    assert record["game_id"] == "KuhnPoker-v1" and record["turns"][0]["observation"]
    assert "steps: 3" in (tmp_path / "config.yaml").read_text()
    from spiral.plot import plot_run

    written = {p.name for p in plot_run(tmp_path)}
    assert {"exploitability.png", "win_rate.png", "loss.png"} <= written


def test_resume_continues_without_lost_or_repeated_steps(tmp_path):
    # with a KL term, so the resumed run must also restore the reference (the initial model),
    # not take the resumed policy as its anchor
    algo = AlgoConfig(kl_beta=0.5)
    reference = tmp_path / "reference"
    train(small(reference, steps=4, algo=algo))
    interrupted = tmp_path / "interrupted"
    train(small(interrupted, steps=3, algo=algo))
    assert (interrupted / "checkpoints" / "step_2" / "reference.safetensors").exists()
    # the run "dies" after logging step 3 but before its checkpoint is complete
    os.rename(interrupted / "checkpoints" / "step_3", interrupted / "checkpoints" / ".tmp_step_3")
    train(small(interrupted, steps=4, algo=algo))
    assert steps_logged(interrupted) == [0, 1, 2, 3, 4]
    ref, got = metrics(reference), metrics(interrupted)
    for step in (3, 4):  # replayed exactly as the uninterrupted run did
        assert got[step]["train/loss"] == pytest.approx(ref[step]["train/loss"], abs=1e-6)
        assert got[step]["train/ref_kl"] == pytest.approx(ref[step]["train/ref_kl"], abs=1e-6)
        assert got[step]["rollout/KuhnPoker-v1/return_player0"] == pytest.approx(
            ref[step]["rollout/KuhnPoker-v1/return_player0"])


def test_finished_run_relaunched_does_nothing_more(tmp_path):
    train(small(tmp_path, steps=2))
    train(small(tmp_path, steps=2))
    assert steps_logged(tmp_path) == [0, 1, 2]


def test_fixed_opponent_training_runs(tmp_path):
    cfg = small(tmp_path, steps=1, env=EnvConfig(games=("TicTacToe-v1",), games_per_step=4,
                                                 opponent="optimal"))
    train(cfg)
    row = metrics(tmp_path)[1]
    assert row["rollout/TicTacToe-v1/win_rate"] == 0.0  # minimax never loses


def test_training_against_a_frozen_checkpoint(tmp_path):
    from spiral.models.tiny import embedded_model_path

    opponent = f"checkpoint:{embedded_model_path()}"
    cfg = small(tmp_path, steps=1, env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=4,
                                                 opponent=opponent))
    train(cfg)
    row = metrics(tmp_path)[1]
    assert row["rollout/games"] == 4 and row["train/samples"] > 0


def test_kill_9_mid_run_then_resume(tmp_path):
    command = [sys.executable, "-m", "spiral.launch", "+exp=kuhn", f"out_dir={tmp_path}",
               "steps=8", "checkpoint_every=1", "env.games_per_step=4", "eval.every=0",
               "progress=false"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while checkpoint.latest(tmp_path) is None or checkpoint.latest(tmp_path).name == "step_1":
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert steps_logged(tmp_path) == list(range(1, 9))
    assert checkpoint.latest(tmp_path).name == "step_8"


def test_reinforce_ablation_runs_and_tracks_baselines(tmp_path):
    train(small(tmp_path, steps=2, algo=AlgoConfig(rae=False)))
    rows = metrics(tmp_path)
    assert "train/baseline/KuhnPoker-v1/0" in rows[2] and rows[2]["train/samples"] > 0


def test_progress_bar_shows_the_mean_win_rate_over_games():
    from spiral.evaluate.exact import headlines
    from spiral.training.rundir import Progress

    bar = Progress(10, 0, enabled=False, exact=headlines(["KuhnPoker-v1", "TicTacToe-v1"]))
    bar.update({"rollout/games_per_s": 12.5, "eval/KuhnPoker-v1/random/win_rate": 0.5,
                "eval/TicTacToe-v1/random/win_rate": 0.75,
                "eval/KuhnPoker-v1/optimal/win_rate": 0.1,
                "eval/KuhnPoker-v1/exploitability": 0.125,
                "eval/TicTacToe-v1/vs_perfect/loss_rate": 0.75})
    assert bar.shown == {"games/s": "12.5", "expl": "0.125", "loss/perfect": "0.75",
                         "win/rand": "0.62"}
    bar.update({"train/loss": 0.25})  # eval figures stay on the bar between evaluations
    assert bar.shown["loss"] == "0.25" and bar.shown["win/rand"] == "0.62"
    bar.close()


def test_learning_rate_schedule_reaches_the_optimizer_across_a_resume(tmp_path):
    from spiral.config import LearnerConfig
    from spiral.learning.learner import PPOLearner

    applied = []
    original = PPOLearner.update

    def update(self, samples):
        applied.append(self.optimizer.param_groups[0]["lr"])
        return original(self, samples)

    learner = LearnerConfig(lr=1e-3, lr_final=1e-4, lr_decay_steps=2)
    cfg = small(tmp_path, eval=EvalConfig(every=0), learner=learner)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PPOLearner, "update", update)
        train(dataclasses.replace(cfg, steps=2))
        train(cfg)  # resumes from step 2's checkpoint, whose optimizer holds lr 5.5e-4
    want = [learner.lr_at(step) for step in (1, 2, 3)]
    assert want == pytest.approx([1e-3, 5.5e-4, 1e-4])
    assert applied == pytest.approx(want)
    assert [metrics(tmp_path)[s]["train/lr"] for s in (1, 2, 3)] == pytest.approx(want)


def test_online_evaluation_reports_each_trained_games_exact_metrics(tmp_path, micro):
    """Online evaluation calls the dispatch `spiral.evaluate` uses: TicTacToe's exact metrics
    are logged during training, equal to those of the saved checkpoint evaluated offline."""
    import torch

    from spiral.config import ModelConfig
    from spiral.evaluate.exact import exact_metrics
    from spiral.models.loading import load_model, load_tokenizer
    from spiral.models.prompting import Prompter

    run = tmp_path / "run"
    train(small(run, steps=1, model=ModelConfig(name_or_path=str(micro)),
                env=EnvConfig(games=("KuhnPoker-v1", "TicTacToe-v1"), games_per_step=4),
                eval=EvalConfig(every=1, games=2, opponents=("random",))))
    rows = metrics(run)
    for step in (0, 1):
        assert rows[step]["eval/TicTacToe-v1/positions"] == 4520
        assert 0.0 <= rows[step]["eval/TicTacToe-v1/vs_perfect/loss_rate"] <= 1.0
        assert 0.0 <= rows[step]["eval/KuhnPoker-v1/exploitability"] <= 1.0
    path = str(run / "checkpoints" / "step_1")
    tokenizer = load_tokenizer(path)
    model = load_model(path, ModelConfig(), torch.device("cpu"))
    offline, _ = exact_metrics(["TicTacToe-v1"], mode="logprob", model=model,
                               tokenizer=tokenizer, actor=None, prompter=Prompter(tokenizer),
                               samples=1, seed=0)
    for key, value in offline.items():
        assert rows[1][key] == pytest.approx(value, abs=1e-6), key
