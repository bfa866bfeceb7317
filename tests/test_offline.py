"""With HF_HUB_OFFLINE=1, evaluating the shipped embedded model never touches the network.

Every socket connection and name lookup is recorded and refused while the evaluation runs, so
the test fails on any attempt, even one that the code would catch and turn into a note.
"""

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from spiral.config import ActorConfig, EnvConfig, ModelConfig
from spiral.evaluate.games import evaluate_opponents
from spiral.evaluate.math_eval import evaluate_math
from spiral.models.loading import load_model, load_tokenizer
from spiral.models.prompting import Prompter
from spiral.models.tiny import SHIPPED
from spiral.rollout.actor import HFActor

MATH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "math"


@pytest.fixture
def no_network(monkeypatch):
    """Refuse (and record) every connection and DNS lookup; loopback is refused too."""
    attempts = []

    def refuse(kind):
        def blocked(*args, **kwargs):
            attempts.append((kind, args[1:] if kind == "connect" else args[:1]))
            raise OSError(f"network blocked by the test ({kind})")
        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts


def test_offline_evaluation_of_the_embedded_model_makes_no_connection(no_network, tmp_path,
                                                                      one_torch_thread):
    if not (MATH_DIR / "math500.jsonl").is_file():
        pytest.skip(f"math benchmark files not found in {MATH_DIR} (see shared/data/README.md)")
    data = tmp_path / "math"
    data.mkdir()
    shutil.copy(MATH_DIR / "math500.jsonl", data / "math500.jsonl")  # aime24 left to the "hub"
    tokenizer = load_tokenizer(str(SHIPPED))
    model = load_model(str(SHIPPED), ModelConfig(), torch.device("cpu"))
    actor = HFActor(model, tokenizer, ActorConfig(max_new_tokens=24))
    notes = []
    metrics = evaluate_math(actor, tokenizer, ["math500", "aime24"], data, limit=2, samples=1,
                            max_new_tokens=16, notes=notes, predictions_dir=tmp_path, workers=1)
    games = evaluate_opponents(actor, Prompter(tokenizer), EnvConfig(), ["KuhnPoker-v1"],
                               ["random"], 4, seed=0)
    assert no_network == []
    assert metrics["eval/math/math500/problems"] == 2
    assert 0.0 <= metrics["eval/math/math500/accuracy"] <= 1.0
    graded = [json.loads(line) for line in (tmp_path / "math500.jsonl").open()]
    assert len(graded) == 2 and all(r["verdict"] in ("correct", "wrong") for r in graded)
    assert len(notes) == 1 and "aime24" in notes[0]  # missing locally, and the hub is off
    assert games["eval/KuhnPoker-v1/random/n"] == 4


def test_the_guard_catches_a_connection(no_network):
    """The guard itself works: a hub lookup made anyway is recorded."""
    with pytest.raises(OSError):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert no_network and no_network[0][0] == "create_connection"
