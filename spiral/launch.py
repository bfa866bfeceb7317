"""Command line: ``python -m spiral.launch +exp=kuhn [key=value ...]``.

The defaults are the dataclasses of `spiral.config`: importing this module registers them in
Hydra's ConfigStore as ``spiral_defaults``, the first entry of ``configs/config.yaml``'s
defaults list, so the YAML files (shipped inside the package as ``spiral.configs``) hold only
what differs. The composed result is validated into the frozen ``RunConfig`` here and nowhere
else, then handed to ``train``.
"""

from __future__ import annotations

import os
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from spiral.config import ConfigError, RunConfig, check_override_keys, defaults, from_mapping

ConfigStore.instance().store(name="spiral_defaults", node=defaults(RunConfig))

# Top-level names of configs/config.yaml and Hydra that are not RunConfig fields.
NOT_RUN_CONFIG = ("exp", "exp_name", "hydra")


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Resolve and validate a composed Hydra config (errors name the bad key)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("exp_name", None)
    return from_mapping(RunConfig, data)


def _refuse(err: ConfigError) -> None:
    print(f"config error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path="pkg://spiral.configs", config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from spiral.training.train import train

    try:
        run_cfg = to_run_config(cfg)
    except ConfigError as err:
        _refuse(err)
    out = train(run_cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {out}")


def main() -> None:
    try:
        check_override_keys(RunConfig, sys.argv[1:], ignore=NOT_RUN_CONFIG)
    except ConfigError as err:
        _refuse(err)
    _main()


if __name__ == "__main__":
    main()
