"""A LoRA run end to end on the micro model: resume is exact, the checkpoint is a PEFT adapter
that users load as they expect, export merges it, evaluation and opponents load it over a
shared base, and the config refuses what LoRA cannot do."""

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
import torch

from spiral.config import EnvConfig, EvalConfig, LearnerConfig, LoraConfig, ModelConfig, RunConfig
from spiral.models import checkpoint, lora
from spiral.models.loading import load_model
from spiral.training.rundir import RunDir
from spiral.training.train import train

ADAPTER = LoraConfig(rank=4, alpha=8.0)
PROMPT = torch.tensor([[5, 17, 33, 9, 41, 12]])


def lora_run(micro, out_dir, steps=2):
    return RunConfig(
        steps=steps, out_dir=str(out_dir), checkpoint_every=1, save_games_every=0,
        progress=False, model=ModelConfig(name_or_path=str(micro)),
        env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=6),
        learner=LearnerConfig(lr=1e-2, lora=ADAPTER), eval=EvalConfig(every=0),
    )


def without_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/") and "per_s" not in k
             and "share" not in k} for r in rows]


@pytest.fixture(scope="module")
def finished(micro, tmp_path_factory):
    path = tmp_path_factory.mktemp("lora") / "run"
    train(lora_run(micro, path))
    return path


def test_a_killed_lora_run_resumes_to_the_same_adapter(micro, finished, tmp_path):
    resumed = tmp_path / "resumed"
    train(lora_run(micro, resumed, steps=1))
    train(lora_run(micro, resumed, steps=2))
    assert [r["step"] for r in RunDir(resumed).read_metrics()] == [1, 2]
    assert without_time(RunDir(resumed).read_metrics()) == without_time(
        RunDir(finished).read_metrics())
    from safetensors.torch import load_file

    want = load_file(finished / "checkpoints/step_2" / lora.ADAPTER_WEIGHTS)
    got = load_file(resumed / "checkpoints/step_2" / lora.ADAPTER_WEIGHTS)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_the_checkpoint_is_a_peft_adapter_with_the_adapters_optimizer_state(micro, finished):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    step = finished / "checkpoints/step_2"
    assert checkpoint.problem(step) is None
    assert not (step / "model.safetensors").exists() and lora.is_adapter_folder(step)
    adapter = load_file(step / lora.ADAPTER_WEIGHTS)
    state = json.loads((step / checkpoint.STATE_FILE).read_text())
    assert state["optimizer_tensors"] == 3 * len(adapter)  # exp_avg, exp_avg_sq, step each
    users = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(micro), str(step))
    ours = load_model(str(step), ModelConfig(), torch.device("cpu"))
    with torch.no_grad():
        logits = users(input_ids=PROMPT).logits
        assert torch.allclose(logits, ours(input_ids=PROMPT).logits, atol=1e-6)
        base = AutoModelForCausalLM.from_pretrained(micro)(input_ids=PROMPT).logits
    assert not torch.allclose(logits, base, atol=1e-4)  # two updates moved the adapter


