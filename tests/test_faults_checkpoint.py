"""Damaged checkpoints and non-finite numbers: what a user sees.

- a checkpoint that fails its manifest (or its own consistency) is skipped with a warning naming
  it, and the run resumes from the newest good one with every step logged exactly once;
- ``load_state`` refuses inconsistent state with an error naming the file;
- a non-finite loss skips the update (weights untouched, counted in ``train/skipped_updates``),
  the same way on every rank;
- a non-finite weight is never written.
"""

import dataclasses
import json
import logging
import math
import os
import shutil

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import save_file
from test_checkpoint import TinyModel, TinyTokenizer, trained
from test_distributed import LEARNER, free_port, synthetic_samples, tiny_lm, torch_learner

from spiral.config import AlgoConfig, EnvConfig, EvalConfig, LearnerConfig, ModelConfig, RunConfig
from spiral.distributed import Dist, shard_range
from spiral.learning.learner import make_learner
from spiral.models import checkpoint
from spiral.training.rundir import RunDir
from spiral.training.train import train


def save_steps(run_dir, steps=(1, 2), keep=5):
    model, opt = trained()
    for step in steps:
        checkpoint.save(run_dir, step, model, TinyTokenizer(), opt, {"elapsed_s": 1.0}, keep=keep)
    return model, opt


def garble(file, at=-8):
    data = bytearray(file.read_bytes())
    data[at] ^= 0xFF
    file.write_bytes(bytes(data))


def truncate(file):
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def set_state(folder, **changes):
    state = json.loads((folder / "trainer_state.json").read_text())
    (folder / "trainer_state.json").write_text(json.dumps({**state, **changes}))


DAMAGE = {
    "truncated model.safetensors": lambda d: truncate(d / "model.safetensors"),
    "garbled bytes in model.safetensors": lambda d: garble(d / "model.safetensors"),
    "missing file": lambda d: os.remove(d / "tokenizer_config.json"),
    "garbled trainer_state.json": lambda d: (d / "trainer_state.json").write_text("{\"step\": 2,"),
    "step mismatch": lambda d: set_state(d, step=7),
    "empty optimizer file": lambda d: save_file({}, d / "optimizer.safetensors"),
    "missing manifest": lambda d: os.remove(d / "manifest.json"),
}


def skipped(caplog):
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("skipping checkpoint")]


@pytest.mark.parametrize("damage", DAMAGE)
def test_latest_falls_back_to_the_previous_good_checkpoint(damage, tmp_path, caplog):
    save_steps(tmp_path)
    damaged = tmp_path / "checkpoints" / "step_2"
    DAMAGE[damage](damaged)
    with caplog.at_level(logging.WARNING, logger="spiral.models.checkpoint"):
        assert checkpoint.latest(tmp_path) == tmp_path / "checkpoints" / "step_1"
    (line,) = skipped(caplog)
    assert line.startswith(f"skipping checkpoint {damaged}: ") and "\n" not in line
    assert checkpoint.problem(damaged) is not None


