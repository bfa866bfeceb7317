"""The replay page: every turn of every transcript, escaped, filterable, rendered by Chromium."""

import json
import os
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from spiral.config import EnvConfig
from spiral.replay import main, outcome, read_transcripts, render_page
from spiral.rollout.actor import Generation
from spiral.rollout.opponents import named_opponent
from spiral.rollout.selfplay import play
from spiral.rollout.transcripts import transcript

INJECTION = "<script>alert('x')</script> & <b>bold</b>"


class TextPrompter:
    def __init__(self):
        self.seen = {}

    def __call__(self, observation):
        self.seen[len(self.seen)] = observation
        return [len(self.seen) - 1]


class ThinkingActor:
    """Reasons in a <think> block (with HTML in it), then answers a random legal move."""

    def __init__(self, prompter):
        self.prompter = prompter

    def generate(self, prompts, seed, temperature=None):
        rng = random.Random(seed)
        out = []
        for p in prompts:
            moves = self.prompter.seen[p[0]].split("Valid moves: ")[1].split("\n")[0].split(", ")
            move = rng.choice(moves)
            text = f"<think>{INJECTION} so {move}</think> final: \\boxed{{{move}}}"
            out.append(Generation([1], [0.0], text, True))
        return out


@pytest.fixture(scope="module")
def games_dir(tmp_path_factory):
    """games/ with self-play at step 10 and games against the optimal opponent at step 20."""
    folder = tmp_path_factory.mktemp("run") / "games"
    folder.mkdir()
    prompter = TextPrompter()
    env = EnvConfig(games=("KuhnPoker-v1", "TicTacToe-v1"))
    for step, opponent in ((10, None), (20, named_opponent("optimal"))):
        episodes = play(ThinkingActor(prompter), prompter, env, 6, seed=step, opponent=opponent)
        with open(folder / f"step_{step:06d}.jsonl", "w") as f:
            for ep in episodes:
                f.write(json.dumps(transcript(ep, step)) + "\n")
    return folder


class Collector(HTMLParser):
    """Tags and text of an HTML document."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_page_holds_every_turn_escaped(games_dir):
    matches = read_transcripts([games_dir])
    assert len(matches) == 12
    page = render_page(matches)
    parsed = Collector()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert [t for t, _ in parsed.tags].count("script") == 1  # only the page's own script
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert text.count(INJECTION) == sum(len(m["turns"]) for m in matches)
    for match in matches:
        for turn in match["turns"]:
            assert turn["observation"] in text
            assert f"final: \\boxed{{{turn['action']}}}" in text
    sections = [attrs for tag, attrs in parsed.tags if tag == "section"]
    assert {s["data-step"] for s in sections} == {"10", "20"}
    assert {s["data-opponent"] for s in sections} == {"self", "optimal"}
    options = {attrs["value"] for tag, attrs in parsed.tags if tag == "option"}
    assert {"KuhnPoker-v1", "TicTacToe-v1", "10", "20", "self", "optimal"} <= options


def test_outcomes_are_the_models_own_or_per_seat_in_self_play():
    base = {"step": 1, "game_id": "g", "moves": [], "turns": [], "invalid_player": None}
    assert outcome({**base, "model_players": [1], "returns": [1.0, -1.0]}) == "loss"
    assert outcome({**base, "model_players": [0], "returns": [1.0, -1.0]}) == "win"
    assert outcome({**base, "model_players": [0, 1], "returns": [-1.0, 1.0]}) == "P1 wins"
    assert outcome({**base, "model_players": [0, 1], "returns": [0.0, 0.0]}) == "draw"
    invalid = {**base, "model_players": [0], "returns": [-1.5, 0.5], "invalid_player": 0}
    assert outcome(invalid) == "invalid"


def test_command_writes_the_page_and_names_bad_lines(games_dir, tmp_path, capsys):
    assert main([str(games_dir)]) == 0
    assert (games_dir / "replay.html").read_text().startswith("<!DOCTYPE html>")
    bad = tmp_path / "step_000001.jsonl"
    bad.write_text('{"step": 1}\nnot json\n')
    assert main([str(bad)]) == 2
    assert f"{bad}:1: not a spiral transcript" in capsys.readouterr().err


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    reason = "no chromium binary found (apt-get install chromium) to render the page"
    if os.environ.get("SPIRAL_REQUIRE_BROWSER"):  # CI installs it: a missing one is a failure
        pytest.fail(reason)
    pytest.skip(reason)


def dump_dom(url, profile):
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_page_renders_and_filters_in_a_headless_browser(games_dir, tmp_path):
    out = tmp_path / "replay.html"
    assert main([str(games_dir), "--out", str(out)]) == 0
    matches = read_transcripts([games_dir])
    dom = dump_dom(out.as_uri(), tmp_path / "profile")
    assert "Showing 12 of 12 matches" in dom  # written by the page's script: it ran
    assert dom.count('<li class="turn') == sum(len(m["turns"]) for m in matches)
    assert "&lt;b&gt;bold&lt;/b&gt;" in dom and "<b>bold</b>" not in dom
    kuhn = sum(m["game_id"] == "KuhnPoker-v1" and m["step"] == 20 for m in matches)
    dom = dump_dom(out.as_uri() + "#game=KuhnPoker-v1&step=20&observations=1",
                   tmp_path / "profile")
    assert f"Showing {kuhn} of 12 matches" in dom
    assert len(re.findall(r"<section [^>]*\bhidden\b", dom)) == 12 - kuhn
    assert len(re.findall(r"<details [^>]*\bopen\b", dom)) == dom.count("<details ") > 0
