"""Bad input is refused before any work: one line naming the key, exit status 2, nothing on disk.

The many range and relation rules are checked in-process through the same function the command
runs before Hydra's main (`spiral.launch._validate`, `spiral.evaluate.runner.to_config`); a few
subprocesses check the whole path: exit status, one line on stderr, the time it takes, and that
neither out_dir nor anything else appears.
"""

import dataclasses
import os
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from spiral.config import CHOICES, RunConfig
from spiral.errors import (
    ConfigError,
    ModelError,
    UserError,
    check_model_path,
    hydra_message,
    looks_like_hub_id,
    run_command,
)
from spiral.evaluate import runner
from spiral.evaluate.runner import EvaluateConfig
from spiral.launch import _validate
from spiral.play import PlayConfig

EMBEDDED = Path(__file__).parents[1] / "spiral" / "models" / "embedded"  # a model folder
LIMIT_S = 10.0


def refusal(*overrides: str) -> str:
    """The one-line error `spiral.launch` gives ``+exp=kuhn`` with ``overrides``."""
    with pytest.raises(ConfigError) as caught:
        _validate(["+exp=kuhn", "out_dir=/tmp/never-made", *overrides])
    message = str(caught.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- ranges

RANGES = [  # (override, what the error must say)
    ("steps=-5", "steps=-5: must be >= 1"),
    ("seed=-1", "seed=-1: must be >= 0"),
    ("checkpoint_every=0", "checkpoint_every=0: must be >= 1"),
    ("keep_checkpoints=0", "keep_checkpoints=0: must be >= 1"),
    ("save_games_every=-1", "save_games_every=-1: must be >= 0"),
    ("env.games_per_step=-1", "env.games_per_step=-1: must be >= 0"),
    ("env.max_turns=0", "env.max_turns=0: must be >= 1 or null"),
    ("env.games=[]", "env.games=[]: must be non-empty"),
    ("actor.max_new_tokens=0", "actor.max_new_tokens=0: must be >= 1"),
    ("actor.batch_size=0", "actor.batch_size=0: must be >= 1"),
    ("actor.top_p=2", "actor.top_p=2.0: must be in (0, 1]"),
    ("actor.top_p=0", "actor.top_p=0.0: must be in (0, 1]"),
    ("actor.temperature=0", "actor.temperature=0.0: must be > 0 (training samples the policy"),
    ("actor.temperature=-1", "actor.temperature=-1.0: must be > 0"),
    ("actor.vllm.gpu_memory_utilization=1.5", "gpu_memory_utilization=1.5: must be in (0, 1]"),
    ("learner.lr=-1", "learner.lr=-1.0: must be > 0"),
    ("learner.lr=0", "learner.lr=0.0: must be > 0"),
    ("learner.lr=nan", "learner.lr=nan: must be > 0"),
    ("learner.weight_decay=-0.1", "learner.weight_decay=-0.1: must be >= 0"),
    ("learner.betas=[0.9,1.0]", "learner.betas=[0.9, 1.0]: each item must be in [0, 1)"),
    ("learner.grad_clip=0", "learner.grad_clip=0.0: must be > 0"),
    ("learner.epochs=0", "learner.epochs=0: must be >= 1"),
    ("learner.minibatches=0", "learner.minibatches=0: must be >= 1"),
    ("learner.micro_batch_tokens=0", "learner.micro_batch_tokens=0: must be >= 1"),
    ("learner.lr_final=-1e-4", "learner.lr_final=-0.0001: must be >= 0 or null"),
    ("learner.lr_decay_steps=-1", "learner.lr_decay_steps=-1: must be >= 0"),
    ("algo.baseline_decay=1", "algo.baseline_decay=1.0: must be in (0, 1)"),
    ("algo.baseline_decay=0", "algo.baseline_decay=0.0: must be in (0, 1)"),
    ("algo.gamma=0", "algo.gamma=0.0: must be in (0, 1]"),
    ("algo.gamma=1.5", "algo.gamma=1.5: must be in (0, 1]"),
    ("algo.clip_eps=-1", "algo.clip_eps=-1.0: must be > 0"),
    ("algo.kl_beta=-0.1", "algo.kl_beta=-0.1: must be >= 0"),
    ("algo.ref_update_every=-1", "algo.ref_update_every=-1: must be >= 0"),
    ("algo.kl_beta_final=-1", "algo.kl_beta_final=-1.0: must be >= 0 or null"),
    ("algo.kl_decay_steps=-1", "algo.kl_decay_steps=-1: must be >= 0"),
    ("algo.norm_tokens=0", "algo.norm_tokens=0: must be >= 1 or null"),
    ("eval.every=-1", "eval.every=-1: must be >= 0"),
    ("eval.games=0", "eval.games=0: must be >= 1"),
    ("eval.exact_samples=0", "eval.exact_samples=0: must be >= 1"),
    ("eval.temperature=-0.5", "eval.temperature=-0.5: must be >= 0 (0 is greedy)"),
    ("eval.math_limit=0", "eval.math_limit=0: must be >= 1 or null"),
    ("learner.lr=fast", "learner.lr: expected float, got 'fast'"),
]


@pytest.mark.parametrize("override, says", RANGES, ids=[case[0] for case in RANGES])
def test_out_of_range_values_are_refused_naming_key_value_and_rule(override, says):
    assert says in refusal(override)


def test_relations_between_keys():
    assert "learner.lr_final=0.0001: needs learner.lr_decay_steps >= 1" in refusal(
        "learner.lr_final=1e-4", "learner.lr_decay_steps=0")
    assert "algo.kl_beta_final=0.1: needs algo.kl_decay_steps >= 1" in refusal(
        "algo.kl_decay_steps=0")
    assert "env.invalid_penalty=1.0: must be <= env.invalid_other" in refusal(
        "env.invalid_penalty=1.0")


def numeric_fields(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every int / float field (optional ones and lists of numbers too), by dotted key."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out |= numeric_fields(hint, f"{prefix}{f.name}.")
        elif {int, float} & set(typing.get_args(hint) or (hint,)):
            out[f"{prefix}{f.name}"] = f
    return out


@pytest.mark.parametrize("cls", [RunConfig, EvaluateConfig, PlayConfig])
def test_every_numeric_key_has_a_rule(cls):
    checked_elsewhere = {"seat"}  # PlayConfig: "0 or 1", checked by parse_config
    fields = numeric_fields(cls)
    missing = [key for key, f in fields.items() if "allowed" not in f.metadata
               and key not in CHOICES and key not in checked_elsewhere]
    assert fields and not missing


# --------------------------------------------------------------------------- what a config names


def test_games_opponents_models_and_benchmarks_must_exist(tmp_path):
    assert "env.games: unknown game id 'Chess-v1'; registered ids: KuhnPoker-v1" in refusal(
        "env.games=[Chess-v1]")
    assert "env.opponent='optimall' is not an opponent of KuhnPoker-v1; allowed: self, random, " \
        "optimal, checkpoint:PATH, openai:MODEL" in refusal("env.opponent=optimall")
    assert "env.opponent='optimal' is not an opponent of openspiel/leduc_poker" in refusal(
        "env.opponent=optimal", "env.games=[KuhnPoker-v1,openspiel/leduc_poker]")
    assert "env.opponent='checkpoint:/nonexistent': no such file or folder" in refusal(
        "env.opponent=checkpoint:/nonexistent")
    assert "eval.opponents='self' is not a registered opponent" in refusal(
        "eval.opponents=[random,self]")
    assert "model.name_or_path='/nonexistent': no such file or folder" in refusal(
        "model.name_or_path=/nonexistent")
    assert f"model.name_or_path='{tmp_path}': {tmp_path} is not a Hugging Face model folder " \
        "(no config.json)" in refusal(f"model.name_or_path={tmp_path}")
    assert "eval.math: unknown math benchmark 'mathx'" in refusal("eval.math=[mathx]")
    assert "eval.math_dir='/nonexistent': no such folder" in refusal("eval.math_dir=/nonexistent")
    assert "env.game_kwargs.KuhnPoker-v1={'rounds': 0}: rounds must be a positive integer" in \
        refusal("+env.game_kwargs.KuhnPoker-v1.rounds=0")
    assert "Could not find 'exp/nope'; Available options in 'exp': deduction_grpo, " \
        "games_and_tasks, gametheory_grpo, kuhn, " in refusal("+exp=nope")
    assert refusal("steps=[1").startswith("'steps=[1': ")


def test_valid_configs_pass(tmp_path):
    for exp in ("kuhn", "tictactoe", "negotiation", "multigame"):
        _validate([f"+exp={exp}", f"out_dir={tmp_path / exp}"])
    _validate(["+exp=kuhn", "model.name_or_path=org/model", "actor.temperature=0.1"])
    _validate(["+exp=kuhn", f"model.name_or_path={EMBEDDED}", "+env.game_kwargs.KuhnPoker-v1"
               ".rounds=3", "env.games=[KuhnPoker-v1,openspiel/leduc_poker]",
               f"env.opponent=checkpoint:{EMBEDDED}", "eval.opponents=[random,optimal]"])
    assert not any(tmp_path.iterdir())


def test_model_paths(tmp_path, monkeypatch):
    for good in ("embedded", "Qwen/Qwen3-4B-Base", "gpt2", str(EMBEDDED)):
        check_model_path(good, "model")
    (tmp_path / "weights.bin").write_text("")
    for bad, says in [("/nonexistent", "no such file or folder"),
                      (str(tmp_path / "weights.bin"), "is a file, not a model folder"),
                      (str(tmp_path), "no config.json"), ("a/b/c", "no such file"),
                      ("../up/model", "no such file"), ("~nobody/model", "no such file")]:
        with pytest.raises(ConfigError, match=says):
            check_model_path(bad, "model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no \\*.safetensors weights"):
        check_model_path(str(tmp_path), "model")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert looks_like_hub_id("org/missing") and not looks_like_hub_id("runs/missing")  # local
    with pytest.raises(ConfigError, match="'runs/missing': no such file or folder"):
        check_model_path("runs/missing", "model")


def test_evaluate_config_checks_its_checkpoint_and_ranges(tmp_path):
    def says(message: str, **data):
        with pytest.raises(ConfigError, match=message):
            runner.to_config({"checkpoint": "embedded", **data})

    says("checkpoint='/nonexistent/path': no such file or folder", checkpoint="/nonexistent/path")
    says("is not a Hugging Face model folder", checkpoint=str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    says("checkpoints holds no complete checkpoint", checkpoint=str(tmp_path))
    says("matches=0: must be >= 1", matches=0)
    says("samples=0: must be >= 1", samples=0)
    says(r"temperature=-1.0: must be >= 0 \(0 is greedy\)", temperature=-1)
    says("instruction='verbose' is not one of brief, reason", instruction="verbose")
    says(r"math_top_p=1.5: must be in \(0, 1\]", math_top_p=1.5)
    says("grade_timeout_s=0.0: must be > 0", grade_timeout_s=0)
    says("opponents='optimall' is not a registered opponent", opponents=["optimall"])
    says("math_dir='/nonexistent': no such folder", math_dir="/nonexistent")
    cfg = runner.to_config({"checkpoint": str(EMBEDDED), "games": ["openspiel/leduc_poker"],
                            "math_temperature": 0, "temperature": 0})  # greedy is allowed here
    assert cfg.opponents == ("random", "optimal")  # leduc has no optimal: skipped with a note


# --------------------------------------------------------------------------- reporting


def test_user_errors_are_one_line_and_status_2_unless_debugging(monkeypatch, capsys):
    def fail():
        raise ConfigError("learner.lr=-1.0: must be\n > 0")

    monkeypatch.delenv("SPIRAL_DEBUG", raising=False)
    assert run_command(fail) == 2
    assert capsys.readouterr().err == "config error: learner.lr=-1.0: must be > 0\n"
    monkeypatch.setenv("SPIRAL_DEBUG", "1")
    with pytest.raises(ConfigError):
        run_command(fail)
    monkeypatch.setenv("SPIRAL_DEBUG", "0")
    with pytest.raises(ZeroDivisionError):  # a bug is never hidden
        run_command(lambda: 1 / 0)


def test_hydra_messages_become_one_line():
    class Err(Exception):
        pass

    text = "In 'config': Could not find 'exp/x'\n\nAvailable options in 'exp':\n\tkuhn\n\t" \
        "tictactoe\nConfig search path:\n\tprovider=hydra, path=pkg://hydra.conf"
    assert hydra_message(Err(text)) == ("In 'config': Could not find 'exp/x'; Available options "
                                        "in 'exp': kuhn, tictactoe")


def test_loading_a_folder_that_is_not_a_model_or_a_missing_path(tmp_path):
    from spiral.models.loading import load_tokenizer

    with pytest.raises(ModelError, match="no config.json"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(ModelError, match="cannot load '/nonexistent/model'") as caught:
        load_tokenizer("/nonexistent/model")
    assert isinstance(caught.value, UserError)


def test_play_and_plot_report_bad_paths_in_one_line(tmp_path, capsys):
    from spiral.play import main as play_main
    from spiral.plot import main as plot_main

    lines = []
    assert play_main([f"checkpoint={tmp_path}"], print_fn=lines.append) == 2
    assert lines == [f"config error: checkpoint='{tmp_path}': {tmp_path} is not a Hugging Face "
                     "model folder (no config.json)"]
    assert plot_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: no metrics in {tmp_path / 'metrics.jsonl'}\n"


# --------------------------------------------------------------------------- the commands


def command(tmp_path: Path, module: str, *args: str, env: dict | None = None):
    """Run ``python -m module args`` in an empty folder; (result, seconds)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                            timeout=60, cwd=cwd, env={**os.environ, **(env or {})})
    return result, time.perf_counter() - started


def assert_refused(result, seconds: float, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    assert seconds < LIMIT_S, f"took {seconds:.1f}s"


LAUNCH = [  # the bad configs of the reliability issue: (override, key named)
    ("env.games_per_step=0", "env.games_per_step=0"), ("steps=-5", "steps=-5"),
    ("actor.max_new_tokens=0", "actor.max_new_tokens=0"),
    ("checkpoint_every=0", "checkpoint_every=0"), ("learner.lr=-1", "learner.lr=-1.0"),
    ("env.games=[Chess-v1]", "env.games"), ("env.opponent=optimall", "env.opponent"),
    ("model.name_or_path=/nonexistent", "model.name_or_path"), ("actor.top_p=2", "actor.top_p"),
    ("learner.epochs=0", "learner.epochs"), ("algo.clip_eps=-1", "algo.clip_eps"),
]


def test_launch_refuses_bad_configs_fast_and_creates_nothing(tmp_path):
    out = tmp_path / "run"
    slowest = 0.0
    for override, key in LAUNCH:
        result, seconds = command(tmp_path, "spiral.launch", "+exp=kuhn", f"out_dir={out}",
                                  override)
        assert_refused(result, seconds, "config error: ", key)
        slowest = max(slowest, seconds)
    assert not out.exists() and not any((tmp_path / "cwd").iterdir())
    print(f"slowest refusal: {slowest:.1f}s")


def test_debug_flag_shows_the_traceback(tmp_path):
    result, _ = command(tmp_path, "spiral.launch", "+exp=kuhn", f"out_dir={tmp_path / 'run'}",
                        "steps=0", env={"SPIRAL_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "steps=0" in result.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_a_folder_that_is_not_a_model_and_a_missing_path(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    out = tmp_path / "eval"
    for checkpoint, says in [(folder, "no config.json"),
                             (tmp_path / "missing", "no such file or folder")]:
        result, seconds = command(tmp_path, "spiral.evaluate", f"checkpoint={checkpoint}",
                                  f"out_dir={out}")
        assert_refused(result, seconds, f"config error: checkpoint='{checkpoint}'", says)
    assert not out.exists() and not any((tmp_path / "cwd").iterdir())


def test_plot_of_a_missing_run_is_one_line(tmp_path):
    result, seconds = command(tmp_path, "spiral.plot", str(tmp_path / "no-run"))
    assert_refused(result, seconds, f"error: {tmp_path / 'no-run'}: no such run directory")


@pytest.mark.parametrize("exp, override, says", [
    ("math_grpo", "+tasks.kwargs.Math-v1.categories=[calculus]", "tasks.kwargs.Math-v1="),
    ("gametheory_grpo", "+tasks.kwargs.GameTheory-v1.categories=[chess]",
     "tasks.kwargs.GameTheory-v1="),
    ("kuhn", "+tasks.kwargs.Math-v1.categories=[fractions]", "not in tasks.ids"),
])
def test_a_bad_task_option_is_refused_before_any_work(tmp_path, exp, override, says):
    out = tmp_path / "run"
    result, seconds = command(tmp_path, "spiral.launch", f"+exp={exp}", f"out_dir={out}",
                              override)
    assert_refused(result, seconds, "config error: ", says)
    assert not out.exists()
