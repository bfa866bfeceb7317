"""Command line: ``python -m spiral.evaluate checkpoint=PATH [key=value ...]``.

Hydra composes ``configs/evaluate.yaml`` (shipped as ``spiral.configs``); the result is validated
into `spiral.evaluate.runner.EvaluateConfig` and handed to `spiral.evaluate.runner.run`, which
writes ``out_dir/eval.json`` and ``out_dir/eval.md``. Examples::

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
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from spiral.config import ConfigError


@hydra.main(config_path="pkg://spiral.configs", config_name="evaluate", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from spiral.evaluate.report import markdown
    from spiral.evaluate.runner import run, to_config

    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        eval_cfg = to_config(data)
    except MissingMandatoryValue:
        print("config error: checkpoint is required: python -m spiral.evaluate checkpoint=PATH",
              file=sys.stderr)
        sys.exit(2)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    report = run(eval_cfg)
    out = Path(eval_cfg.out_dir)
    print(markdown(report))
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'} in {report['seconds']:.0f}s")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
