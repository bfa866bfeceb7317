"""``experiments/gpu_check.py --small`` on CPU: the GPU check's code paths (hf actor, torch and
DeepSpeed learners, the composed ``+exp=kuhn_paper`` learner) run here, so the script cannot rot
between the rare runs on a GPU. Each run is a fresh process: the script joins a process group."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "gpu_check.py"


def run_check(tmp_path: Path, *flags: str) -> dict:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": pythonpath,
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(SCRIPT), "--small", *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    name = "gpu_check.json" if "--kuhn-paper" not in flags else (
        "gpu_check_kuhn_paper_lora.json" if "--lora" in flags else "gpu_check_kuhn_paper.json")
    return json.loads((tmp_path / name).read_text())


def assert_measured(row: dict) -> None:
    assert row["step_s"] > 0 and row["tokens_per_s"] > 0
    assert math.isfinite(row["loss"]) and row["peak_rss_gib"] > 0


def test_small_one_step_check_runs_the_actor_and_both_learners(tmp_path):
    results = run_check(tmp_path)
    assert results["device"] == "cpu" and results["small"]
    assert results["actor_hf"]["tokens_per_s"] > 0
    assert_measured(results["learner_torch"])
    if importlib.util.find_spec("deepspeed") is not None:
        assert_measured(results["learner_deepspeed_zero2"])
    else:
        assert results["learner_deepspeed_zero2"].startswith("skipped")


def test_small_kuhn_paper_check_runs_the_experiments_learner_on_two_micro_batches(tmp_path):
    results = run_check(tmp_path, "--kuhn-paper", "--backend", "torch")
    setting = results["kuhn_paper"]
    assert setting["shape"] == "small"
    assert setting["samples"] == 2 * setting["samples_per_micro_batch"] > 2
    length = setting["prompt_tokens"] + setting["response_tokens"]
    assert setting["micro_batch_tokens"] == setting["samples_per_micro_batch"] * length
    assert setting["gradient_checkpointing"]  # model=qwen3_4b_base's
    assert not setting["bf16"]  # bf16 on CUDA only
    assert_measured(results["learner_torch"])


def test_small_kuhn_paper_lora_check_trains_an_adapter(tmp_path):
    results = run_check(tmp_path, "--kuhn-paper", "--lora", "--backend", "torch")
    assert results["kuhn_paper"]["lora_rank"] == 32
    assert_measured(results["learner_torch"])
