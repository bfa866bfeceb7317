"""Supervised fine-tuning and expert iteration (``python -m spiral.sft``): the loss by hand,
micro-batching and data parallelism, the three data sources, the expert-iteration filter, a
loss that falls on real data, the command's config checks, and resume."""

import dataclasses
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from test_distributed import LEARNER, free_port, tiny_lm

import tasks
from spiral.config import ConfigError, DeepSpeedConfig, LearnerConfig, defaults
from spiral.distributed import Dist, shard_range
from spiral.learning.engines import TorchEngine
from spiral.learning.sft import SFT, make_sft_learner, response_entropy
from spiral.models.loading import load_model, load_tokenizer, resolve_path
from spiral.models.logprobs import response_logprobs
from spiral.models.prompting import Prompter
from spiral.records import Sample
from spiral.rollout.actor import Generation
from spiral.rollout.tasks import draw_problems
from spiral.sft import checked_config, experiments
from spiral.sft_config import DataConfig, ExpertIterationConfig, SFTConfig, SFTEvalConfig
from spiral.training import guard
from spiral.training.expert_iteration import collect, ei_step_data
from spiral.training.rundir import RunDir
from spiral.training.sft_data import (
    ChatDataError,
    build_examples,
    encode_chat,
    expert_turns,
    read_chat,
    step_batch,
)
from spiral.training.sft_loop import MAY_CHANGE, MUST_NOT_CHANGE, listed, sft

CONFIGS = Path(__file__).parents[1] / "configs"


def examples(n: int = 7, seed: int = 3) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(1, 64) for _ in range(rng.randint(2, 9))],
             [rng.randrange(1, 64) for _ in range(rng.randint(1, 6))]) for _ in range(n)]


def one_minibatch(model, budget: int):
    sft_ = SFT(TorchEngine(model, LEARNER, Dist(), pad_id=0, temperature=1.0),
               micro_batch_tokens=budget)
    [(batch, tokens)] = sft_.plan(examples(), random.Random(0))
    return sft_, batch, tokens


def test_loss_is_minus_the_mean_log_prob_of_the_response_tokens():
    model = tiny_lm()
    sft_, batch, tokens = one_minibatch(model, budget=10**6)
    loss = sft_.accumulate(batch, tokens)
    logps = []  # independently: full logits, log-softmax, the next token's entry
    with torch.no_grad():
        for prompt, response in examples():
            ids = torch.tensor([prompt + response])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
            logps += [logp[len(prompt) + t - 1, token].item() for t, token in enumerate(response)]
    assert tokens == len(logps) == sum(len(r) for _, r in examples())
    assert loss == pytest.approx(-sum(logps) / len(logps), abs=1e-5)


