"""The replay page: every turn of every transcript, escaped, filterable, rendered by Chromium."""

import json
import os
import random
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from spiral import replay
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
    matches, skipped = read_transcripts([games_dir])
    assert len(matches) == 12 and skipped == []
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


def test_a_cut_answer_is_shown_apart_from_an_invalid_one():
    base = {"player": "0", "turn": "0", "observation": "o", "response": "\\boxed{[ch", "action": ""}
    assert "cut at the length limit" in replay.render_turn({**base, "cut": True})
    plain = replay.render_turn({**base, "cut": False})
    assert "invalid move" in plain and "cut at" not in plain


def test_command_writes_the_page(games_dir, capsys):
    assert main([str(games_dir)]) == 0
    assert (games_dir / "replay.html").read_text().startswith("<!DOCTYPE html>")
    assert capsys.readouterr().err == ""


# Hostile text, put in every field of a transcript: each payload would set window.__pwned (and
# mark <html data-pwned>) if it ever became markup or script.
PAYLOADS = (
    "<script>window.__pwned=1;document.documentElement.dataset.pwned='script'</script>",
    "\"><img src=x onerror=\"window.__pwned=1;document.documentElement.dataset.pwned='img'\">",
    "'><svg onload=window.__pwned=1>x</svg>",
    "</script><script>window.__pwned=1</script><!--",
    "</style><style>body{display:none}</style></textarea></title>",
    "<iframe src=\"javascript:window.__pwned=1\"></iframe> javascript:window.__pwned=1//",
    "<!-- --> ]]> &amp; &lt;b&gt; \\u003c/script> {{x}} ${x}",
    "ünïcødé 🎲 ゲーム \u202eRTL\u202c \u2028\u2029 end",
)
EVIL = " ".join(PAYLOADS)
SHOWN = ("game_id", "seed", "opponent", "invalid_player", "truncated", "moves.player",
         "moves.move", "turn.player", "turn.turn", "observation", "reasoning", "response",
         "action")
TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "form", "label",
        "select", "option", "input", "p", "main", "details", "summary", "ul", "li", "section",
        "h2", "ol", "div", "code", "strong", "pre", "script"}


def evil(field):
    return f"[{field}] {EVIL}"


def hostile_match():
    """Hostile text in every field that is text; the numbers right, so the match is shown."""
    return {
        "step": 7, "game_id": evil("game_id"), "seed": evil("seed"),
        "opponent": evil("opponent"), "model_players": [0], "returns": [1.0, -1.0],
        "invalid_player": evil("invalid_player"), "truncated": evil("truncated"),
        "moves": [[evil("moves.player"), evil("moves.move")]],
        "turns": [{"player": evil("turn.player"), "turn": evil("turn.turn"),
                   "observation": evil("observation"), "action": evil("action"),
                   "response": f"<think>{evil('reasoning')}</think>{evil('response')}"}],
    }


def all_hostile():
    """Hostile text in every field, numbers too: skipped, and the reason shown escaped."""
    turn = dict.fromkeys(("player", "turn", "observation", "response", "action"), EVIL)
    keys = ("step", "game_id", "seed", "opponent", "model_players", "returns",
            "invalid_player", "truncated")
    return {**dict.fromkeys(keys, EVIL), "moves": [[EVIL, EVIL]], "turns": [turn]}


BENIGN = {"step": 1, "game_id": "g", "seed": 0, "opponent": "self", "model_players": [0],
          "returns": [1.0, -1.0], "invalid_player": None, "truncated": False,
          "moves": [[0, "a"]],
          "turns": [{"player": 0, "turn": 0, "observation": "o", "response": "r", "action": "a"}]}


def write_games(folder, *records):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "step_000001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def assert_inert(html, scripts=1):
    """Only the page's own elements, ``scripts`` scripts, no handlers or URLs; the parse."""
    parsed = Collector()
    parsed.feed(html)
    tags = [tag for tag, _ in parsed.tags]
    assert set(tags) <= TAGS, set(tags) - TAGS
    assert tags.count("script") == scripts
    for tag, attrs in parsed.tags:
        bad = [a for a in attrs if a.startswith("on") or a in ("href", "src", "style", "srcdoc")]
        assert not bad, (tag, attrs)
    assert "data-pwned" not in html
    return parsed


def assert_shown_literally(parsed):
    text = "".join(parsed.text)
    for field in SHOWN:
        assert evil(field) in text, field
    sections = [attrs for tag, attrs in parsed.tags if tag == "section"]
    assert evil("game_id") in {s["data-game"] for s in sections}
    assert evil("opponent") in {s["data-opponent"] for s in sections}
    options = {attrs["value"] for tag, attrs in parsed.tags if tag == "option"}
    assert {evil("game_id"), evil("opponent")} <= options
    assert "1 malformed record skipped" in text


