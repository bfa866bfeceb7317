"""Shared fixtures: a micro model built once per test session, one torch thread for tiny work.

torch and spiral are imported inside the fixtures, so the games' tests run without torch."""

import pytest


@pytest.fixture(scope="session")
def micro(tmp_path_factory):
    """A micro model (seconds to build): the whole pipeline, none of the embedded model's cost."""
    from spiral.models.tiny import TinySpec, build

    spec = TinySpec(hidden_size=32, intermediate_size=64, num_layers=1, sft_examples=60,
                    sft_steps=6, sft_batch=8, corpus_games=20)
    path = tmp_path_factory.getbasetemp() / "micro-eval-model"
    if not (path / "spiral_embedded.json").exists():
        build(path, spec, log=lambda _: None)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: one thread is faster than two fighting over a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