def test_micro_batches_sum_to_the_gradient_of_one_batch():
    grads = []
    for budget in (10**6, 12):  # one micro-batch; one or two examples per micro-batch
        model = tiny_lm()
        sft_, batch, tokens = one_minibatch(model, budget)
        assert (len(batch.groups) == 1) == (budget > 100)
        loss = sft_.accumulate(batch, tokens)
        grads.append((loss, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_one, one), (loss_many, many) = grads
    assert loss_many == pytest.approx(loss_one, abs=1e-6)
    for name in one:
        assert torch.allclose(one[name], many[name], atol=1e-6), name


def _rank(rank: int, world: int, port: int, cfg: LearnerConfig, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    learner = make_sft_learner(tiny_lm(), cfg, pad_id=0, dist=Dist(rank, world, rank))
    data = examples(11)
    lo, hi = shard_range(len(data), rank, world)
    stats = learner.update(data[lo:hi])
    queue.put((rank, stats["train/loss"], stats["train/examples"],
               {k: v.numpy().copy() for k, v in learner.weights().items()}))
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # two spawned processes: over a minute on a busy 2-core machine
@pytest.mark.parametrize("backend", ["torch", "deepspeed"])
def test_two_ranks_update_like_one_process(backend):
    """DDP, and DeepSpeed ZeRO-3 (weights, gradients and optimizer sharded), on two gloo ranks
    with uneven shards: the loss and the weights of one torch process."""
    if backend == "deepspeed":
        pytest.importorskip("deepspeed")
    cfg = dataclasses.replace(LEARNER, backend=backend,
                              deepspeed=DeepSpeedConfig(zero_stage=3))
    one = make_sft_learner(tiny_lm(), LEARNER, pad_id=0)
    want = one.update(examples(11))
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, cfg, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = {rank: rest for rank, *rest in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for loss, count, weights in got.values():
        assert loss == pytest.approx(want["train/loss"], abs=1e-6) and count == 11
        for name, value in one.weights().items():
            assert abs(weights[name] - value.numpy()).max() < 1e-5, name


def test_entropy_is_that_of_the_full_next_token_distribution():
    model = tiny_lm()
    total, count = response_entropy(model, examples(), pad_id=0, temperature=0.7,
                                    token_budget=12, chunk_tokens=2)
    want = []
    with torch.no_grad():
        for prompt, response in examples():
            logits = model(input_ids=torch.tensor([prompt + response])).logits[0] / 0.7
            p = torch.softmax(logits, dim=-1)
            want += [float(-(p[t] * p[t].log()).sum())
                     for t in range(len(prompt) - 1, len(prompt) + len(response) - 1)]
    assert count == len(want)
    assert total == pytest.approx(sum(want), rel=1e-5)


# --------------------------------------------------------------------------- data sources


def write_lines(path: Path, rows) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


CHAT = [{"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "\\boxed{4}"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                      {"role": "user", "content": "3*3?"},
                      {"role": "assistant", "content": "\\boxed{9}"}]}]


def test_chat_jsonl_targets_the_last_assistant_message(tmp_path, micro):
    path = write_lines(tmp_path / "chat.jsonl", [CHAT[0], "", CHAT[1]])
    conversations = read_chat(path)
    assert [target for _, target in conversations] == ["\\boxed{4}", "\\boxed{9}"]
    assert [len(messages) for messages, _ in conversations] == [2, 3]
    assert len(read_chat(path, limit=1)) == 1
    tokenizer = load_tokenizer(str(micro))
    (prompt, response), _ = encode_chat(conversations, tokenizer)
    want = tokenizer.apply_chat_template(CHAT[0]["messages"][:2], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)
    assert prompt == list(want)
    assert response == tokenizer.encode("\\boxed{4}", add_special_tokens=False) + [
        tokenizer.eos_token_id]


@pytest.mark.parametrize("line, says", [
    ('{"messages": [', "not valid JSON"),
    ('[1, 2]', "expected an object with a non-empty 'messages' list"),
    ('{"messages": []}', "non-empty 'messages'"),
    ('{"messages": [{"role": "user", "content": 3}]}', "messages[0] needs a string 'role'"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "the last message is 'user'"),
    ('{"messages": [{"role": "assistant", "content": "a"}]}', "no message before"),
])
def test_a_malformed_chat_line_is_refused_naming_file_and_line(tmp_path, line, says):
    path = write_lines(tmp_path / "bad.jsonl", [CHAT[0], CHAT[1], line])
    with pytest.raises(ChatDataError) as caught:
        read_chat(path)
    assert str(caught.value).startswith(f"{path}:3: ") and says in str(caught.value)


def test_an_empty_or_missing_chat_file_is_refused(tmp_path):
    with pytest.raises(ChatDataError, match="no examples"):
        read_chat(write_lines(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(ChatDataError, match="cannot be read"):
        read_chat(tmp_path / "missing.jsonl")


def test_expert_trajectories_of_kuhn_play_the_nash_equilibrium():
    """Every target is the optimal player's canonical answer for its own seat and card; moves
    the equilibrium never makes never appear (J never calls, Q never bets, K never checks or
    folds), and every move it does make does."""
    turns = expert_turns("KuhnPoker-v1", 600, seed=0)
    assert len(turns) == 600
    answer = re.compile(r"I am Player ([01])\. ([JQK]) (checks|bets|calls|folds)\. "
                        r"\\boxed\{\[(check|bet|call|fold)\]\}")
    seen = set()
    for observation, target in turns:
        player, card, verb, move = answer.fullmatch(target).groups()
        assert verb == move + "s" and f"Player {player}" in observation
        seen.add(f"{card} {verb}")
    assert not seen & {"J calls", "Q bets", "K checks", "K folds"}
    assert seen == {"J bets", "J checks", "J folds", "Q checks", "Q calls", "Q folds",
                    "K bets", "K calls"}
    against_random = expert_turns("KuhnPoker-v1", 40, seed=0, opponent="random")
    seats = {re.match(r"I am Player (\d)", target)[1] for _, target in against_random}
    assert len(against_random) == 40 and seats == {"0", "1"}  # seat i % 2 of match i


def test_built_examples_are_prompts_and_eos_terminated_targets(micro):
    tokenizer = load_tokenizer(str(micro))
    prompter = Prompter(tokenizer)
    cfg = SFTConfig(data=DataConfig(kind="games", examples=5))
    built = build_examples(cfg, tokenizer, prompter)
    for (prompt, response), (observation, target) in zip(built, expert_turns("KuhnPoker-v1", 5,
                                                                             seed=0)):
        assert prompt == prompter(observation) and response[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(response, skip_special_tokens=True) == target
    task = tasks.make("GameTheory-v1")
    problems = draw_problems(task, 3, seed=0, split="train")
    built = build_examples(SFTConfig(data=DataConfig(examples=3)), tokenizer, prompter)
    for (prompt, response), problem in zip(built, problems):
        assert prompt == prompter(problem.prompt)
        text = tokenizer.decode(response, skip_special_tokens=True)
        assert task.verify(problem, text).correct


def test_step_batches_walk_reshuffled_epochs_deterministically():
    data = [([i], [i]) for i in range(10)]
    first_epoch = step_batch(data, 5, seed=1, step=1) + step_batch(data, 5, seed=1, step=2)
    assert sorted(first_epoch) == data  # one pass sees every example once
    assert step_batch(data, 5, seed=1, step=3) == step_batch(data, 5, seed=1, step=3)
    assert step_batch(data, 10, seed=1, step=2) != first_epoch  # the next epoch is reshuffled


# --------------------------------------------------------------------------- expert iteration


class ScriptedActor:
    """Answers sample k of problem g correctly iff ``right(g, k)``; two correct wordings so
    that distinct correct answers can be told apart from repeats."""

    def __init__(self, task, problems, prompter, tokenizer, right, model=None):
        self.by_prompt = {tuple(prompter(p.prompt)): (g, p) for g, p in enumerate(problems)}
        self.task, self.tokenizer, self.right, self.model = task, tokenizer, right, model

    def generate(self, prompts, seed, temperature=None):
        out, asked = [], {}
        for ids in prompts:
            g, problem = self.by_prompt[tuple(ids)]
            k = asked[g] = asked.get(g, -1) + 1
            text = ("no idea" if not self.right(g, k) else
                    self.task.answer_text(problem) if k % 2 else
                    "So " + self.task.answer_text(problem))
            tokens = self.tokenizer.encode(text, add_special_tokens=False) + [
                self.tokenizer.eos_token_id]
            out.append(Generation(tokens, [0.0] * len(tokens), text, True))
        return out


def test_expert_iteration_keeps_exactly_the_distinct_correct_answers(micro):
    tokenizer = load_tokenizer(str(micro))
    prompter = Prompter(tokenizer)
    task = tasks.make("GameTheory-v1")
    cfg = SFTConfig(mode="expert_iteration", ei=ExpertIterationConfig(
        questions_per_step=6, samples_per_question=5, max_kept_per_question=2))
    problems = draw_problems(task, 6, seed=11, split="train")
    # problem 0: no correct answer; 1: one; 2: only repeats of one wording; 3-5: many
    right = {0: set(), 1: {4}, 2: {1, 3}}
    actor = ScriptedActor(task, problems, prompter, tokenizer,
                          lambda g, k: k in right.get(g, {0, 1, 2, 3, 4}), model=None)
    attempts, kept = collect(cfg, actor, prompter, task, seed=11)
    assert len(attempts) == 30
    assert all(a.correct == (a.text != "no idea") for a in attempts)
    per_problem = {g: [a.text for a in kept if a.group == g] for g in range(6)}
    assert [len(per_problem[g]) for g in range(6)] == [0, 1, 1, 2, 2, 2]
    assert all(a.correct for a in kept)
    assert all(len(set(texts)) == len(texts) for texts in per_problem.values())
    actor.model = load_model(str(micro), SFTConfig().model, torch.device("cpu"))
    batch, metrics = ei_step_data(cfg, actor, prompter, task, seed=11,
                                  pad_id=tokenizer.pad_token_id)
    assert batch == [(a.prompt_ids, a.response_ids) for a in kept]
    correct = sum(a.correct for a in attempts)
    assert metrics["ei/accuracy"] == metrics["ei/reward_mean"] == correct / 30
    assert metrics["ei/format_rate"] == correct / 30  # "no idea" has no \boxed{}
    assert metrics["ei/kept"] == 8 and metrics["ei/questions_solved"] == 5
    vocab = actor.model.config.vocab_size
    assert 0.0 < metrics["ei/entropy"] < torch.log(torch.tensor(float(vocab))).item()


# --------------------------------------------------------------------------- runs


def small(out_dir, model, **overrides) -> SFTConfig:
    cfg = SFTConfig(steps=3, out_dir=str(out_dir), batch_size=4, checkpoint_every=1,
                    progress=False, data=DataConfig(examples=8),
                    model=dataclasses.replace(SFTConfig().model, name_or_path=str(model)),
                    learner=LearnerConfig(micro_batch_tokens=4096),
                    eval=SFTEvalConfig(every=0))
    return dataclasses.replace(cfg, **overrides)


def mean_nll(model, data, pad_id: int) -> float:
    samples = [Sample(p, r, 0.0, []) for p, r in data]
    with torch.no_grad():
        logp, mask = response_logprobs(model, samples, pad_id)
    return float(-(logp * mask).sum() / mask.sum())


def test_sft_on_gametheory_solutions_lowers_the_embedded_models_loss(tmp_path, one_torch_thread):
    """Three steps over 8 generated GameTheory-v1 solutions, measured on those examples with
    the embedded model before and with the last checkpoint after (measured: 15.6 -> 5.8 nats
    per response token; the embedded model never saw these answer formats)."""
    embedded = resolve_path("embedded")
    cfg = small(tmp_path, embedded, steps=3, batch_size=8, checkpoint_every=3,
                data=DataConfig(examples=8))
    tokenizer = load_tokenizer(embedded)
    data = build_examples(cfg, tokenizer, Prompter(tokenizer))
    before = mean_nll(load_model(embedded, cfg.model, torch.device("cpu")), data,
                      tokenizer.pad_token_id)
    sft(cfg)
    last = tmp_path / "checkpoints" / "step_3"
    after = mean_nll(load_model(str(last), cfg.model, torch.device("cpu")), data,
                     tokenizer.pad_token_id)
    print(f"GameTheory-v1 solutions, mean NLL per response token: {before:.3f} -> {after:.3f}")
    assert after < 0.5 * before
    rows = RunDir(tmp_path).read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert rows[0]["train/loss"] == pytest.approx(before, rel=1e-4)  # the first update's loss


def test_expert_iteration_run_logs_its_metrics_and_evaluates(tmp_path, micro, one_torch_thread):
    cfg = small(tmp_path, micro, steps=2, mode="expert_iteration",
                ei=ExpertIterationConfig(questions_per_step=2, samples_per_question=2),
                actor=dataclasses.replace(SFTConfig().actor, max_new_tokens=6),
                eval=SFTEvalConfig(every=2, tasks=("GameTheory-v1",), task_problems=2))
    sft(cfg)
    rows = {r["step"]: r for r in RunDir(tmp_path).read_metrics()}
    assert sorted(rows) == [0, 1, 2]
    assert "eval/tasks/GameTheory-v1/accuracy" in rows[0]
    assert rows[2]["eval/tasks/GameTheory-v1/problems"] == 2
    for key in ("ei/format_rate", "ei/reward_mean", "ei/accuracy", "ei/kept",
                "ei/questions_solved", "ei/entropy", "train/examples"):
        assert key in rows[1], key
    assert rows[1]["train/examples"] == rows[1]["ei/kept"]


def test_resume_replays_the_steps_an_uninterrupted_run_takes(tmp_path, micro, one_torch_thread):
    sft(small(tmp_path / "whole", micro))
    resumed = tmp_path / "resumed"
    sft(small(resumed, micro, steps=2))
    with (resumed / "metrics.jsonl").open("a") as f:  # killed after logging step 3, before its
        f.write(json.dumps({"step": 3, "train/loss": 99.0}) + "\n")  # checkpoint was written
    sft(small(resumed, micro))
    want, got = RunDir(tmp_path / "whole").read_metrics(), RunDir(resumed).read_metrics()
    assert [r["step"] for r in got] == [1, 2, 3]
    for a, b in zip(want, got):
        assert b["train/loss"] == pytest.approx(a["train/loss"], abs=1e-6)
    with pytest.raises(guard.RunRefused, match="seed: 0 -> 1"):
        sft(small(resumed, micro, steps=4, seed=1))


def test_command_resumes_a_killed_run_to_more_steps(tmp_path, micro, one_torch_thread):
    """Two steps (the command's own config, run in process), a "kill" after step 3 was logged
    but before its checkpoint, then ``python -m spiral.sft ... steps=3`` resumes."""
    out = tmp_path / "run"
    argv = ["+exp=gametheory_sft", f"model.name_or_path={micro}", f"out_dir={out}",
            "data.examples=8", "batch_size=4", "checkpoint_every=1", "eval.every=0",
            "progress=false"]
    sft(checked_config([*argv, "steps=2"]))
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "train/loss": 99.0}) + "\n")
    done = subprocess.run([sys.executable, "-m", "spiral.sft", *argv, "steps=3"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"run directory: {out}" in done.stdout
    rows = RunDir(out).read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["train/examples"] == 4 for r in rows) and rows[2]["train/loss"] != 99.0
    state = json.loads((out / "checkpoints" / "step_3" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["config"]["mode"] == "sft"


# --------------------------------------------------------------------------- config


def test_every_experiment_composes_and_sets_only_what_differs():
    assert experiments() == ["gametheory_ei", "gametheory_sft", "kuhn_expert_sft"]
    base = defaults(SFTConfig)
    for name in experiments():
        cfg = checked_config([f"+exp={name}", "out_dir=x"])
        assert cfg.out_dir == "x"
        for spelling in (f"exp={name}", f"+sft_exp={name}"):
            assert checked_config([spelling, "out_dir=x"]) == cfg
        data = yaml.safe_load((CONFIGS / "sft_exp" / f"{name}.yaml").read_text())
        for group, values in data.items():
            for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
                default = base.get(group) if key is None else base[group].get(key)
                assert value != default, f"{name}: {group}.{key} repeats its default"
    assert checked_config(["+exp=gametheory_ei"]).mode == "expert_iteration"
    assert checked_config(["+exp=kuhn_expert_sft"]).eval.games == ("KuhnPoker-v1",)


@pytest.mark.parametrize("override, says", [
    ("data.kind=foo", "data.kind='foo' is not one of chat, task, games"),
    ("data.examples=0", "data.examples=0: must be >= 1"),
    ("data.bogus=1", "unknown config key 'data.bogus'"),
    ("ei.samples_per_question=0", "ei.samples_per_question=0: must be >= 1"),
    ("mode=imitate", "mode='imitate' is not one of sft, expert_iteration"),
    ("mode=expert_iteration data.kind=games", "needs data.kind=task"),
    ("data.kind=chat", "data.path=None: needs a JSONL file"),
    ("data.kind=chat data.path=/nonexistent/x.jsonl", "cannot be read"),
    ("data.task=Nope-v1", "data.task: unknown task 'Nope-v1'"),
    ("data.kind=games data.game=openspiel/leduc_poker", "registers no optimal player"),
    ("eval.games=[Nope-v1]", "eval.games: unknown game id 'Nope-v1'"),
    ("eval.games=[KuhnPoker-v1] eval.opponents=[nobody]", "eval.opponents='nobody'"),
    ("learner.backend=jax", "learner.backend='jax' is not one of torch, deepspeed"),
    ("actor.backend=vllm", "samples with the hf actor"),
    ("model.name_or_path=/nonexistent", "model.name_or_path='/nonexistent': no such file"),
    ("+exp=nope", "Could not find 'sft_exp/nope'"),
])
def test_bad_configs_are_refused_naming_the_key(override, says):
    with pytest.raises((ConfigError, ChatDataError)) as caught:
        checked_config(["+exp=gametheory_sft", *override.split()])
    assert says in str(caught.value)


def test_a_chat_file_with_a_bad_line_is_refused_before_any_work(tmp_path):
    path = write_lines(tmp_path / "chat.jsonl", [CHAT[0], "{oops"])
    with pytest.raises(ChatDataError, match=f"{re.escape(str(path))}:2: not valid JSON"):
        checked_config(["data.kind=chat", f"data.path={path}"])
    assert checked_config(["data.kind=chat", f"data.path={path}", "data.examples=1"])


def test_every_key_is_frozen_or_may_change_on_resume():
    keys = list(guard.leaves(SFTConfig()))
    assert "data.kind" in keys and "learner.deepspeed.zero_stage" in keys
    for key in keys:
        if key != "resume_force":
            assert listed(key, MUST_NOT_CHANGE) != listed(key, MAY_CHANGE), key


def test_an_sft_run_will_not_resume_a_training_run(tmp_path, micro):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "env": {"games": ["x"]}}))
    with pytest.raises(guard.RunRefused, match="holds a run of another command"):
        sft(small(tmp_path, micro))


def test_sft_with_lora_trains_and_resumes_an_adapter(tmp_path, micro, one_torch_thread):
    """SFT and expert iteration share the learner: with learner.lora.rank > 0 they train an
    adapter, checkpoint it as one, and resume it exactly."""
    from spiral.config import LoraConfig
    from spiral.models import lora

    adapter = LearnerConfig(micro_batch_tokens=4096, lr=1e-2, lora=LoraConfig(rank=4))
    sft(small(tmp_path / "whole", micro, learner=adapter))
    resumed = tmp_path / "resumed"
    sft(small(resumed, micro, steps=2, learner=adapter))
    sft(small(resumed, micro, learner=adapter))
    want, got = RunDir(tmp_path / "whole").read_metrics(), RunDir(resumed).read_metrics()
    assert [r["train/loss"] for r in got] == [r["train/loss"] for r in want]
    assert want[-1]["train/loss"] < want[0]["train/loss"]
    last = resumed / "checkpoints" / "step_3"
    assert lora.is_adapter_folder(last) and not (last / "model.safetensors").exists()
