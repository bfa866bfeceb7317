"""Evaluation: exact rates with scripted policies, exact game metrics, math transfer, the command.

The model tests use a micro model (built once per session, seconds); benchmark files come from
../shared/data/math and those tests skip when it is absent.
"""

import json
import math
import os
import random
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import envs
from envs import tictactoe_solver as ttt
from envs.exploitability import infostate_positions, kuhn_exploitability
from envs.kuhn import INFOSTATES, infostate_game
from envs.tictactoe import ACTIONS
from envs.tictactoe_solver import best_cells
from spiral.config import ActorConfig, ConfigError, EnvConfig, ModelConfig
from spiral.evaluate import exact, runner
from spiral.evaluate.games import evaluate_opponents, wilson_interval
from spiral.evaluate.math_eval import evaluate_math
from spiral.evaluate.report import markdown
from spiral.models.loading import load_model, load_tokenizer
from spiral.models.logprobs import continuation_logprobs, pad_batch, response_logprobs
from spiral.models.prompting import Prompter
from spiral.records import Sample
from spiral.rollout.actor import Generation, HFActor
from spiral.rollout.openai_opponent import OpenAIError, OpenAIOpponent
from spiral.rollout.opponents import named_opponent
from spiral.rollout.selfplay import play

REPO = Path(__file__).resolve().parents[1]
MATH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "math"
@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs tiny models: see conftest.one_torch_thread."""


def needs_math_data():
    if not (MATH_DIR / "math500.jsonl").is_file():
        pytest.skip(f"math benchmark files not found in {MATH_DIR} (see shared/data/README.md)")


class TextPrompter:
    """Prompt ids are just a key to the observation, so scripted actors can read it."""

    def __init__(self):
        self.seen = {}

    def __call__(self, observation):
        self.seen[len(self.seen)] = observation
        return [len(self.seen) - 1]


class ScriptedActor:
    """Answers ``answer(observation, rng)`` for every prompt of a TextPrompter."""

    def __init__(self, prompter, answer):
        self.prompter, self.answer = prompter, answer

    def generate(self, prompts, seed, temperature=None):
        rng = random.Random(seed)
        return [Generation([1, 2], [-0.1, -0.1], self.answer(self.prompter.seen[p[0]], rng), True)
                for p in prompts]


def board_of(observation):
    lines = observation.splitlines()
    start = lines.index("Board (free cells show their number):") + 1
    cells = [c.strip() for row in lines[start : start + 5 : 2] for c in row.split("|")]
    return "".join(c if c in "XO" else "." for c in cells)


def minimax_answer(observation, rng):
    return f"I play \\boxed{{{ACTIONS[rng.choice(best_cells(board_of(observation)))]}}}"


def random_legal_answer(observation, rng):
    moves = observation.split("Valid moves: ")[1].split("\n")[0].split(", ")
    return f"\\boxed{{{rng.choice(moves)}}}"


def config(**overrides):
    return runner.EvaluateConfig(checkpoint="scripted", **overrides)


# --------------------------------------------------------------------------- game rates


def test_optimal_vs_optimal_tictactoe_is_all_draws():
    prompter = TextPrompter()
    cfg = config(games=("TicTacToe-v1",), opponents=("optimal",), matches=16)
    notes = []
    metrics, episodes, pairs = runner.evaluate_games(ScriptedActor(prompter, minimax_answer),
                                                     prompter, cfg, notes)
    prefix = "eval/TicTacToe-v1/optimal"
    assert pairs == [["TicTacToe-v1", "optimal"]] and notes == []
    assert metrics[f"{prefix}/n"] == 16 and len(episodes) == 16
    assert metrics[f"{prefix}/draw_rate"] == 1.0
    assert metrics[f"{prefix}/win_rate"] == metrics[f"{prefix}/loss_rate"] == 0.0
    assert metrics[f"{prefix}/invalid_rate"] == 0.0
    assert metrics[f"{prefix}/draw_rate_ci_low"] == pytest.approx(wilson_interval(16, 16)[0])
    assert metrics[f"{prefix}/draw_rate_ci_high"] == 1.0
    assert {ep.model_players for ep in episodes} == {(0,), (1,)}  # seats alternate


def test_always_invalid_policy_is_all_invalid():
    prompter = TextPrompter()
    games = ("KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1")
    cfg = config(games=games, opponents=("random", "optimal"), matches=6)
    actor = ScriptedActor(prompter, lambda obs, rng: "I would rather not say.")
    metrics, _, pairs = runner.evaluate_games(actor, prompter, cfg, [])
    assert len(pairs) == 6
    for game_id, opponent in pairs:
        prefix = f"eval/{game_id}/{opponent}"
        assert metrics[f"{prefix}/invalid_rate"] == 1.0, prefix
        assert metrics[f"{prefix}/win_rate"] == metrics[f"{prefix}/draw_rate"] == 0.0


def test_command_rates_equal_training_online_evaluation():
    games, opponents = ("KuhnPoker-v1", "TicTacToe-v1"), ("random", "optimal")
    prompter = TextPrompter()
    actor = ScriptedActor(prompter, random_legal_answer)
    cfg = config(games=games, opponents=opponents, matches=20, seed=5)
    ours, _, _ = runner.evaluate_games(actor, prompter, cfg, [])
    online = evaluate_opponents(actor, prompter, EnvConfig(games=games), games, opponents, 20,
                                seed=5)
    assert ours == online
    assert 0.0 < ours["eval/KuhnPoker-v1/random/win_rate"] < 1.0


def test_pairs_without_that_opponent_are_skipped_with_a_note():
    prompter = TextPrompter()
    cfg = config(games=("openspiel/leduc_poker",), opponents=("random", "optimal"), matches=4)
    notes = []
    actor = ScriptedActor(prompter, random_legal_answer)
    metrics, _, pairs = runner.evaluate_games(actor, prompter, cfg, notes)
    assert pairs == [["openspiel/leduc_poker", "random"]]
    assert metrics["eval/openspiel/leduc_poker/random/n"] == 4
    assert len(notes) == 1 and "optimal" in notes[0] and "leduc" in notes[0]


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="checkpoint is required"):
        runner.to_config({})
    with pytest.raises(ConfigError, match="unknown game id 'Chess-v9'"):
        runner.to_config({"checkpoint": "x", "games": "Chess-v9"})
    with pytest.raises(ConfigError, match="exact_policy='guess'"):
        runner.to_config({"checkpoint": "x", "exact_policy": "guess"})
    with pytest.raises(ConfigError, match="unknown math benchmark 'mathx'"):
        runner.to_config({"checkpoint": "x", "math": ["mathx"]})
    assert runner.to_config({"checkpoint": "x", "games": "TicTacToe-v1"}).games == (
        "TicTacToe-v1",)


# --------------------------------------------------------------------------- TicTacToe metrics


def uniform_policy():
    return {b: {ACTIONS[c]: 1 / b.count(".") for c, m in enumerate(b) if m == "."}
            for b in ttt.reachable_positions()}


def test_reachable_positions_and_perfect_play():
    boards = ttt.reachable_positions()
    assert len(boards) == 4520 and boards[0] == "........."  # 5,478 minus 958 finished boards
    assert ttt.position_game("XO.X.O...").board() == "XO.X.O..."
    with pytest.raises(ValueError):
        ttt.position_game("XX.......")  # O cannot have skipped a turn
    metrics = ttt.tictactoe_metrics(ttt.minimax_policy())
    assert metrics["optimal_move_share"] == 1.0
    assert metrics["vs_perfect/loss_rate"] == 0.0
    assert metrics["vs_perfect/draw_rate"] == pytest.approx(1.0)


def test_exact_loss_rate_matches_simulated_play_against_the_optimal_opponent():
    metrics = ttt.tictactoe_metrics(uniform_policy())
    as_x = ttt.outcome_vs_perfect(uniform_policy(), 0)
    assert as_x["win"] == 0.0 and as_x["loss"] + as_x["draw"] == pytest.approx(1.0)
    assert metrics["vs_perfect/loss_rate_as_x"] < metrics["vs_perfect/loss_rate_as_o"]  # X first
    prompter = TextPrompter()
    n = 400
    episodes = play(ScriptedActor(prompter, random_legal_answer), prompter,
                    EnvConfig(games=("TicTacToe-v1",)), n, seed=11,
                    opponent=named_opponent("optimal"))
    lost = sum(ep.outcome(ep.model_players[0]) == "loss" for ep in episodes) / n
    p = metrics["vs_perfect/loss_rate"]
    assert abs(lost - p) < 4 * (p * (1 - p) / n) ** 0.5


def test_most_likely_move_share_counts_optimal_argmax():
    policy = uniform_policy()  # ties go to the lowest free cell
    lowest_is_best = [b for b in ttt.reachable_positions() if b.index(".") in best_cells(b)]
    assert ttt.optimal_move_share(policy) == len(lowest_is_best) / 4520
    policy["........."] = {"[0]": 0.1, "[4]": 0.2, **{ACTIONS[c]: 0.1 for c in (1, 2, 3, 5)}}
    assert ttt.most_likely_move(policy["........."]) == "[4]"


def test_line_completions_and_tactics():
    assert ttt.line_completions("XX.OO....", "X") == {2}
    assert ttt.line_completions("XX.OO....", "O") == {5}
    assert ttt.line_completions("X.X.X..OO", "X") == {1, 6}  # a row and a diagonal
    assert ttt.line_completions(".........", "X") == set()
    assert ttt.tactical_cells("XX.OO....") == ("take_win", {2})  # X to move wins first
    assert ttt.tactical_cells("XX.O.....") == ("block", {2})  # O to move must block
    assert ttt.tactical_cells("X...O....") == ("", set())

    def tactician(board, avoid=False):  # all mass on (or off) the win/block cells if it can
        target = ttt.tactical_cells(board)[1]
        free = [c for c, m in enumerate(board) if m == "."]
        chosen = [c for c in free if (c in target) != avoid] or free
        return {ACTIONS[c]: (1 / len(chosen) if c in chosen else 0.0) for c in free}

    def share_forced(kind):  # boards of this kind where every free cell is a target cell
        cases = [(cells == {c for c, m in enumerate(b) if m == "."})
                 for b in boards for k, cells in [ttt.tactical_cells(b)] if k == kind]
        return sum(cases) / len(cases)

    boards = ttt.reachable_positions()
    assert ttt.tactics({b: tactician(b) for b in boards}) == {"take_win": 1.0, "block": 1.0}
    avoiding = ttt.tactics({b: tactician(b, avoid=True) for b in boards})
    assert avoiding == {"take_win": share_forced("take_win"), "block": share_forced("block")}
    uniform = uniform_policy()
    before = ttt.tactics(uniform)
    uniform["XX.OO...."] = {ACTIONS[c]: float(c == 2) for c in (2, 5, 6, 7, 8)}  # takes its win
    with_wins = sum(ttt.tactical_cells(b)[0] == "take_win" for b in boards)
    after = ttt.tactics(uniform)
    assert after["take_win"] - before["take_win"] == pytest.approx((1 - 1 / 5) / with_wins)
    assert after["block"] == before["block"]
    assert ttt.tictactoe_metrics(uniform)["tactics/take_win"] == after["take_win"]


def test_tictactoe_logprob_policy_matches_the_learner_log_probs(micro):
    tokenizer = load_tokenizer(str(micro))
    model = load_model(str(micro), ModelConfig(), torch.device("cpu"))
    prompter = Prompter(tokenizer)
    boards = ttt.reachable_positions()[::450]
    answer_text = envs.spec("TicTacToe-v1").answer_text
    positions = {b: ttt.position_game(b) for b in boards}
    policy, coverage = exact.policy_logprob(model, tokenizer, prompter, positions, answer_text,
                                            temperature=0.7, chunk=4)
    samples, index = [], []
    for board in boards:
        game = ttt.position_game(board)
        prompt = prompter(game.observe(game.current_player()))
        for move in game.legal_actions():
            answer = tokenizer.encode(answer_text(move, game), add_special_tokens=False)
            samples.append(Sample(prompt, answer + [tokenizer.eos_token_id], 0.0, []))
            index.append((board, move))
    with torch.no_grad():
        logp, _ = response_logprobs(model, samples, tokenizer.pad_token_id, 0.7)
    totals = dict(zip(index, logp.sum(dim=1).tolist()))
    masses = [sum(math.exp(totals[(b, m)]) for m in policy[b]) for b in boards]
    assert coverage == pytest.approx(sum(masses) / len(masses), rel=1e-4)
    for board in boards:
        scores = torch.tensor([totals[(board, m)] for m in policy[board]], dtype=torch.float64)
        expected = torch.softmax(scores, dim=0).tolist()
        assert list(policy[board].values()) == pytest.approx(expected, abs=1e-5)
        assert sum(policy[board].values()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- Kuhn exploitability


def test_reported_exploitability_is_that_of_the_reported_policy(micro):
    tokenizer = load_tokenizer(str(micro))
    model = load_model(str(micro), ModelConfig(), torch.device("cpu"))
    prompter = Prompter(tokenizer)
    actor = HFActor(model, tokenizer, ActorConfig(max_new_tokens=8, batch_size=512))
    for mode in ("logprob", "sample"):
        cfg = config(games=("KuhnPoker-v1",), exact_policy=mode, exact_samples=4)
        metrics, details = runner.exact_game_metrics(model, tokenizer, actor, prompter, cfg)
        reported = metrics["eval/KuhnPoker-v1/exploitability"]
        assert reported == kuhn_exploitability(details["policies"]["KuhnPoker-v1"])
    again, _ = exact.policy_logprob(model, tokenizer, prompter, infostate_positions(),
                                    envs.spec("KuhnPoker-v1").answer_text)
    cfg = config(games=("KuhnPoker-v1",))
    metrics, _ = runner.exact_game_metrics(model, tokenizer, actor, prompter, cfg)
    assert metrics["eval/KuhnPoker-v1/exploitability"] == pytest.approx(
        kuhn_exploitability(again), abs=1e-9)
    assert 0.0 < metrics["eval/KuhnPoker-v1/exploitability"] < 11 / 24 + 0.3


def boxed(move, game=None):
    return f"\\boxed{{{move}}}"


def test_sampled_kuhn_frequencies_converge_to_the_logprob_policy(micro):
    """A model taught to answer \\boxed{move}, passive moves 4:1: answer frequencies over many
    samples agree with the probabilities its log-probs report."""
    tokenizer = load_tokenizer(str(micro))
    model = load_model(str(micro), ModelConfig(), torch.device("cpu"))
    prompter = Prompter(tokenizer)
    pairs = []
    for key in INFOSTATES:
        game = infostate_game(key)
        prompt = prompter(game.observe(game.current_player()))
        for move in game.legal_actions():
            answer = tokenizer.encode(boxed(move), add_special_tokens=False)
            weight = 4 if move in ("[check]", "[fold]") else 1
            pairs += [(prompt, answer + [tokenizer.eos_token_id])] * weight
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(60):
        input_ids, attention, labels = pad_batch(pairs, tokenizer.pad_token_id)
        model(input_ids=input_ids, attention_mask=attention, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    by_logprob, coverage = exact.policy_logprob(model, tokenizer, prompter,
                                                infostate_positions(), boxed)
    assert all(by_logprob[key]["[check]"] > 0.65 for key in ("J", "Q", "K"))  # far from uniform
    actor = HFActor(model, tokenizer, ActorConfig(max_new_tokens=10, batch_size=2400))
    n = 400
    sampled, sampled_coverage = exact.policy_sampled(actor, prompter, infostate_positions(), n,
                                                     seed=1)
    games = [infostate_game(key) for key in INFOSTATES]
    answers = [[tokenizer.encode(boxed(m), add_special_tokens=False) + [tokenizer.eos_token_id]
                for m in g.legal_actions()] for g in games]
    prompts = [prompter(g.observe(g.current_player())) for g in games]
    scores = continuation_logprobs(model, prompts, answers, tokenizer.pad_token_id)
    for key, legal_scores in zip(INFOSTATES, scores):
        legal_mass = sum(math.exp(s) for s in legal_scores)  # P(an answer is a legal move)
        assert legal_mass > 0.1, key
        for move, p in by_logprob[key].items():
            stderr = (p * (1 - p) / (n * legal_mass)) ** 0.5
            assert abs(sampled[key][move] - p) < 4 * stderr, (key, move)
    assert abs(kuhn_exploitability(sampled) - kuhn_exploitability(by_logprob)) < 0.1
    masses = [sum(math.exp(s) for s in legal_scores) for legal_scores in scores]
    assert coverage == pytest.approx(sum(masses) / len(masses), abs=1e-6)
    assert sampled_coverage > coverage - 0.05  # other legal spellings parse too


def test_exact_coverage_flags_a_policy_read_from_answers_the_model_does_not_give():
    """A real model reasons before it answers: the canonical answers then get almost no
    probability, the logprob policy describes nothing it plays, and the coverage says so.
    The embedded model, pretrained on the canonical answers, gives them most of its mass."""
    from spiral.models.tiny import SHIPPED

    tokenizer = load_tokenizer(str(SHIPPED))
    model = load_model(str(SHIPPED), ModelConfig(), torch.device("cpu"))
    prompter = Prompter(tokenizer)
    own = envs.spec("KuhnPoker-v1").answer_text
    _, canonical = exact.policy_logprob(model, tokenizer, prompter, infostate_positions(), own)
    _, foreign = exact.policy_logprob(
        model, tokenizer, prompter, infostate_positions(),
        lambda move, game: f"Let me think step by step. Zebra {move} quantum.")
    assert foreign < 1e-6 and canonical > 0.5, (foreign, canonical)
    actor = HFActor(model, tokenizer, ActorConfig(max_new_tokens=8))
    metrics, _ = exact.exact_metrics(["KuhnPoker-v1"], mode="logprob", model=model,
                                     tokenizer=tokenizer, actor=actor, prompter=prompter,
                                     samples=1, seed=0)
    assert metrics["eval/KuhnPoker-v1/exact_coverage"] == pytest.approx(canonical)


# --------------------------------------------------------------------------- math


class GoldActor:
    """Answers each math prompt with its gold answer on even samples, nonsense on odd ones."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers = tokenizer, answers

    def generate(self, prompts, seed, temperature=None):
        out = []
        for i, prompt in enumerate(prompts):
            text = self.tokenizer.decode(prompt)
            gold = next(a for problem, a in self.answers.items() if problem in text)
            reply = f"So the answer is \\boxed{{{gold}}}." if i % 2 == 0 else "No idea."
            out.append(Generation(list(range(3 + i % 2)), [0.0] * (3 + i % 2), reply, True))
        return out