def test_a_good_checkpoint_is_taken_silently_and_nothing_good_means_none(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert checkpoint.latest(tmp_path) is None
        save_steps(tmp_path)
        assert checkpoint.latest(tmp_path).name == "step_2"
    assert not caplog.records
    manifest = json.loads((tmp_path / "checkpoints" / "step_2" / "manifest.json").read_text())
    assert manifest["step"] == 2 and set(manifest["files"]) == {
        "model.safetensors", "optimizer.safetensors", "tokenizer_config.json",
        "trainer_state.json"}
    truncate(tmp_path / "checkpoints" / "step_1" / "optimizer.safetensors")
    garble(tmp_path / "checkpoints" / "step_2" / "optimizer.safetensors")
    with caplog.at_level(logging.WARNING):
        assert checkpoint.latest(tmp_path) is None
    assert len(skipped(caplog)) == 2


def make_pre_manifest(folder):
    """What spiral wrote before manifests: no manifest.json, no bookkeeping in the state."""
    os.remove(folder / "manifest.json")
    state = json.loads((folder / "trainer_state.json").read_text())
    for key in ("checkpoint_format", "optimizer_tensors"):
        del state[key]
    (folder / "trainer_state.json").write_text(json.dumps(state))


def test_pre_manifest_checkpoints_resume_with_a_warning_when_they_load(tmp_path, caplog):
    model, opt = save_steps(tmp_path)
    step_1, step_2 = (tmp_path / "checkpoints" / f"step_{s}" for s in (1, 2))
    make_pre_manifest(step_1)
    make_pre_manifest(step_2)
    with caplog.at_level(logging.WARNING):
        assert checkpoint.latest(tmp_path) == step_2
    assert "has no manifest.json" in caplog.text and str(step_2) in caplog.text
    assert checkpoint.load_state(step_2, torch.optim.AdamW(model.parameters()))["step"] == 2
    save_file({}, step_2 / "optimizer.safetensors")  # an old checkpoint that lost its optimizer
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert checkpoint.latest(tmp_path) == step_1
    assert skipped(caplog)[0].startswith(f"skipping checkpoint {step_2}: optimizer.safetensors")


def test_load_state_refuses_a_step_that_disagrees_with_the_folder(tmp_path):
    model, _ = save_steps(tmp_path)
    folder = tmp_path / "checkpoints" / "step_2"
    set_state(folder, step=3)
    with pytest.raises(checkpoint.CheckpointError, match=r"trainer_state.json says step 3.*step_2"):
        checkpoint.load_state(folder, torch.optim.AdamW(model.parameters()))


def test_load_state_refuses_an_optimizer_file_without_state(tmp_path):
    model, _ = save_steps(tmp_path)
    folder = tmp_path / "checkpoints" / "step_2"
    save_file({}, folder / "optimizer.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match=r"step_2.*optimizer.safetensors holds 0"):
        checkpoint.load_state(folder, torch.optim.AdamW(model.parameters()))


def test_an_optimizer_that_never_stepped_resumes(tmp_path):
    """All updates so far skipped (or no samples): an empty optimizer is the true state."""
    model = TinyModel(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    path = checkpoint.save(tmp_path, 3, model, TinyTokenizer(), opt, {}, keep=2)
    assert checkpoint.latest(tmp_path) == path
    assert checkpoint.load_state(path, torch.optim.AdamW(model.parameters()))["step"] == 3


def test_pruning_never_keeps_a_damaged_newer_checkpoint_over_the_good_one(tmp_path, caplog):
    """Resumed from step 2 because step 4 is damaged: saving step 3 (keep=1) leaves step 3
    alone, not the damaged step 4 of the abandoned continuation."""
    model, opt = save_steps(tmp_path, steps=(2, 4))
    garble(tmp_path / "checkpoints" / "step_4" / "model.safetensors")
    assert checkpoint.latest(tmp_path).name == "step_2"
    checkpoint.save(tmp_path, 3, model, TinyTokenizer(), opt, {}, keep=1)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_3"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert checkpoint.latest(tmp_path).name == "step_3"
    assert not caplog.records


@pytest.mark.parametrize("where", ["weight", "optimizer state"])
def test_a_non_finite_number_is_never_written(where, tmp_path):
    model, opt = save_steps(tmp_path, steps=(1,))
    with torch.no_grad():
        if where == "weight":
            model.weight[0, 1] = float("nan")
        else:
            next(iter(opt.state.values()))["exp_avg"][0, 0] = float("inf")
    name = "'weight'" if where == "weight" else "'0.exp_avg'"
    with pytest.raises(checkpoint.CheckpointError, match=f"step_2: {where} {name} .*non-finite"):
        checkpoint.save(tmp_path, 2, model, TinyTokenizer(), opt, {}, keep=5)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_1"]
    assert checkpoint.latest(tmp_path).name == "step_1"


def with_nan_advantage(samples, index=3):
    samples = list(samples)
    samples[index] = dataclasses.replace(samples[index], advantage=float("nan"))
    return samples


def weights_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_nan_loss_skips_the_update_and_leaves_the_weights(tmp_path):
    model = tiny_lm()
    before = weights_of(model)
    learner = torch_learner(model)
    stats = learner.update(with_nan_advantage(synthetic_samples()))
    assert stats["train/skipped_updates"] == 1 and "train/loss" not in stats
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not learner.optimizer.state_dict()["state"]  # Adam took no step either
    # nothing of the bad step leaks into the next one (which shuffles differently: the
    # learner's RNG moved on)
    fresh = torch_learner(tiny_lm())
    want = fresh.update(synthetic_samples())
    got = learner.update(synthetic_samples())
    assert got["train/skipped_updates"] == 0
    assert got["train/loss"] == pytest.approx(want["train/loss"], abs=1e-7)
    for name, weight in fresh.model.state_dict().items():
        assert torch.allclose(weight, learner.model.state_dict()[name], atol=1e-6), name
    # an untouched optimizer is a valid checkpoint state at step 1
    path = learner.save_checkpoint(tmp_path, 1, TinyTokenizer(), {}, keep=2)
    assert checkpoint.latest(tmp_path) == path


def test_only_the_minibatch_with_a_nan_loss_is_skipped():
    model = tiny_lm()
    before = weights_of(model)
    learner = make_learner(model, dataclasses.replace(LEARNER, minibatches=2), AlgoConfig(),
                           pad_id=0, temperature=1.0, norm_tokens=8)
    stats = learner.update(with_nan_advantage(synthetic_samples()))
    assert stats["train/skipped_updates"] == 1 and math.isfinite(stats["train/loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def _nan_on_rank_1(rank: int, world: int, port: int, backend: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.distributed.init_process_group("gloo")
    dist = Dist(rank, world, rank)
    cfg = LEARNER if backend == "torch" else dataclasses.replace(LEARNER, backend="deepspeed")
    learner = make_learner(tiny_lm(), cfg, AlgoConfig(), pad_id=0, temperature=1.0,
                           norm_tokens=8, dist=dist)
    samples = synthetic_samples()
    lo, hi = shard_range(len(samples), rank, world)
    mine = with_nan_advantage(samples[lo:hi], 0) if rank == 1 else samples[lo:hi]
    stats = learner.update(mine)
    weights = {k: v.detach().numpy().copy() for k, v in learner.weights().items()}
    queue.put((rank, stats["train/skipped_updates"], weights))
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("backend", ["torch", "deepspeed"])
def test_every_rank_skips_when_one_rank_has_a_nan_loss(backend):
    if backend == "deepspeed":
        pytest.importorskip("deepspeed")
    want = {k: v.numpy().copy() for k, v in tiny_lm().state_dict().items()}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_nan_on_rank_1, args=(r, 2, port, backend, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = {r: rest for r, *rest in (queue.get(timeout=300) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank in (0, 1):
        skipped_updates, weights = results[rank]
        assert skipped_updates == 1
        for name, value in want.items():
            assert (weights[name] == value).all(), f"rank {rank} changed {name}"


def steps_logged(out_dir):
    return [row["step"] for row in RunDir(out_dir).read_metrics()]


def test_a_run_whose_latest_checkpoint_is_damaged_resumes_from_the_one_before(
        micro, tmp_path, caplog):
    cfg = RunConfig(steps=3, out_dir=str(tmp_path), checkpoint_every=1, save_games_every=0,
                    progress=False, model=ModelConfig(name_or_path=str(micro)),
                    env=EnvConfig(games=("KuhnPoker-v1",), games_per_step=4),
                    eval=EvalConfig(every=0), learner=LearnerConfig(device="cpu"))
    train(cfg)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_2", "step_3"]
    damaged = tmp_path / "checkpoints" / "step_3"
    garble(damaged / "model.safetensors", at=-100)
    with caplog.at_level(logging.WARNING, logger="spiral.models.checkpoint"):
        train(dataclasses.replace(cfg, steps=4))
    assert skipped(caplog)[0].startswith(f"skipping checkpoint {damaged}: model.safetensors")
    assert steps_logged(tmp_path) == [1, 2, 3, 4]
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_3", "step_4"]
    state = json.loads((tmp_path / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert state["step"] == 4 and checkpoint.problem(tmp_path / "checkpoints" / "step_3") is None


def test_copy_of_a_checkpoint_folder_still_loads(tmp_path):
    """load_state on a folder not named step_<N> (a user's copy) trusts the state's step."""
    model, _ = save_steps(tmp_path, steps=(1,))
    copy_dir = tmp_path / "exported"
    shutil.copytree(tmp_path / "checkpoints" / "step_1", copy_dir)
    state = checkpoint.load_state(copy_dir, torch.optim.AdamW(model.parameters()))
    assert state == {"elapsed_s": 1.0, "step": 1}
