"""Command line: ``python -m spiral.evaluate checkpoint=PATH [key=value ...]``.

The defaults are those of `spiral.evaluate.runner.EvaluateConfig`, registered in Hydra's
ConfigStore as ``spiral_evaluate_defaults``; ``configs/evaluate.yaml`` (shipped as
``spiral.configs``) adds only the required ``checkpoint``, the run directory and Hydra's
settings. The result is validated into ``EvaluateConfig`` and handed to
`spiral.evaluate.runner.run`, which writes ``out_dir/eval.json`` and ``out_dir/eval.md``.
Examples::

    python -m spiral.evaluate checkpoint=runs/kuhn/2025-01-01_00-00-00
    python -m spiral.evaluate checkpoint=Qwen/Qwen3-4B-Base games=[KuhnPoker-v1] \\
        opponents=[optimal,openai:gpt-4o-mini] math=[math500,aime24] samples=4 max_new_tokens=4096

The config is validated before any work, as ``spiral.launch`` does: composed with Hydra's
compose API (nothing on disk), checked by `spiral.evaluate.runner.to_config` (ranges, games,
opponents, benchmarks, the checkpoint path), and only then run under ``@hydra.main``. A mistake
ends in one line on stderr with exit status 2; ``SPIRAL_DEBUG=1`` shows the traceback.

The entry point stays under ``if __name__ == "__main__"``: math grading starts worker
processes that re-import this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from spiral.config import check_override_keys, defaults
from spiral.errors import ConfigError, compose_config, debugging, run_command


def register_defaults() -> type:
    """Register ``EvaluateConfig``'s defaults for ``configs/evaluate.yaml``; returns the class.

    Called by `main`, not at import: the runner's imports are heavy, and the math-grading
    workers re-import this module.
    """
    from spiral.evaluate.runner import EvaluateConfig

    ConfigStore.instance().store(name="spiral_evaluate_defaults", node=defaults(EvaluateConfig))
    return EvaluateConfig


def to_evaluate_config(cfg: DictConfig):
    """Resolve and validate a composed config into ``EvaluateConfig`` (errors name the key)."""
    from spiral.evaluate.runner import to_config

    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key, message = getattr(err, "full_key", None), str(getattr(err, "msg", err))
        message = message.splitlines()[0] if message.strip() else type(err).__name__
        raise ConfigError(f"{key}: {message}" if key else message) from err
    return to_config(data)


@hydra.main(config_path="pkg://spiral.configs", config_name="evaluate", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    status = run_command(_evaluate, cfg)
    if status:
        sys.exit(status)


def _evaluate(cfg: DictConfig) -> None:
    from spiral.evaluate.report import markdown
    from spiral.evaluate.runner import run

    eval_cfg = to_evaluate_config(cfg)
    report = run(eval_cfg)
    out = Path(eval_cfg.out_dir)
    print(markdown(report))
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'} in {report['seconds']:.0f}s")


def _validate(config_cls: type, argv: list[str]) -> None:
    """Refuse a bad config before ``@hydra.main`` creates out_dir and its log file."""
    check_override_keys(config_cls, argv, ignore=("hydra",))
    cfg = compose_config("evaluate", argv)
    if cfg is not None:  # None: Hydra flags (--cfg, -m); `_evaluate` validates each job
        to_evaluate_config(cfg)


def main() -> None:
    if debugging():
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    status = run_command(_validate, register_defaults(), sys.argv[1:])
    if status:
        sys.exit(status)
    _main()


if __name__ == "__main__":
    main()