def test_math_accuracy_is_pass_at_1_averaged_over_samples(micro, tmp_path, monkeypatch):
    needs_math_data()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = load_tokenizer(str(micro))
    rows = [json.loads(line) for line in (MATH_DIR / "math500.jsonl").open()][:3]
    actor = GoldActor(tokenizer, {r["problem"]: r["answer"] for r in rows})
    notes = []
    metrics = evaluate_math(actor, tokenizer, ["math500"], MATH_DIR, limit=3,
                            samples=2, notes=notes, predictions_dir=tmp_path, workers=1)
    assert metrics["eval/math/math500/accuracy"] == 0.5  # sample 0 right, sample 1 wrong
    assert metrics["eval/math/math500/problems"] == 3 and metrics["eval/math/math500/samples"] == 2
    assert metrics["eval/math/math500/response_tokens_mean"] == 3.5
    written = [json.loads(line) for line in (tmp_path / "math500.jsonl").open()]
    assert [r["verdict"] for r in written] == ["correct", "wrong"] * 3
    assert notes == []


def test_math_eval_end_to_end_with_the_micro_model(micro, tmp_path, monkeypatch):
    needs_math_data()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "math"
    data.mkdir()
    shutil.copy(MATH_DIR / "math500.jsonl", data / "math500.jsonl")  # gsm8k left out
    tokenizer = load_tokenizer(str(micro))
    model = load_model(str(micro), ModelConfig(), torch.device("cpu"))
    actor = HFActor(model, tokenizer, ActorConfig(max_new_tokens=24))  # a game actor
    notes = []
    metrics = evaluate_math(actor, tokenizer, ["math500", "gsm8k"], data, limit=3, samples=2,
                            seed=0, max_new_tokens=12, notes=notes, workers=1)
    assert 0.0 <= metrics["eval/math/math500/accuracy"] <= 1.0
    assert metrics["eval/math/overall/benchmarks"] == 1
    assert metrics["eval/math/overall/accuracy"] == metrics["eval/math/math500/accuracy"]
    assert 1 <= metrics["eval/math/math500/response_tokens_max"] <= 12  # the math limit applied
    assert actor.cfg.max_new_tokens == 24  # the caller's actor is untouched
    assert not any(key.startswith("eval/math/gsm8k") for key in metrics)
    assert len(notes) == 1 and "gsm8k" in notes[0] and "not found" in notes[0]


