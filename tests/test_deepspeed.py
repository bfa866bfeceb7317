"""The DeepSpeed learner for real on CPU (gloo): ZeRO-1/2/3, one and two ranks, bf16, checkpoints.

Each case runs in fresh processes (DeepSpeed keeps global state per process); the first run on
a machine compiles DeepSpeed's CPU shared-memory op once (cached in ~/.cache/torch_extensions).
"""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("deepspeed", reason="needs deepspeed: pip install 'deepspeed>=0.19,<0.20'")

from test_distributed import (  # noqa: E402  (helpers shared by the scale-out tests)
    LEARNER,
    StubTokenizer,
    launch_case,
    synthetic_samples,
    tiny_lm,
    torch_learner,
    updated_weights,
)

from spiral.config import AlgoConfig, DeepSpeedConfig  # noqa: E402
from spiral.distributed import Dist, shard_range  # noqa: E402
from spiral.learning.deepspeed_engine import ds_config  # noqa: E402
from spiral.models import checkpoint  # noqa: E402


def test_ds_config_drives_zero_bf16_and_unmanaged_accumulation():
    config = ds_config(replace(LEARNER, deepspeed=DeepSpeedConfig(zero_stage=3), grad_clip=0.5),
                       bf16=True, cuda=False)
    assert config["zero_optimization"]["stage"] == 3
    assert config["bf16"] == {"enabled": True}
    assert config["gradient_clipping"] == 0.5
    assert config["managed_gradient_accumulation"] is False
    with pytest.raises(ValueError, match="zero_stage=4"):
        ds_config(replace(LEARNER, deepspeed=DeepSpeedConfig(zero_stage=4)), bf16=False, cuda=False)


@pytest.mark.parametrize("stage, cuda, overlap", [(0, True, False), (1, True, False),
                                                  (2, True, True), (3, True, True),
                                                  (2, False, False), (3, False, False)])
def test_overlap_comm_only_for_zero_2_and_3_on_cuda(stage, cuda, overlap):
    """DeepSpeed refuses overlap_comm at stages 0 and 1 on CUDA (it fails at start-up)."""
    cfg = replace(LEARNER, deepspeed=DeepSpeedConfig(zero_stage=stage))
    zero = ds_config(cfg, bf16=True, cuda=cuda)["zero_optimization"]
    assert zero["stage"] == stage
    assert zero.get("overlap_comm", False) is overlap


def _learner(stage: int, dist: Dist, bf16: bool = False, model=None):
    from spiral.learning.learner import make_learner

    model = tiny_lm() if model is None else model
    if bf16:
        model = model.to(torch.bfloat16)
    cfg = replace(LEARNER, backend="deepspeed", deepspeed=DeepSpeedConfig(zero_stage=stage))
    return make_learner(model, cfg, AlgoConfig(), pad_id=0, temperature=1.0, norm_tokens=8,
                        dist=dist, bf16=bf16, seed=0)


def _numpy(weights):
    return {k: v.detach().float().numpy().copy() for k, v in weights.items()}


def _two_ranks(stage: int):
    """Global loss per update and full gathered weights on each rank; the second update runs at
    half the learning rate (``set_lr``, as the schedule does). ZeRO-3 also checkpoints
    activations."""
    def case(dist: Dist, tmp: str):
        model = tiny_lm()
        if stage == 3:
            model.gradient_checkpointing_enable()
        learner = _learner(stage, dist, model=model)
        samples = synthetic_samples()
        lo, hi = shard_range(len(samples), dist.rank, dist.world_size)
        out = []
        for update in range(2):
            learner.set_lr(LEARNER.lr / (1 + update))
            out.append((learner.update(samples[lo:hi])["train/loss"], _numpy(learner.weights())))
        return out
    return case


def _resume_stage2(dist: Dist, tmp: str):
    """Update, checkpoint, update again; then a fresh learner from the checkpoint repeats the
    second update exactly (the optimizer state went through optimizer.safetensors)."""
    from transformers import AutoModelForCausalLM

    tokenizer = StubTokenizer()
    learner = _learner(2, dist)
    samples = synthetic_samples()
    first = learner.update(samples)["train/loss"]
    learner.save_checkpoint(tmp, 1, tokenizer, {"note": "x"}, keep=2)
    second = _numpy(updated_weights(learner, samples))
    saved = checkpoint.latest(tmp)
    restored = _learner(2, dist, model=AutoModelForCausalLM.from_pretrained(saved))
    state = checkpoint.load_state(saved, restored.optimizer)
    again = _numpy(updated_weights(restored, samples))
    return first, state, max(abs(second[k] - again[k]).max() for k in second)


def _bf16_stage2(dist: Dist, tmp: str):
    learner = _learner(2, dist, bf16=True)
    learner.update(synthetic_samples())
    weights = learner.weights()
    full = learner.optimizer.state_dict()
    entry = full["state"][0]
    return (str(next(iter(weights.values())).dtype), str(entry["master"].dtype),
            sorted(entry), float(entry["step"]))


CASES = {"two_ranks_stage1": _two_ranks(1), "two_ranks_stage2": _two_ranks(2),
         "two_ranks_stage3": _two_ranks(3), "resume_stage2": _resume_stage2,
         "bf16_stage2": _bf16_stage2}


def launch(case: str, world: int, tmp_path) -> dict:
    return launch_case(__name__, case, world, tmp_path)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_on_two_ranks_matches_one_torch_process(stage, tmp_path):
    reference = torch_learner(tiny_lm())
    samples = synthetic_samples()
    want = []
    for update in range(2):
        reference.set_lr(LEARNER.lr / (1 + update))
        want.append((reference.update(samples)["train/loss"], _numpy(reference.weights())))
    got = launch(f"two_ranks_stage{stage}", 2, tmp_path)
    for step in range(2):
        (loss0, w0), (loss1, w1) = got[0][step], got[1][step]
        assert loss0 == loss1 == pytest.approx(want[step][0], abs=1e-6)
        for name, value in want[step][1].items():
            assert w0[name].shape == value.shape  # gathered, not a ZeRO-3 placeholder
            assert (w0[name] == w1[name]).all(), f"ranks differ in {name} after update {step}"
            assert abs(w0[name] - value).max() < 1e-4, name


def test_zero2_checkpoint_resumes_the_same_update(tmp_path):
    first, state, difference = launch("resume_stage2", 1, tmp_path)[0]
    reference = torch_learner(tiny_lm())
    assert first == pytest.approx(reference.update(synthetic_samples())["train/loss"], abs=1e-6)
    assert state["step"] == 1 and state["note"] == "x"
    assert difference < 1e-6
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoints" / "step_1")
    assert saved.lm_head.weight.shape == (64, 32)


def test_bf16_keeps_fp32_master_weights_in_the_checkpoint_state(tmp_path):
    weights_dtype, master_dtype, keys, step = launch("bf16_stage2", 1, tmp_path)[0]
    assert weights_dtype == "torch.bfloat16" and master_dtype == "torch.float32"
    assert keys == ["exp_avg", "exp_avg_sq", "master", "step"] and step == 1.0
