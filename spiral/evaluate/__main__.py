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

The entry point stays under ``if __name__ == "__main__"``: math grading starts worker
processes that re-import this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from spiral.config import ConfigError, check_override_keys, defaults


def register_defaults() -> type:
    """Register ``EvaluateConfig``'s defaults for ``configs/evaluate.yaml``; returns the class.

    Called by `main`, not at import: the runner's imports are heavy, and the math-grading
    workers re-import this module.
    """
    from spiral.evaluate.runner import EvaluateConfig

    ConfigStore.instance().store(name="spiral_evaluate_defaults", node=defaults(EvaluateConfig))
    return EvaluateConfig


def _refuse(message: str) -> None:
    print(f"config error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path="pkg://spiral.configs", config_name="evaluate", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from spiral.evaluate.report import markdown
    from spiral.evaluate.runner import run, to_config

    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        eval_cfg = to_config(data)
    except MissingMandatoryValue:
        _refuse("checkpoint is required: python -m spiral.evaluate checkpoint=PATH")
    except ConfigError as err:
        _refuse(str(err))
    report = run(eval_cfg)
    out = Path(eval_cfg.out_dir)
    print(markdown(report))
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'} in {report['seconds']:.0f}s")


def main() -> None:
    config_cls = register_defaults()
    try:
        check_override_keys(config_cls, sys.argv[1:], ignore=("hydra",))
    except ConfigError as err:
        _refuse(str(err))
    _main()


if __name__ == "__main__":
    main()