# --------------------------------------------------------------------------- the command


def test_evaluate_command_end_to_end(micro, tmp_path):
    needs_math_data()
    data = tmp_path / "math"
    data.mkdir()
    shutil.copy(MATH_DIR / "math500.jsonl", data / "math500.jsonl")
    out = tmp_path / "eval"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [f"checkpoint={micro}", "games=[KuhnPoker-v1,TicTacToe-v1]", "opponents=[random]",
            "matches=4", "math=[math500,gsm8k]", "samples=2", "math_limit=2",
            "math_max_new_tokens=8", f"math_dir={data}", f"out_dir={out}"]
    done = subprocess.run([sys.executable, "-m", "spiral.evaluate", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    metrics = report["metrics"]
    assert report["pairs"] == [["KuhnPoker-v1", "random"], ["TicTacToe-v1", "random"]]
    assert metrics["eval/KuhnPoker-v1/random/n"] == 4
    assert 0.0 <= metrics["eval/KuhnPoker-v1/exploitability"] <= 11 / 24 + 0.3
    assert kuhn_exploitability(report["policies"]["KuhnPoker-v1"]) == metrics[
        "eval/KuhnPoker-v1/exploitability"]
    assert metrics["eval/TicTacToe-v1/positions"] == 4520
    assert metrics["eval/math/math500/problems"] == 2
    assert report["math_benchmarks"] == ["math500"]
    assert any("gsm8k" in note for note in report["notes"])
    table = (out / "eval.md").read_text()
    assert table == markdown(report)
    assert "| `KuhnPoker-v1` | `random` | 4 |" in table and "| math500 | 2 | 2 |" in table
    assert "## Notes" in table and "gsm8k" in table
    transcripts = (out / "games" / "step_000000.jsonl").read_text().splitlines()
    assert len(transcripts) == 8
    assert len((out / "math" / "math500.jsonl").read_text().splitlines()) == 4


def test_evaluate_command_without_checkpoint_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "spiral.evaluate", f"out_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "checkpoint is required" in done.stderr


def test_checkpoint_opponent_is_a_frozen_model(micro):
    """``checkpoint:PATH`` plays the model saved at PATH (here the micro model vs itself)."""
    name = f"checkpoint:{micro}"
    opponent = named_opponent(name, "cpu", 24)
    assert opponent.name == name and opponent.for_game("KuhnPoker-v1") is opponent
    tokenizer = load_tokenizer(str(micro))
    actor = HFActor(load_model(str(micro), ModelConfig(), torch.device("cpu")), tokenizer,
                    ActorConfig(max_new_tokens=24))
    metrics, episodes, pairs = runner.evaluate_games(
        actor, Prompter(tokenizer), config(games=("KuhnPoker-v1",), opponents=(name,),
                                           matches=6), [], device="cpu")
    assert pairs == [["KuhnPoker-v1", name]] and metrics[f"eval/KuhnPoker-v1/{name}/n"] == 6
    assert [ep.model_players for ep in episodes] == [(0,), (1,)] * 3  # seats alternate
    for ep in episodes:  # the opponent moved in every match that got past the model's turn
        moved = {p for p, _ in ep.moves}
        assert ep.invalid_player is not None or moved == {0, 1}


# --------------------------------------------------------------------------- openai:MODEL


class FakeChatServer:
    """An OpenAI-compatible endpoint on 127.0.0.1: scripted statuses, then legal moves."""

    def __init__(self, statuses=()):
        self.requests, self.statuses = [], list(statuses)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, dict(self.headers), body))
                status = server.statuses.pop(0) if server.statuses else 200
                observation = body["messages"][-1]["content"]
                reply = {"choices": [{"message": {"role": "assistant", "content":
                         random_legal_answer(observation, random.Random(body.get("seed")))}}]}
                payload = json.dumps(reply if status == 200 else {"error": "busy"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server(monkeypatch):
    server = FakeChatServer()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    yield server
    server.close()


def test_openai_opponent_plays_through_the_rollout(chat_server):
    assert isinstance(named_opponent("openai:fake-model"), OpenAIOpponent)  # the real dispatch
    prompter = TextPrompter()
    cfg = config(games=("KuhnPoker-v1",), opponents=("openai:fake-model",), matches=6)
    actor = ScriptedActor(prompter, random_legal_answer)
    metrics, episodes, _ = runner.evaluate_games(actor, prompter, cfg, [])
    assert metrics["eval/KuhnPoker-v1/openai:fake-model/n"] == 6
    assert all(ep.invalid_player is None for ep in episodes)
    path, headers, body = chat_server.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "fake-model"
    assert headers["Authorization"] == "Bearer sk-test-secret"
    assert body["messages"][0]["role"] == "user" and "Kuhn Poker" in body["messages"][0]["content"]


def test_openai_opponent_retries_busy_servers_and_reports_errors(chat_server):
    chat_server.statuses = [429, 503]
    opponent = OpenAIOpponent("fake-model", backoff_s=0.0)
    assert opponent.complete([{"role": "user", "content": "Valid moves: [a]\n"}], seed=1) == (
        "\\boxed{[a]}")
    assert len(chat_server.requests) == 3
    chat_server.statuses = [400]
    with pytest.raises(OpenAIError, match="HTTP 400") as err:
        opponent.complete([{"role": "user", "content": "Valid moves: [a]\n"}])
    assert "sk-test-secret" not in str(err.value)
    chat_server.statuses = [500] * 3
    with pytest.raises(OpenAIError, match="gave up after 3 attempts"):
        OpenAIOpponent("fake-model", retries=2, backoff_s=0.0).complete(
            [{"role": "user", "content": "Valid moves: [a]\n"}])


def test_openai_opponent_needs_a_key_for_openai_itself(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIOpponent("gpt-4o-mini")
    assert OpenAIOpponent("m", base_url="http://127.0.0.1:9/v1").api_key is None
