"""Time to learn: wall time for `+exp=kuhn` to reach Kuhn exploitability 0.15, 0.10 and 0.05.

    python bench/learn_kuhn.py [--quick] [--minutes M] [--exp kuhn_lora] [overrides ...]
    python bench/learn_kuhn.py --from-run OUT_DIR [--exp kuhn_lora]

Runs the kuhn experiment exactly as `python -m spiral.launch +exp=kuhn` composes it (extra
Hydra overrides are passed through), stops at exploitability <= 0.05 or after --minutes, prints
the crossing times and saves the curve to bench/results/learn_kuhn.png. ``--from-run`` reads
the same figures from an existing run directory of `+exp=kuhn` instead of training.
``--exp NAME`` runs (or reads) another Kuhn experiment, e.g. ``kuhn_lora``; its rows are named
``NAME/seconds_to_exploitability_X`` and its curve ``learn_NAME.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, record, table  # noqa: E402

THRESHOLDS = (0.15, 0.10, 0.05)
KEY = "eval/KuhnPoker-v1/exploitability"


def compose(overrides: list[str], exp: str = "kuhn"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from spiral.launch import to_run_config

    with initialize_config_module("spiral.configs", version_base="1.3"):
        return to_run_config(hydra_compose("config", overrides=[f"+exp={exp}", *overrides]))


def curve(out_dir: Path) -> list[tuple[int, float, float]]:
    from spiral.training.rundir import RunDir

    return [(r["step"], r["time/elapsed_s"], r[KEY]) for r in RunDir(out_dir).read_metrics()
            if KEY in r]


def crossings(points) -> dict[float, tuple[int, float] | None]:
    found = {}
    for threshold in THRESHOLDS:
        hit = next(((step, t) for step, t, e in points if e <= threshold), None)
        found[threshold] = hit
    return found


def plot(points, path: Path, exp: str = "kuhn") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([t / 60 for _, t, _ in points], [e for _, _, e in points], marker="o", ms=3)
    for threshold in THRESHOLDS:
        ax.axhline(threshold, ls="--", lw=0.8, color="grey")
    ax.axhline(11 / 24, ls=":", lw=0.8, color="red", label="uniform policy")
    ax.set(xlabel="wall time (minutes)", ylabel="exploitability", title=f"+exp={exp} on this CPU")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run_experiment(args) -> Path:
    from spiral.training.train import train

    minutes = 2.0 if args.quick else args.minutes
    cfg = compose(args.overrides, args.exp)
    out_dir = Path(tempfile.mkdtemp(prefix="learn_kuhn_"))
    cfg = dataclasses.replace(cfg, out_dir=str(out_dir), steps=10_000, progress=False,
                              checkpoint_every=10_000)
    train(cfg, stop=lambda m: m.get(KEY, 1.0) <= THRESHOLDS[-1], max_seconds=minutes * 60)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="stop after 2 minutes")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--from-run", help="analyse this run directory instead of training")
    parser.add_argument("--exp", default="kuhn", help="the Kuhn experiment (e.g. kuhn_lora)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out_dir = Path(args.from_run) if args.from_run else run_experiment(args)
    points = curve(out_dir)
    rows = []
    for threshold, hit in crossings(points).items():
        seconds = hit[1] if hit else None  # JSON null: not reached in this run
        prefix = "" if args.exp == "kuhn" else f"{args.exp}/"
        record("learn_kuhn", f"{prefix}seconds_to_exploitability_{threshold:.2f}", seconds, "s")
        rows.append((threshold, hit[0] if hit else "not reached",
                     "-" if seconds is None else f"{seconds:.0f}"))
    RESULTS.mkdir(exist_ok=True)
    name = "learn_kuhn.png" if args.exp == "kuhn" else f"learn_{args.exp}.png"
    plot(points, RESULTS / name, args.exp)
    print(table(rows, ("exploitability", "step", "seconds")))
    print(f"curve: {RESULTS / name}  run: {out_dir}")


if __name__ == "__main__":
    main()