def test_hostile_text_in_every_field_stays_text_in_the_html_source(tmp_path):
    matches, skipped = read_transcripts([write_games(tmp_path, hostile_match(), all_hostile())])
    assert len(matches) == 1 and len(skipped) == 1 and "step is not an integer" in skipped[0]
    page = render_page(matches, evil("title"), skipped)
    assert page.count("<script") == page.count("</script") == 1
    for raw in ("<img", "<svg", "<iframe", "<!--", "</style><style>", "<textarea"):
        assert raw not in page
    parsed = assert_inert(page)
    assert_shown_literally(parsed)
    assert evil("title") in "".join(parsed.text)


def test_odd_values_in_a_shown_match_are_text(tmp_path):
    odd = {**BENIGN, "seed": {"k": "<b>s</b>"}, "opponent": 7, "invalid_player": "<b>i</b>",
           "truncated": "yes", "moves": [["<b>"], 5, [0, {"m": "<i>"}]],
           "turns": [{"player": None, "turn": "t<", "observation": 5, "response": ["<b>r</b>"],
                      "action": 3}, {}]}
    matches, skipped = read_transcripts([write_games(tmp_path, odd)])
    parsed = assert_inert(render_page(matches, skipped=skipped))
    text = "".join(parsed.text)
    for shown in ('seed {"k": "<b>s</b>"}', "vs 7", "by Player <b>i</b>", "truncated: yes",
                  'P? ["<b>"]', "P? 5", 'P0 {"m": "<i>"}', "Turn t< · Player ? → 3",
                  '["<b>r</b>"]', "Turn ? · Player ? → invalid move"):
        assert shown in text, shown


def test_lone_surrogates_and_control_characters_still_make_a_page(tmp_path, capsys):
    folder = write_games(tmp_path / "g", {**BENIGN, "game_id": "a\ud800b\x00c\x1b[31m"})
    assert main([str(folder), "--title", "t\udcff"]) == 0
    page = (folder / "replay.html").read_text(encoding="utf-8")
    assert "a\ufffdb\x00c\x1b[31m" in page and "t\ufffd" in page


MISSING = object()


