"""Command line: ``python -m spiral.launch +exp=kuhn [key=value ...]``.

Hydra composes ``configs/`` (shipped inside the package as ``spiral.configs``); the result is
validated into the frozen ``RunConfig`` here and nowhere else, then handed to ``train``.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from spiral.config import ConfigError, RunConfig, from_mapping


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Resolve and validate a composed Hydra config (errors name the bad key)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("exp_name", None)
    return from_mapping(RunConfig, data)


@hydra.main(config_path="pkg://spiral.configs", config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from spiral.training.train import train

    try:
        run_cfg = to_run_config(cfg)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    out = train(run_cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {out}")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
