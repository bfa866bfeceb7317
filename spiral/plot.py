"""Learning curves from a run directory: ``python -m spiral.plot OUT_DIR [--out DIR]``.

Writes one PNG per panel that has data (exploitability, win rates against each opponent,
invalid-move rate, loss, RAE baselines) into ``OUT_DIR/plots/``. A missing run directory or an
unreadable ``metrics.jsonl`` ends in one ``error: ...`` line on stderr and exit status 2;
``SPIRAL_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spiral.errors import UserError, run_command
from spiral.training.rundir import RunDir

PANELS = {
    "exploitability": ("Kuhn Poker exploitability", lambda k: k.endswith("/exploitability")),
    "win_rate": ("win rate vs fixed opponents", lambda k: k.startswith("eval/")
                 and k.endswith("/win_rate")),
    "invalid_rate": ("invalid-move rate (self-play)", lambda k: k == "rollout/invalid_rate"),
    "loss": ("policy loss", lambda k: k == "train/loss"),
    "baselines": ("RAE baselines", lambda k: k.startswith("train/baseline/")),
}


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(step, value) of ``key`` over the rows that have it."""
    xs, ys = [], []
    for row in rows:
        if key in row:
            xs.append(row["step"])
            ys.append(row[key])
    return xs, ys


def read_rows(run_dir: Path) -> list[dict]:
    """The run's logged steps; a missing run or unreadable metrics are a `UserError`."""
    run = RunDir(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    try:
        rows = run.read_metrics()
    except OSError as err:
        raise UserError(f"{run.metrics_path}: cannot be read ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise UserError(f"{run.metrics_path}: not UTF-8 text ({err.reason})") from err
    if not rows:
        raise UserError(f"no metrics in {run.metrics_path}")
    return rows


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(Path(run_dir))
    out_dir = Path(out) if out else Path(run_dir) / "plots"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{out_dir}: cannot create it ({err.strerror or err})") from err
    keys = sorted({k for row in rows for k in row})
    written = []
    for name, (title, wanted) in PANELS.items():
        chosen = [k for k in keys if wanted(k)]
        if not chosen:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key in chosen:
            ax.plot(*series(rows, key), marker="o" if name != "loss" else None, ms=3, label=key)
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiral.plot",
                                     description="plot a spiral run's learning curves")
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    args = parser.parse_args(argv)
    return run_command(_plot, args.run_dir, args.out)


def _plot(run_dir: str, out: str | None) -> None:
    for path in plot_run(run_dir, out):
        print(path)


if __name__ == "__main__":
    sys.exit(main())