@pytest.mark.parametrize("change, reason", [
    ({"step": "ten"}, 'step is not an integer: "ten"'), ({"step": None}, "step is not"),
    ({"step": True}, "step is not"), ({"step": 1.5}, "step is not"),
    ({"returns": ["1", "-1"]}, "returns is not two finite numbers"),
    ({"returns": [1.0]}, "returns is not"), ({"returns": [float("nan"), 0]}, "returns is not"),
    ({"returns": "<script>"}, 'returns is not two finite numbers: "<script>"'),
    ({"model_players": ["0"]}, "model_players is not"), ({"model_players": [2]}, "model_"),
    ({"model_players": [True]}, "model_"), ({"model_players": [0, 0]}, "model_players is not"),
    ({"game_id": 5}, "game_id is not a string"), ({"moves": "a"}, "moves is not a list"),
    ({"turns": {}}, "turns is not a list"), ({"turns": [1]}, "turns[0] is not an object"),
    ({"step": MISSING, "turns": MISSING}, "not a spiral transcript (missing step, turns)"),
    ([1, 2], "not a JSON object: [1, 2]"),
])
def test_malformed_records_are_skipped_and_counted(tmp_path, capsys, change, reason):
    bad = [1, 2] if isinstance(change, list) else {
        k: v for k, v in {**BENIGN, **change}.items() if v is not MISSING}
    folder = write_games(tmp_path / "games", BENIGN, bad)
    assert main([str(folder)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: skipped 1 malformed record"), err
    assert f"step_000001.jsonl:2: {reason}" in err[0]
    parsed = assert_inert((folder / "replay.html").read_text())
    text = "".join(parsed.text)
    assert "1 malformed record skipped" in text and reason in text
    assert [tag for tag, _ in parsed.tags].count("section") == 1


def test_a_half_written_last_line_is_skipped_not_fatal(tmp_path, capsys):
    """A run killed while writing a transcript leaves a cut line: the rest still shows."""
    folder = write_games(tmp_path / "games", BENIGN)
    with open(folder / "step_000001.jsonl", "a") as f:
        f.write(json.dumps(BENIGN)[:40])
    assert main([str(folder)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 malformed record" in err and "step_000001.jsonl:2: not valid JSON" in err
    assert "1 malformed record skipped" in "".join(
        assert_inert((folder / "replay.html").read_text()).text)


def _unreadable(tmp_path, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "read_bytes", refuse)
    return [str(write_games(tmp_path / "g", BENIGN))]


def _lines(text):
    def setup(tmp_path, monkeypatch):
        path = tmp_path / "step_000001.jsonl"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return [str(path)]
    return setup


@pytest.mark.parametrize("setup, message", [
    (lambda tmp, _: [str(tmp / "nope")], "nope: no such file or folder"),
    (lambda tmp, _: [str(tmp)], "no transcript files (*.jsonl) in this folder"),
    (_lines("\n\n"), "no transcripts in"),
    (_lines('{"step": 1}\n'), "(1 malformed, first: "),
    (_lines(json.dumps(BENIGN)[:-3]), "step_000001.jsonl:1: not valid JSON"),
    (_lines(b'{"step": "\xff"}\n'), "step_000001.jsonl:1: not UTF-8 text"),
    (_lines("1" * 5000), ":1: not valid JSON"), (_lines("[" * 100000), ":1: not valid JSON"),
    (_unreadable, "step_000001.jsonl: cannot read (Permission denied)"),
    (lambda tmp, _: [str(write_games(tmp / "g", BENIGN)), "--out", str(tmp / "x" / "y.html")],
     "y.html: cannot write the page (No such file or directory)"),
    (lambda tmp, _: [str(write_games(tmp / "g", BENIGN) / "step_000001.jsonl"), "--out",
                     str(tmp / "g" / "step_000001.jsonl")], "would overwrite its input"),
])
def test_command_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, setup,
                                                  message):
    assert main(setup(tmp_path, monkeypatch)) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert message in err and "Traceback" not in err


def test_unexpected_errors_are_one_line_unless_spiral_debug(tmp_path, monkeypatch, capsys):
    folder = str(write_games(tmp_path, BENIGN))

    def broken(*args):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setattr(replay, "render_page", broken)
    assert main([folder]) == 2
    assert capsys.readouterr().err == ("error: RuntimeError: boom second line "
                                       "(SPIRAL_DEBUG=1 shows the traceback)\n")
    monkeypatch.setenv("SPIRAL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main([folder])


def test_the_command_line_shows_no_traceback(tmp_path):
    command = [sys.executable, "-m", "spiral.replay", str(tmp_path / "nope")]
    env = {k: v for k, v in os.environ.items() if k != "SPIRAL_DEBUG"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path / 'nope'}: no such file or folder\n"
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**env, "SPIRAL_DEBUG": "1"})
    assert done.returncode == 1 and "Traceback" in done.stderr


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    reason = "no chromium binary found (apt-get install chromium) to render the page"
    if os.environ.get("SPIRAL_REQUIRE_BROWSER"):  # CI installs it: a missing one is a failure
        pytest.fail(reason)
    pytest.skip(reason)


def dump_dom(url, profile):
    done = subprocess.run(  # virtual time: load events and timers (the probe's) run first
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=3000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_page_renders_and_filters_in_a_headless_browser(games_dir, tmp_path):
    out = tmp_path / "replay.html"
    assert main([str(games_dir), "--out", str(out)]) == 0
    matches, _ = read_transcripts([games_dir])
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


PROBE = ("<script>document.documentElement.dataset.probe = typeof window.__pwned;"
         "addEventListener('load', () => setTimeout(() => {"
         "document.documentElement.dataset.late = typeof window.__pwned; }, 50));</script>")
RAW = "<img src=x onerror=\"window.__pwned=1;document.documentElement.dataset.pwned='img'\">"


def test_hostile_transcript_runs_no_script_in_a_headless_browser(tmp_path):
    folder = write_games(tmp_path / "games", hostile_match(), BENIGN, all_hostile())
    out, profile = tmp_path / "replay.html", tmp_path / "profile"
    assert main([str(folder), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    # As written (with its Content-Security-Policy), preset by the link to the hostile game.
    dom = dump_dom(out.as_uri() + "#game=" + quote(evil("game_id"), safe=""), profile)
    assert "Showing 1 of 2 matches" in dom  # the page's own script ran and matched the game
    assert_shown_literally(assert_inert(dom))
    # Without the policy, escaping alone keeps every payload inert: the probe sees no __pwned.
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert bare != page
    probed = tmp_path / "bare.html"
    probed.write_text(bare.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = dump_dom(probed.as_uri(), profile)
    assert 'data-probe="undefined"' in dom and 'data-late="undefined"' in dom
    assert "Showing 2 of 2 matches" in dom
    assert_shown_literally(assert_inert(dom, scripts=2))
    # Controls: the probe sees raw markup that runs; the policy stops it.
    probed.write_text(bare.replace("</body>", RAW + PROBE + "</body>"), encoding="utf-8")
    dom = dump_dom(probed.as_uri(), profile)
    assert 'data-late="number"' in dom and 'data-pwned="img"' in dom
    probed.write_text(page.replace("</body>", RAW + "</body>"), encoding="utf-8")
    dom = dump_dom(probed.as_uri(), profile)
    assert "Showing 2 of 2 matches" in dom and "data-pwned" not in dom
