"""Config composition of every experiment, one source of defaults, and clear errors for bad keys.

The defaults are the dataclasses of `spiral.config` (registered as Hydra's ``spiral_defaults``);
the YAML files under configs/ may only set keys that exist and differ from them.
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from spiral.config import (
    ConfigError,
    DeepSpeedConfig,
    RunConfig,
    VLLMConfig,
    check_override_keys,
    defaults,
    from_mapping,
)
from spiral.errors import experiment_overrides
from spiral.launch import NOT_RUN_CONFIG, to_run_config

CONFIGS = Path(__file__).parents[1] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "exp").glob("*.yaml"))
GROUPS = ("model", "actor", "learner")
GROUP_FILES = sorted(p for group in GROUPS for p in (CONFIGS / group).glob("*.yaml"))


def composed(*overrides, config="config"):
    """Hydra's compose API as spiral.launch calls it (``+exp=NAME`` read as ``exp=NAME``)."""
    with initialize_config_module("spiral.configs", version_base="1.3"):
        return compose(config, overrides=experiment_overrides(overrides))


def run_config(*overrides) -> RunConfig:
    return to_run_config(composed(*overrides))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def flat(data: dict, reference: dict, prefix: str = "") -> dict:
    """Dotted keys of ``data``, descending only where ``reference`` has a non-empty mapping."""
    out = {}
    for key, value in data.items():
        ref = reference.get(key) if isinstance(reference, dict) else None
        if isinstance(value, dict) and isinstance(ref, dict) and ref:
            out |= flat(value, ref, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


DEFAULTS = defaults(RunConfig)
FLAT_DEFAULTS = flat(DEFAULTS, DEFAULTS)


def selected_groups(exp: str) -> dict[str, str]:
    """The group options an experiment selects (``override /actor: vllm`` -> {actor: vllm}),
    with those of an experiment it builds on (a plain name in its defaults list)."""
    out = {}
    for entry in load(CONFIGS / "exp" / f"{exp}.yaml").get("defaults", []):
        if isinstance(entry, str):
            out |= selected_groups(entry)
        else:
            out |= {key.removeprefix("override /"): option for key, option in entry.items()}
    return out


def parent_experiments(exp: str) -> list[str]:
    return [e for e in load(CONFIGS / "exp" / f"{exp}.yaml").get("defaults", [])
            if isinstance(e, str)]


def group_settings(group: str, option: str) -> dict:
    data = {k: v for k, v in load(CONFIGS / group / f"{option}.yaml").items() if k != "defaults"}
    return {f"{group}.{k}": v for k, v in flat(data, DEFAULTS[group]).items()}


def experiment_settings(exp: str) -> dict:
    """What an experiment sets: its file, the family file its model includes
    (``family/pretrained``) and its tuning for its model (``tuning/<exp>_<model>``)."""
    out = family_settings(exp) | experiment_file_settings(exp)
    tuning = CONFIGS / "tuning" / f"{exp}_{selected_groups(exp).get('model', 'embedded')}.yaml"
    return out | (flat(load(tuning), DEFAULTS) if tuning.is_file() else {})


def experiment_file_settings(exp: str) -> dict:
    out = {}
    for parent in parent_experiments(exp):
        out |= experiment_file_settings(parent)
    data = {k: v for k, v in load(CONFIGS / "exp" / f"{exp}.yaml").items()
            if k not in ("defaults", "exp_name")}
    return out | flat(data, DEFAULTS)


def family_settings(exp: str) -> dict:
    model = selected_groups(exp).get("model", "embedded")
    out = {}
    for entry in load(CONFIGS / "model" / f"{model}.yaml").get("defaults", []):
        for family in (v for k, v in entry.items() if k.startswith("/family")):
            out |= flat(load(CONFIGS / "family" / f"{family}.yaml"), DEFAULTS)
    return out


def leaves(cfg: RunConfig) -> dict:
    """Dotted keys of a validated config, as plain YAML data (tuples become lists)."""
    return flat(yaml.safe_load(yaml.safe_dump(dataclasses.asdict(cfg))), DEFAULTS)


# --------------------------------------------------------------------------- experiments


def test_the_required_experiments_exist():
    assert {"kuhn", "kuhn_paper", "tictactoe", "negotiation", "multigame"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_composes_into_a_valid_run_config(exp):
    cfg = run_config(f"+exp={exp}", "out_dir=/tmp/x")
    assert isinstance(cfg, RunConfig)
    assert cfg.env.games and cfg.steps > 0
    import envs

    for game_id in cfg.env.games:
        envs.spec(game_id)


def test_experiments_select_their_games():
    assert run_config("+exp=kuhn").env.games == ("KuhnPoker-v1",)
    assert run_config("+exp=tictactoe").env.games == ("TicTacToe-v1",)
    assert run_config("+exp=negotiation").env.games == ("SimpleNegotiation-v1",)
    multi = run_config("+exp=multigame").env.games
    assert set(multi) == {"KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1"}


def test_the_paper_recipe_selects_its_backends():
    cfg = run_config("+exp=kuhn_paper")
    assert (cfg.model.name_or_path, cfg.model.dtype) == ("Qwen/Qwen3-4B-Base", "bfloat16")
    assert (cfg.actor.backend, cfg.learner.backend) == ("vllm", "deepspeed")
    assert cfg.actor.vllm == VLLMConfig(gpu_memory_utilization=0.45, sleep_when_training=True)
    assert cfg.learner.deepspeed == DeepSpeedConfig(zero_stage=2)


# --------------------------------------------------------------------------- one source of defaults


def test_the_base_config_is_the_dataclass_defaults():
    assert run_config("out_dir=/x") == dataclasses.replace(RunConfig(), out_dir="/x")


def test_run_directory_interpolates_the_experiment_name():
    assert run_config("+exp=tictactoe").out_dir.startswith("runs/tictactoe/")
    assert run_config().out_dir.startswith("runs/default/")


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_default_an_experiment_does_not_set_reaches_it(exp):
    set_here = experiment_settings(exp)
    for group, option in selected_groups(exp).items():
        set_here |= group_settings(group, option)
    got = leaves(run_config(f"+exp={exp}", "out_dir=/x"))
    changed = {key for key, value in got.items() if value != FLAT_DEFAULTS[key]}
    assert changed - {"out_dir"} <= set(set_here), f"{exp} changes keys it does not set"
    assert set(got) == set(FLAT_DEFAULTS)


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_group_files_only_set_keys_that_exist_and_differ(path):
    settings = group_settings(path.parent.name, path.stem)
    for key, value in settings.items():
        assert key in FLAT_DEFAULTS, f"{path.name}: unknown key {key}"
        assert value != FLAT_DEFAULTS[key], f"{path.name}: {key}={value!r} restates the default"


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_experiments_only_set_keys_that_exist_and_differ(exp):
    base = dict(FLAT_DEFAULTS)
    for group, option in selected_groups(exp).items():
        base |= group_settings(group, option)
    base |= family_settings(exp)
    for key, value in experiment_file_settings(exp).items():
        assert key in base, f"{exp}: unknown key {key}"
        assert value != base[key], f"{exp}: {key}={value!r} restates the default"


def test_the_root_config_only_sets_what_dataclasses_cannot():
    root = load(CONFIGS / "config.yaml")
    assert set(root) == {"defaults", "exp_name", "out_dir", "hydra"}
    assert root["defaults"][0] == "spiral_defaults"


# --------------------------------------------------------------------------- overrides


def test_common_overrides():
    cfg = run_config("+exp=kuhn", "steps=7", "seed=3", "out_dir=/tmp/run", "algo.rae=false",
                     "learner.lr=0.5")
    assert (cfg.steps, cfg.seed, cfg.out_dir, cfg.algo.rae, cfg.learner.lr) == (
        7, 3, "/tmp/run", False, 0.5)


def test_key_and_group_overrides():
    cfg = run_config("+exp=kuhn", "learner.lr=5e-4", "env.games=[TicTacToe-v1]", "actor=vllm",
                     "learner=deepspeed", "model=qwen3_4b_base")
    assert (cfg.learner.lr, cfg.env.games) == (5e-4, ("TicTacToe-v1",))
    assert (cfg.actor.backend, cfg.learner.backend) == ("vllm", "deepspeed")
    assert (cfg.model.name_or_path, cfg.model.gradient_checkpointing) == ("Qwen/Qwen3-4B-Base",
                                                                          True)
    # the embedded model's tuning of +exp=kuhn (tuning/kuhn_embedded.yaml) does not follow
    # a pretrained model; the pretrained family's values do
    assert (cfg.learner.lr_final, cfg.algo.kl_beta, cfg.model.family) == (None, 0.0, "pretrained")
    assert cfg.steps == 400  # the experiment's own keys stay


def test_model_family_decides_the_tuning_and_the_command_line_wins():
    embedded = run_config("+exp=kuhn")
    assert (embedded.learner.lr, embedded.learner.lr_final, embedded.algo.kl_beta) == (1e-3, 1e-4,
                                                                                       1.0)
    assert (embedded.actor.max_new_tokens, embedded.env.instruction) == (24, "brief")
    real = run_config("+exp=kuhn", "model=smollm2_135m")
    assert (real.learner.lr, real.learner.lr_final, real.algo.kl_beta) == (1e-6, None, 0.0)
    assert (real.actor.max_new_tokens, real.env.instruction, real.env.parse_cut) == (1024,
                                                                                     "reason", True)
    assert (real.eval.temperature, real.eval.top_p, real.eval.exact_policy) == (0.6, 0.95,
                                                                                "sample")
    mine = run_config("+exp=kuhn", "model=smollm2_135m", "learner.lr=3e-6", "algo.kl_beta=0.05")
    assert (mine.learner.lr, mine.algo.kl_beta) == (3e-6, 0.05)
    tuned = run_config("+exp=kuhn", "algo.kl_beta_final=0.2")  # over tuning/kuhn_embedded.yaml
    assert (tuned.algo.kl_beta, tuned.algo.kl_beta_final) == (1.0, 0.2)
    assert run_config("exp=kuhn", "out_dir=/x") == run_config("+exp=kuhn", "out_dir=/x")


def test_a_pretrained_family_needs_a_model_path():
    with pytest.raises(ConfigError, match="model.family='pretrained': needs model.name_or_path"):
        run_config("+exp=kuhn", "model=pretrained")
    cfg = run_config("+exp=kuhn", "model=pretrained", "model.name_or_path=/models/x")
    assert (cfg.model.family, cfg.learner.lr) == ("pretrained", 1e-6)


def test_default_options_switch_back():
    cfg = run_config("+exp=kuhn_paper", "actor=hf", "learner=torch", "model=embedded")
    assert (cfg.actor.backend, cfg.learner.backend, cfg.model) == ("hf", "torch",
                                                                   RunConfig().model)


def test_backend_keys_live_under_their_backend():
    cfg = run_config("actor=vllm", "actor.vllm.gpu_memory_utilization=0.3",
                     "actor.vllm.sleep_when_training=false", "learner=deepspeed",
                     "learner.deepspeed.zero_stage=3")
    assert cfg.actor.vllm == VLLMConfig(gpu_memory_utilization=0.3, sleep_when_training=False)
    assert cfg.learner.deepspeed.zero_stage == 3


# --------------------------------------------------------------------------- errors


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
    with pytest.raises(ConfigError, match="deepspeed.zero_stage=4 is not one of 0, 1, 2, 3"):
        from_mapping(RunConfig, {"learner": {"deepspeed": {"zero_stage": 4}}})


@pytest.mark.parametrize("key, home", [
    ("actor.gpu_memory_utilization", "actor.vllm.gpu_memory_utilization"),
    ("actor.sleep_when_training", "actor.vllm.sleep_when_training"),
    ("learner.zero_stage", "learner.deepspeed.zero_stage"),
])
def test_backend_keys_are_refused_in_the_shared_group(key, home):
    group, name = key.split(".")
    with pytest.raises(ConfigError, match=rf"'{key}' \(it is {home}\)"):
        from_mapping(RunConfig, {group: {name: 1}})
    with pytest.raises(ConfigError, match=rf"'{key}' \(it is {home}\)"):
        check_override_keys(RunConfig, [f"{key}=1"], ignore=NOT_RUN_CONFIG)
    with pytest.raises(ConfigCompositionException, match=name):
        composed("+exp=kuhn", f"{key}=1")


def test_old_eval_keys_are_refused():
    for old in ("exploitability", "kuhn_policy", "kuhn_samples"):
        with pytest.raises(ConfigError, match=f"eval.{old}"):
            from_mapping(RunConfig, {"eval": {old: True}})


def test_override_keys_check_leaves_hydra_and_additions_alone():
    check_override_keys(RunConfig, [
        "+exp=kuhn", "exp_name=x", "hydra.run.dir=/tmp", "hydra/job_logging=disabled",
        "+learner.extra=1", "~eval.math", "--cfg", "job", "actor=vllm", "env.games=[a,b]",
        "env.game_kwargs.KuhnPoker-v1.rounds=5", "learner.deepspeed.zero_stage=3",
    ], ignore=NOT_RUN_CONFIG)
    with pytest.raises(ConfigError, match="'learner.deepspeed.stage'"):
        check_override_keys(RunConfig, ["learner.deepspeed.stage=3"], ignore=NOT_RUN_CONFIG)


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("bad", ["+learner.lrr=1", "learner.lrr=1",
                                 "actor.gpu_memory_utilization=0.4"])
def test_launch_exits_with_the_key_named(tmp_path, bad):
    result = cli("spiral.launch", "+exp=kuhn", f"out_dir={tmp_path}", bad)
    key = bad.lstrip("+").split("=")[0]
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith("config error:") and f"'{key}'" in result.stderr


def test_launch_prints_the_composed_config():
    result = cli("spiral.launch", "+exp=kuhn_paper", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["actor"]["vllm"]["gpu_memory_utilization"] == 0.45
    assert printed["learner"]["deepspeed"]["zero_stage"] == 2
    assert printed["eval"]["exact"] is True and printed["exp_name"] == "kuhn_paper"
    # SPIRAL's settings (docs/paper_recipe.md), as --cfg job shows them
    assert printed["env"]["game_kwargs"] == {"KuhnPoker-v1": {"rounds": 5}}
    assert (printed["env"]["samples_per_step"], printed["learner"]["epochs"]) == (128, 2)
    assert (printed["env"]["instruction"], printed["env"]["parse_cut"]) == ("reason", True)
    assert (printed["learner"]["lr"], printed["algo"]["kl_beta"]) == (1e-6, 0.0)
    assert printed["actor"]["max_new_tokens"] == 4096
    assert (printed["eval"]["temperature"], printed["eval"]["top_p"]) == (0.6, 0.95)
    assert printed["eval"]["exact_policy"] == "sample"


# --------------------------------------------------------------------------- evaluate


def test_evaluate_defaults_are_the_dataclass_defaults():
    from spiral.evaluate.__main__ import register_defaults
    from spiral.evaluate.runner import EvaluateConfig, to_config

    register_defaults()
    cfg = composed("checkpoint=embedded", "out_dir=/x", config="evaluate")
    got = to_config(OmegaConf.to_container(cfg, resolve=True))
    assert got == EvaluateConfig(checkpoint="embedded", out_dir="/x")
    evaluate_yaml = load(CONFIGS / "evaluate.yaml")
    assert set(evaluate_yaml) == {"defaults", "checkpoint", "out_dir", "hydra"}


def test_evaluate_exits_with_the_key_named():
    result = cli("spiral.evaluate", "checkpoint=embedded", "matchs=3")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("config error: unknown config key 'matchs'")
    assert len(result.stderr.strip().splitlines()) == 1
    missing = cli("spiral.evaluate")
    assert missing.returncode == 2 and "checkpoint is required" in missing.stderr
