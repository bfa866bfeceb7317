"""Command line: ``python -m spiral.launch +exp=kuhn [key=value ...]``.

The defaults are the dataclasses of `spiral.config`: importing this module registers them in
Hydra's ConfigStore as ``spiral_defaults``, the first entry of ``configs/config.yaml``'s
defaults list, so the YAML files (shipped inside the package as ``spiral.configs``) hold only
what differs. The composed result is validated into the frozen ``RunConfig`` here and nowhere
else, then handed to ``train``.

Validation comes before any work: `main` composes the config with Hydra's compose API, which
creates nothing on disk, checks it (`to_run_config`, then `check_run` for the games, opponents,
model and benchmarks it names), and only then hands over to ``@hydra.main``, which makes out_dir
and its log file. A mistake ends in one line on stderr and exit status 2 within seconds;
``SPIRAL_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from spiral.config import RunConfig, check_override_keys, defaults, from_mapping
from spiral.errors import (
    ConfigError,
    check_folder,
    check_game_kwargs,
    check_games,
    check_model_path,
    check_opponent,
    compose_config,
    debugging,
    experiment_overrides,
    run_command,
)

ConfigStore.instance().store(name="spiral_defaults", node=defaults(RunConfig))

# Top-level names of configs/config.yaml and Hydra that are not RunConfig fields.
NOT_RUN_CONFIG = ("exp", "exp_name", "hydra")
# Backends that need an optional package: (key, value, package, how to install it).
EXTRAS = (("actor.backend", "vllm", "vllm", "pip install -e '.[gpu]'"),
          ("learner.backend", "deepspeed", "deepspeed", "pip install -e '.[gpu]'"))


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Resolve and validate a composed Hydra config (errors name the bad key)."""
    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key, message = getattr(err, "full_key", None), str(getattr(err, "msg", err))
        message = message.splitlines()[0] if message.strip() else type(err).__name__
        raise ConfigError(f"{key}: {message}" if key else message) from err
    data.pop("exp_name", None)
    return from_mapping(RunConfig, data)


def check_run(cfg: RunConfig) -> None:
    """What `from_mapping` cannot see: the games, opponents, model, math benchmarks and backends
    that ``cfg`` names exist. Reads registries and the file system; loads no model."""
    from spiral.evaluate.math_bench import benchmark
    from spiral.rollout.openai_opponent import OpenAIOpponent

    env = cfg.env
    if env.games_per_step == 0 and not cfg.tasks.ids:
        raise ConfigError("env.games_per_step=0 trains no game, and tasks.ids is empty: "
                          "nothing to train (e.g. tasks.ids=[GameTheory-v1])")
    check_tasks(cfg.tasks.ids, "tasks.ids", cfg.tasks.kwargs)
    check_games(env.games, "env.games")
    check_game_kwargs(env.game_kwargs, "env.game_kwargs")
    check_opponent(env.opponent, env.games, "env.opponent", training=True, remote=OpenAIOpponent)
    for name in cfg.eval.opponents:
        check_opponent(name, env.games, "eval.opponents", training=False, remote=OpenAIOpponent)
    check_model_path(cfg.model.name_or_path, "model.name_or_path")
    for name in cfg.eval.math:
        try:
            benchmark(name)
        except ValueError as err:
            raise ConfigError(f"eval.math: {err}") from err
    if cfg.eval.math_dir is not None:
        check_folder(cfg.eval.math_dir, "eval.math_dir")
    if cfg.learner.lora.enabled and cfg.algo.ref_update_every:
        raise ConfigError(f"algo.ref_update_every={cfg.algo.ref_update_every}: with LoRA "
                          f"(learner.lora.rank={cfg.learner.lora.rank}) the KL reference is the "
                          "base model with the adapter off; a moving anchor needs "
                          "learner.lora.rank=0, or algo.ref_update_every=0")
    _check_backends(cfg)
    from spiral.training import trackers

    trackers.check(cfg.tracking)


def check_tasks(ids, key: str, kwargs: dict | None = None) -> None:
    """Every id in ``ids`` is a registered task, and builds with its ``tasks.kwargs`` options
    (an unknown category, a bad value); options for a task not in ``ids`` are refused too."""
    import tasks

    kwargs = kwargs or {}
    for task_id in ids:
        if task_id not in tasks.list_tasks():
            raise ConfigError(f"{key}: unknown task {task_id!r}; registered: "
                              f"{', '.join(tasks.list_tasks())}")
        try:
            tasks.make(task_id, **kwargs.get(task_id, {}))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"tasks.kwargs.{task_id}={kwargs.get(task_id, {})!r}: "
                              f"{' '.join(str(err).split())}") from err
    for task_id in set(kwargs) - set(ids):
        raise ConfigError(f"tasks.kwargs.{task_id}: {task_id!r} is not in tasks.ids "
                          f"({', '.join(ids) or 'empty'})")


def advice(cfg: RunConfig) -> list[str]:
    """Settings that run but are probably not what the user wants (printed as warnings)."""
    out = []
    if cfg.model.family == "embedded" and cfg.model.name_or_path != "embedded":
        out.append(
            f"model.name_or_path={cfg.model.name_or_path!r} gets the embedded model's tuning "
            f"(lr {cfg.learner.lr:g}, actor.max_new_tokens {cfg.actor.max_new_tokens}, KL "
            f"{cfg.algo.kl_beta:g}); for a pretrained LLM use model=pretrained (or a "
            "configs/model/ entry), which sets model.family=pretrained")
    if cfg.model.family == "pretrained" and cfg.actor.max_new_tokens < 256:
        out.append(f"actor.max_new_tokens={cfg.actor.max_new_tokens} leaves a pretrained model "
                   "little room to reason; an answer cut before its \\boxed{} move is invalid")
    return out


def _check_backends(cfg: RunConfig) -> None:
    chosen = {"actor.backend": cfg.actor.backend, "learner.backend": cfg.learner.backend}
    for key, value, package, install in EXTRAS:
        if chosen[key] == value and importlib.util.find_spec(package) is None:
            raise ConfigError(f"{key}={value!r} needs {package}, which is not installed "
                              f"({install})")
    if cfg.learner.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("learner.device='cuda' but no CUDA device is available; "
                              "allowed here: auto, cpu")


@hydra.main(config_path="pkg://spiral.configs", config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    status = run_command(_train, cfg)
    if status:
        sys.exit(status)


def _train(cfg: DictConfig) -> None:
    from spiral.training.train import train

    run_cfg = to_run_config(cfg)
    check_run(run_cfg)
    out = train(run_cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {out}")


def _validate(argv: list[str]) -> None:
    """Refuse a bad config before ``@hydra.main`` creates anything (see the module doc)."""
    check_override_keys(RunConfig, argv, ignore=NOT_RUN_CONFIG)
    cfg = compose_config("config", argv)
    if cfg is not None:  # None: Hydra flags (--cfg, -m); `_train` validates each job
        run_cfg = to_run_config(cfg)
        check_run(run_cfg)
        for line in advice(run_cfg):
            print(f"warning: {line}", file=sys.stderr)


def main() -> None:
    if debugging():
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    status = run_command(_validate, sys.argv[1:]) or run_command(_experiment_argv)
    if status:
        sys.exit(status)
    _main()


def _experiment_argv() -> None:
    """``+exp=NAME`` becomes ``exp=NAME`` for ``@hydra.main`` too (`experiment_overrides`)."""
    sys.argv[1:] = experiment_overrides(sys.argv[1:])


if __name__ == "__main__":
    main()
