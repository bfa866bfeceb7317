"""Config composition of every experiment, and clear errors for bad keys and values."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from spiral.config import ConfigError, RunConfig, from_mapping
from spiral.launch import to_run_config

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "exp").glob("*.yaml"))


def composed(*overrides):
    with initialize_config_module("spiral.configs", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_the_required_experiments_exist():
    assert {"kuhn", "tictactoe", "negotiation", "multigame"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_composes_into_a_valid_run_config(exp):
    cfg = to_run_config(composed(f"+exp={exp}", "out_dir=/tmp/x"))
    assert isinstance(cfg, RunConfig)
    assert cfg.env.games and cfg.steps > 0
    import envs

    for game_id in cfg.env.games:
        envs.spec(game_id)


def test_experiments_select_their_games():
    assert to_run_config(composed("+exp=kuhn")).env.games == ("KuhnPoker-v1",)
    assert to_run_config(composed("+exp=tictactoe")).env.games == ("TicTacToe-v1",)
    multi = to_run_config(composed("+exp=multigame")).env.games
    assert set(multi) == {"KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1"}


def test_common_overrides():
    cfg = to_run_config(composed("+exp=kuhn", "steps=7", "seed=3", "out_dir=/tmp/run",
                                 "algo.rae=false", "learner.lr=0.5"))
    assert (cfg.steps, cfg.seed, cfg.out_dir, cfg.algo.rae, cfg.learner.lr) == (
        7, 3, "/tmp/run", False, 0.5)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="learner.lrr"):
        from_mapping(RunConfig, {"learner": {"lrr": 1.0}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="env.games_per_step"):
        from_mapping(RunConfig, {"env": {"games_per_step": "many"}})
    with pytest.raises(ConfigError, match="algo.rae"):
        from_mapping(RunConfig, {"algo": {"rae": "yes"}})


def test_bad_choice_lists_the_choices():
    with pytest.raises(ConfigError, match="hf, vllm"):
        from_mapping(RunConfig, {"actor": {"backend": "tgi"}})


def test_launch_exits_with_the_key_named(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "spiral.launch", "+exp=kuhn", f"out_dir={tmp_path}",
         "+learner.lrr=1"], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "lrr" in result.stderr