def test_export_merges_the_adapter_into_a_plain_model(finished, tmp_path):
    from transformers import AutoModelForCausalLM

    from spiral.export import main

    assert main([str(finished), "--merge", str(tmp_path / "merged")]) == 0
    assert main([str(finished), "--out", str(tmp_path / "adapter")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert (tmp_path / "merged" / "tokenizer_config.json").is_file()
    assert not any((tmp_path / "adapter" / f).exists() for f in ("optimizer.safetensors",
                                                                 "trainer_state.json"))
    adapter = load_model(str(tmp_path / "adapter"), ModelConfig(), torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=PROMPT).logits,
                              adapter(input_ids=PROMPT).logits, atol=1e-5)
    assert main([str(finished), "--merge", str(tmp_path / "merged")]) == 2  # exists: refused


def test_an_adapter_opponent_shares_the_policys_base(micro, finished):
    from spiral.rollout.opponents import named_opponent

    step = finished / "checkpoints/step_2"
    policy = lora.wrap(load_model(str(micro), ModelConfig(), torch.device("cpu")), ADAPTER)
    opponent = named_opponent(f"checkpoint:{step}", "cpu", policy=policy)
    frozen = {p.data_ptr() for p in policy.parameters() if not p.requires_grad}
    mine = {p.data_ptr() for p in opponent.actor.model.parameters()}
    assert frozen <= mine  # the base is the policy's own tensors
    alone = load_model(str(step), ModelConfig(), torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(opponent.actor.model(input_ids=PROMPT).logits,
                              alone(input_ids=PROMPT).logits, atol=1e-6)
        # the policy's own adapter (still B = 0) is untouched by the opponent's
        plain = load_model(str(micro), ModelConfig(), torch.device("cpu"))
        assert torch.allclose(policy(input_ids=PROMPT).logits, plain(input_ids=PROMPT).logits)


def test_an_adapter_finds_its_base_when_the_recorded_folder_is_gone(micro, finished, tmp_path):
    moved = tmp_path / "step_2"
    shutil.copytree(finished / "checkpoints/step_2", moved)
    config = json.loads((moved / lora.ADAPTER_CONFIG).read_text())
    config["base_model_name_or_path"] = str(tmp_path / "another-machine")
    (moved / lora.ADAPTER_CONFIG).write_text(json.dumps(config))
    assert lora.base_path(moved) == str(micro)  # trainer_state.json's model.name_or_path


def test_evaluate_reads_a_lora_checkpoint(finished, tmp_path):
    from spiral.evaluate.runner import EvaluateConfig, run

    report = run(EvaluateConfig(checkpoint=str(finished), out_dir=str(tmp_path / "eval"),
                                games=("KuhnPoker-v1",), opponents=("random",), matches=4,
                                math=()), log=lambda *_: None)
    assert 0.0 <= report["metrics"]["eval/KuhnPoker-v1/random/win_rate"] <= 1.0
    assert 0.0 < report["metrics"]["eval/KuhnPoker-v1/exploitability"] < 1.0


def _launch(*overrides):
    return subprocess.run([sys.executable, "-m", "spiral.launch", "+exp=kuhn", "progress=false",
                           "eval.every=0", *overrides], capture_output=True, text=True,
                          timeout=300)


def test_a_moving_kl_anchor_is_refused_with_lora(tmp_path):
    done = _launch(f"out_dir={tmp_path / 'r'}", "learner.lora.rank=4", "algo.ref_update_every=5")
    assert done.returncode == 2 and "algo.ref_update_every=5" in done.stderr
    assert not (tmp_path / "r").exists()


def test_resuming_with_another_rank_is_refused(micro, finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    done = _launch(f"out_dir={copy}", f"model.name_or_path={micro}", "steps=3",
                   "env.games_per_step=6", "learner.lr=1e-2", "learner.lora.rank=8",
                   "learner.lora.alpha=8", "learner.lr_final=null", "algo.kl_beta=0",
                   "algo.kl_beta_final=null")
    assert done.returncode == 2 and "learner.lora.rank: 4 -> 8" in done.stderr, done.stderr


def test_lora_keys_are_in_the_config(tmp_path):
    cfg = dataclasses.asdict(RunConfig())
    assert cfg["learner"]["lora"] == {"rank": 0, "alpha": 16.0, "dropout": 0.0,
                                      "target_modules": ("all-linear",)}


def test_the_lora_presets_differ_from_their_recipes_only_by_the_adapter():
    from test_config import leaves, run_config

    paper = leaves(run_config("+exp=kuhn_paper", "out_dir=/runs/x"))
    paper_lora = leaves(run_config("+exp=kuhn_paper_lora", "out_dir=/runs/x"))
    changed = {k for k in paper if paper[k] != paper_lora[k]}
    assert changed == {"learner.lr", "learner.lora.rank", "learner.lora.alpha"}
    assert paper_lora["learner.lora.rank"] == 32 and paper_lora["learner.lr"] == 4e-5
    real = run_config("+exp=kuhn_lora", "model=smollm2_135m")
    assert real.learner.lora.rank == 32 and real.learner.lr == 4e-5 and real.algo.kl_beta == 0
