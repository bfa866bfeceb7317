"""Scale-out on CPU: gloo process groups with two ranks, checked against one process."""

import json
import os
import random
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from spiral.config import AlgoConfig, EnvConfig, LearnerConfig
from spiral.distributed import Dist, from_env, shard_range
from spiral.learning.advantages import (
    RoleBaselines,
    role_conditioned_advantages,
    role_returns,
    shared_advantages,
)
from spiral.learning.learner import make_learner
from spiral.learning.ppo import plan
from spiral.records import Episode, Sample, Turn

LEARNER = LearnerConfig(lr=1e-2, micro_batch_tokens=24)


def tiny_lm():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=False,
    ))


def synthetic_samples(n: int = 11) -> list[Sample]:
    rng = random.Random(1)
    out = []
    for _ in range(n):
        response = [rng.randrange(1, 64) for _ in range(rng.randint(1, 5))]
        out.append(Sample([rng.randrange(1, 64) for _ in range(rng.randint(3, 9))], response,
                          rng.choice([-1.0, 0.5, 1.5]), [-4.0] * len(response)))
    return out


def synthetic_episodes(n: int = 9) -> list[Episode]:
    rng = random.Random(2)
    episodes = []
    for i in range(n):
        game = rng.choice(["KuhnPoker-v1", "TicTacToe-v1"])
        r = rng.choice([-1.0, 1.0, 2.0])
        turns = [Turn(game, p, p, [1, 2, 3], [4, 5], [-1.0, -1.0], "x", "[bet]") for p in (0, 1)]
        episodes.append(Episode(game, i, (0, 1), turns, returns=(r, -r)))
    return episodes


def torch_learner(model):
    return make_learner(model, LEARNER, AlgoConfig(), pad_id=0, temperature=1.0, norm_tokens=8)


def updated_weights(learner, samples):
    """The learner's weights after one more update on ``samples``."""
    learner.update(samples)
    return learner.weights()


class StubTokenizer:
    """What a checkpoint needs of a tokenizer: something to save."""

    def save_pretrained(self, path):
        (path / "tokenizer_config.json").write_text("{}")


def run_case(rank: int, world: int, port: int, module: str, case: str, tmp: str,
             queue) -> None:
    """Rank ``rank`` of a gloo group: runs ``CASES[case](dist, tmp)`` of test module
    ``module`` and puts (rank, its result) on ``queue``."""
    import importlib

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.distributed.init_process_group("gloo")
    cases = importlib.import_module(module).CASES
    queue.put((rank, cases[case](Dist(rank, world, rank), tmp)))
    torch.distributed.destroy_process_group()


