"""Command line: ``python -m spiral.sft +exp=<name> [key=value ...]`` (also ``spiral-sft``).

Supervised fine-tuning on chat JSONL, generated task solutions or an optimal player's moves,
and expert iteration on a task (docs/sft.md). Experiments are ``configs/sft_exp/*.yaml``:
``gametheory_sft``, ``gametheory_ei``, ``kuhn_expert_sft``. ``+exp=NAME`` selects one (it
becomes the ``sft_exp`` group of ``configs/sft.yaml``, so this command's experiments never mix
with training's ``configs/exp``); ``exp=NAME`` and ``sft_exp=NAME`` work too.

The defaults are the dataclasses of `spiral.sft_config`, registered in Hydra's ConfigStore as
``spiral_sft_defaults``. As with ``spiral.launch``, the config is composed and checked before
any work (nothing is created on disk): a bad key, value, task, game, opponent, model path or
chat file ends in one line on stderr and exit status 2; ``SPIRAL_DEBUG=1`` shows the traceback.
The run directory, checkpoints, resume and the run lock are training's (README: "The run
directory", "Failures and recovery").
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from spiral.config import check_override_keys, defaults
from spiral.errors import (
    ConfigError,
    check_game_kwargs,
    check_games,
    check_model_path,
    check_opponent,
    compose_config,
    debugging,
    run_command,
)
from spiral.sft_config import SFTConfig, to_sft_config

ConfigStore.instance().store(name="spiral_sft_defaults", node=defaults(SFTConfig))

GROUP = "sft_exp"  # configs/sft_exp/*.yaml, selected with +exp=NAME
NOT_SFT_CONFIG = ("exp", GROUP, "exp_name", "hydra")  # names of configs/sft.yaml and Hydra


def experiments() -> list[str]:
    """The experiment names: ``configs/sft_exp/*.yaml`` as shipped in ``spiral.configs``."""
    from importlib.resources import files

    folder = files("spiral.configs") / GROUP
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def experiment_overrides(argv: Sequence[str]) -> list[str]:
    """``+exp=NAME``, ``exp=NAME`` and ``+sft_exp=NAME`` as ``sft_exp=NAME`` (the optional group
    of ``configs/sft.yaml``, which Hydra would skip silently for an unknown NAME: refused here,
    with the names there are)."""
    out = []
    for arg in argv:
        key, sep, name = arg.partition("=")
        if sep and key in ("+exp", "exp", f"+{GROUP}", GROUP):
            known = experiments()
            if name not in known:
                raise ConfigError(f"Could not find '{GROUP}/{name}'; Available options in 'exp': "
                                  f"{', '.join(known)}")
            arg = f"{GROUP}={name}"
        out.append(arg)
    return out


def to_config(cfg: DictConfig) -> SFTConfig:
    """Resolve and validate a composed Hydra config (errors name the bad key)."""
    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key, message = getattr(err, "full_key", None), str(getattr(err, "msg", err))
        message = message.splitlines()[0] if message.strip() else type(err).__name__
        raise ConfigError(f"{key}: {message}" if key else message) from err
    data.pop("exp_name", None)
    return to_sft_config(data)


def check_sft(cfg: SFTConfig) -> None:
    """What `to_sft_config` cannot see: the task, game, opponents, model, chat file and backends
    that ``cfg`` names exist and work. Reads registries and files; loads no model."""
    data = cfg.data
    if data.kind == "task" or cfg.mode == "expert_iteration":
        _check_task(data.task, data.task_kwargs, "data.task")
    if data.kind == "games":
        check_games([data.game], "data.game")
        check_game_kwargs({data.game: data.game_kwargs}, "data.game_kwargs")
        _check_expert(data.game)
    if data.kind == "chat":
        from spiral.training.sft_data import read_chat

        read_chat(data.path, data.examples)  # a malformed line is refused naming it
    for task_id in cfg.eval.tasks:
        _check_task(task_id, data.task_kwargs if task_id == data.task else {}, "eval.tasks")
    check_games(cfg.eval.games, "eval.games")
    for name in cfg.eval.opponents:
        check_opponent(name, cfg.eval.games, "eval.opponents", training=False)
    check_model_path(cfg.model.name_or_path, "model.name_or_path")
    _check_backends(cfg)
    from spiral.training import trackers

    trackers.check(cfg.tracking)


def _check_expert(game_id: str) -> None:
    import envs

    if "optimal" not in envs.spec(game_id).opponents:
        having = [g for g in envs.list_games() if "optimal" in envs.spec(g).opponents]
        raise ConfigError(f"data.game={game_id!r} registers no optimal player to imitate; games "
                          f"that do: {', '.join(having)}")


def _check_task(task_id: str, kwargs: dict, key: str) -> None:
    import tasks

    if task_id not in tasks.list_tasks():
        raise ConfigError(f"{key}: unknown task {task_id!r}; registered: "
                          f"{', '.join(tasks.list_tasks())}")
    try:
        tasks.make(task_id, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data.task_kwargs={kwargs!r}: {err}") from err


def _check_backends(cfg: SFTConfig) -> None:
    if cfg.learner.backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("learner.backend='deepspeed' needs deepspeed, which is not installed "
                          "(pip install -e '.[gpu]')")
    if cfg.learner.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("learner.device='cuda' but no CUDA device is available; "
                              "allowed here: auto, cpu")


def advice(cfg: SFTConfig) -> list[str]:
    """Settings that run but are probably not what the user wants (printed as warnings)."""
    if cfg.model.name_or_path != "embedded" and cfg.learner.lr >= 1e-4:
        return [f"learner.lr={cfg.learner.lr:g} is tuned for the embedded model; fine-tuning a "
                "pretrained LLM usually wants about 1e-5 (learner.lr=1e-5)"]
    return []


def checked_config(argv: list[str]) -> SFTConfig | None:
    """The config of command line ``argv``, composed and checked without creating anything; a
    bad one raises `ConfigError`. None when ``argv`` holds Hydra flags such as ``--cfg``, which
    only Hydra's own main reads."""
    check_override_keys(SFTConfig, argv, ignore=NOT_SFT_CONFIG)
    cfg = compose_config("sft", experiment_overrides(argv))
    if cfg is None:
        return None
    sft_cfg = to_config(cfg)
    check_sft(sft_cfg)
    for line in advice(sft_cfg):
        print(f"warning: {line}", file=sys.stderr)
    return sft_cfg


def _validate(argv: list[str]) -> None:
    """Refuse a bad config before ``@hydra.main`` creates anything (see the module doc)."""
    checked_config(argv)


@hydra.main(config_path="pkg://spiral.configs", config_name="sft", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    status = run_command(_sft, cfg)
    if status:
        sys.exit(status)


def _sft(cfg: DictConfig) -> None:
    from spiral.training.sft_loop import sft

    sft_cfg = to_config(cfg)
    check_sft(sft_cfg)
    out = sft(sft_cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {Path(out)}")


def _experiment_argv() -> None:
    sys.argv[1:] = experiment_overrides(sys.argv[1:])


def main() -> None:
    if debugging():
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    status = run_command(_validate, sys.argv[1:]) or run_command(_experiment_argv)
    if status:
        sys.exit(status)
    _main()


if __name__ == "__main__":
    main()