def launch_case(module: str, case: str, world: int, tmp_path) -> dict:
    """``world`` fresh processes running `run_case`; every rank's result, by rank."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=run_case, args=(r, world, port, module, case, str(tmp_path),
                                                queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_shard_range_splits_contiguously_in_rank_order():
    for n in (0, 1, 5, 6, 128):
        for world in (1, 2, 3, 8):
            bounds = [shard_range(n, r, world) for r in range(world)]
            assert [i for lo, hi in bounds for i in range(lo, hi)] == list(range(n))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_from_env_reads_torchrun_variables_and_rejects_garbage():
    assert from_env({}) == Dist(0, 1, 0)
    assert from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Dist(3, 8, 1)
    assert from_env({"RANK": "3", "WORLD_SIZE": "8"}).is_main is False
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        from_env({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="outside"):
        from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_shared_advantages_in_a_world_of_one_is_plain_rae():
    episodes = synthetic_episodes()
    ours, theirs = RoleBaselines(0.5, {"KuhnPoker-v1/0": 0.25}), RoleBaselines(
        0.5, {"KuhnPoker-v1/0": 0.25})
    got = shared_advantages(episodes, ours, Dist(), gamma=0.9)
    want = role_conditioned_advantages(episodes, theirs, gamma=0.9)
    assert [(s.advantage, s.game_id, s.player) for s in got] == [
        (s.advantage, s.game_id, s.player) for s in want]
    assert ours.values == theirs.values
    assert role_returns(episodes[:1]) == [(episodes[0].game_id, 0, episodes[0].returns[0]),
                                          (episodes[0].game_id, 1, episodes[0].returns[1])]


def test_plan_makes_exactly_the_configured_minibatches():
    batches = plan(synthetic_samples(5), minibatches=3, token_budget=24, dist=Dist(),
                   rng=random.Random(0), pad_id=0)
    assert [b.num_sequences for b in batches] == [2, 2, 1]
    assert all(all(b.real) for b in batches)
    empty = plan(synthetic_samples(1), minibatches=2, token_budget=24, dist=Dist(),
                 rng=random.Random(0), pad_id=0)
    assert [b.num_sequences for b in empty] == [1, 0] and empty[1].groups == []


def test_play_shards_deal_the_single_process_games():
    from spiral.rollout.actor import Generation
    from spiral.rollout.selfplay import play

    class Folder:  # answers nonsense: every match ends at its first turn
        def generate(self, prompts, seed, temperature=None):
            return [Generation([1], [0.0], "?", True) for _ in prompts]

    env = EnvConfig(games=("KuhnPoker-v1", "TicTacToe-v1"))
    deal = lambda eps: [(e.game_id, e.seed) for e in eps]  # noqa: E731
    whole = deal(play(Folder(), lambda obs: [len(obs)], env, 7, seed=5))
    shards = [deal(play(Folder(), lambda obs: [len(obs)], env, 7, seed=5, shard=(r, 3)))
              for r in range(3)]
    assert [len(s) for s in shards] == [2, 2, 3]
    assert [g for s in shards for g in s] == whole


def _rank(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.distributed.init_process_group("gloo")
    dist = Dist(rank, world, rank)
    samples = synthetic_samples()
    lo, hi = shard_range(len(samples), rank, world)
    learner = make_learner(tiny_lm(), LEARNER, AlgoConfig(), pad_id=0, temperature=1.0,
                           norm_tokens=8, dist=dist)
    updates = []
    for _ in range(2):
        stats = learner.update(samples[lo:hi])
        weights = {k: v.detach().numpy().copy() for k, v in learner.weights().items()}
        updates.append((stats["train/loss"], stats["train/samples"], weights))
    episodes = synthetic_episodes()
    elo, ehi = shard_range(len(episodes), rank, world)
    baselines = RoleBaselines(0.8)
    advantages = [s.advantage for s in shared_advantages(episodes[elo:ehi], baselines, dist)]
    queue.put((rank, updates, baselines.values, advantages))
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_update_like_one_process():
    """Uneven shards (5 and 6 samples, different micro-batch counts) on two DDP ranks."""
    reference = torch_learner(tiny_lm())
    samples = synthetic_samples()
    want = []
    for _ in range(2):
        stats = reference.update(samples)
        want.append((stats["train/loss"], {k: v.numpy().copy()
                                           for k, v in reference.weights().items()}))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, rest) for r, *rest in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for step in range(2):
        (loss0, n0, w0), (loss1, n1, w1) = results[0][0][step], results[1][0][step]
        assert loss0 == loss1 == pytest.approx(want[step][0], abs=1e-6)
        assert n0 == n1 == len(samples)
        for name in w0:
            assert (w0[name] == w1[name]).all(), f"ranks differ in {name} after update {step}"
            assert abs(w0[name] - want[step][1][name]).max() < 1e-4, name
    one = RoleBaselines(0.8)
    one_adv = [s.advantage for s in role_conditioned_advantages(synthetic_episodes(), one)]
    assert results[0][1] == results[1][1] == one.values
    assert results[0][2] + results[1][2] == one_adv


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory):
    from spiral.models.tiny import TinySpec, build

    spec = TinySpec(hidden_size=64, intermediate_size=64, num_layers=1, num_heads=2,
                    num_kv_heads=1, sft_examples=60, sft_steps=6, sft_batch=8, corpus_games=20)
    return build(tmp_path_factory.mktemp("micro"), spec, log=lambda *a: None)


def test_torchrun_two_ranks_train_log_once_and_resume(micro_model, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), "-m", "spiral.launch", "+exp=kuhn",
               f"model.name_or_path={micro_model}", f"out_dir={out}", "env.games_per_step=6",
               "eval.every=0", "checkpoint_every=1", "save_games_every=1", "progress=false",
               "learner.device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for steps in (1, 2):
        done = subprocess.run(command + [f"steps={steps}"], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["train/samples"] >= 6 and r["rollout/games"] == 6 for r in rows)
    transcript = (out / "games" / "step_000002.jsonl").read_text().splitlines()
    assert len(transcript) == 6  # both ranks' matches, written once by rank 0
    state = json.loads((out / "checkpoints" / "step_2" / "trainer_state.json").read_text())
    assert state["step"] == 2 and set(state["baselines"]["values"]) == {
        "KuhnPoker-v1/0", "KuhnPoker-v1/1"}


def test_a_plan_is_deterministic_given_its_rng():
    first = plan(synthetic_samples(), 2, 24, Dist(), random.Random(3), 0)
    second = plan(synthetic_samples(), 2, 24, Dist(), random.Random(3), 0)
    as_ids = lambda batches: [[s.prompt_ids for g in b.groups for s in g] for b in batches]  # noqa: E731
    assert as_ids(first) == as_ids(second)
