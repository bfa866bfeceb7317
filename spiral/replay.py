"""Game transcripts as one self-contained HTML page: ``python -m spiral.replay PATH...``.

PATH is a transcript file (``out_dir/games/step_000010.jsonl``, one match per line, as
`spiral.rollout.transcripts.transcript` writes them) or a folder of them (all ``*.jsonl``
inside). The page shows, per match, the result and the full move list, then every turn the model
played: the observation it saw, its response (a ``<think>`` block shown apart as reasoning) and
the move it was scored with (or that it was invalid). Drop-downs filter by game, step, opponent
and outcome with a few lines of inline JavaScript (a link can preset them:
``replay.html#game=TicTacToe-v1&outcome=loss&observations=1``); every text from a transcript is
HTML-escaped. The page needs no network and no other file.

Outcomes are the model's own (``win``, ``draw``, ``loss``, ``invalid``) when it played one
seat against a fixed opponent; in self-play they are ``P0 wins``, ``P1 wins``, ``draw`` or
``invalid``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from html import escape
from pathlib import Path

REQUIRED = ("step", "game_id", "model_players", "returns", "moves", "turns")
THINK = re.compile(r"<think>(.*?)(?:</think>|$)(.*)", re.DOTALL)
FILTERS = (("game", "Game"), ("step", "Step"), ("opponent", "Opponent"), ("outcome", "Outcome"))

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { position: sticky; top: 0; background: #1d2330; color: #fff; padding: 10px 20px; }
header h1 { font-size: 18px; margin: 0 0 6px; }
header label { margin-right: 14px; }
header select { margin-left: 4px; }
#shown { margin: 6px 0 0; color: #c9d1e0; }
main { padding: 12px 20px; max-width: 1100px; }
section.match { background: #fff; border-radius: 8px; margin: 12px 0; padding: 10px 16px;
  box-shadow: 0 1px 3px rgba(0,0,0,.12); }
section.match h2 { font-size: 15px; margin: 4px 0; }
.result { font-weight: 600; margin: 4px 0; }
.outcome-win, .outcome-P0-wins { color: #1a7f37; }
.outcome-loss, .outcome-P1-wins { color: #b42318; }
.outcome-invalid { color: #9a6700; }
.moves { color: #555; margin: 4px 0 8px; }
ol.turns { padding-left: 0; list-style: none; margin: 0; }
li.turn { border-left: 3px solid #8aa4d6; margin: 8px 0; padding: 4px 10px; background: #f8f9fc; }
li.turn.invalid { border-left-color: #d4a72c; }
.turn-head { font-weight: 600; }
pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0; padding: 6px 8px;
  background: #eef1f6; border-radius: 4px; font: 12.5px/1.4 ui-monospace, monospace; }
pre.reasoning { background: #f3eefb; }
.label { font-size: 12px; color: #666; text-transform: uppercase; letter-spacing: .04em; }
code { background: #e6ebf4; padding: 0 4px; border-radius: 3px; }
"""

SCRIPT = """
const matches = Array.from(document.querySelectorAll("section.match"));
const keys = ["game", "step", "opponent", "outcome"];
function applyFilters() {
  let shown = 0;
  for (const match of matches) {
    const keep = keys.every(k => {
      const wanted = document.getElementById("f-" + k).value;
      return wanted === "" || match.dataset[k] === wanted;
    });
    match.hidden = !keep;
    if (keep) shown += 1;
  }
  document.getElementById("shown").textContent =
    "Showing " + shown + " of " + matches.length + " matches";
}
function toggleObservations(open) {
  document.querySelectorAll("details.observation").forEach(d => { d.open = open; });
}
const initial = new URLSearchParams(location.hash.slice(1));  // e.g. #game=TicTacToe-v1
for (const k of keys) {
  const select = document.getElementById("f-" + k);
  if (Array.from(select.options).some(o => o.value === initial.get(k))) {
    select.value = initial.get(k);
  }
  select.addEventListener("change", applyFilters);
}
const observations = document.getElementById("f-observations");
observations.checked = initial.get("observations") === "1";
observations.addEventListener("change", e => toggleObservations(e.target.checked));
toggleObservations(observations.checked);
applyFilters();
"""


def read_transcripts(paths: list[Path]) -> list[dict]:
    """Every match of the given files and folders, in file order; errors name file and line."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.jsonl"))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no transcript file or folder at {path}")
    matches = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                matches.append(_parse(line, f"{file}:{number}"))
    return matches


def _parse(line: str, where: str) -> dict:
    try:
        match = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
    if not isinstance(match, dict):
        raise ValueError(f"{where}: expected a JSON object")
    missing = [key for key in REQUIRED if key not in match]
    if missing:
        raise ValueError(f"{where}: not a spiral transcript (missing {', '.join(missing)})")
    return match


def outcome(match: dict) -> str:
    """The match result used for filtering (see the module docstring)."""
    if match.get("invalid_player") is not None:
        return "invalid"
    returns, seats = match["returns"], match["model_players"]
    if len(seats) == 1:
        mine, theirs = returns[seats[0]], returns[1 - seats[0]]
        return "win" if mine > theirs else "loss" if mine < theirs else "draw"
    if returns[0] == returns[1]:
        return "draw"
    return "P0 wins" if returns[0] > returns[1] else "P1 wins"


def result_text(match: dict) -> str:
    seats = match["model_players"]
    who = "self-play" if len(seats) != 1 else f"model is Player {seats[0]}"
    returns = " / ".join(f"{r:+g}" for r in match["returns"])
    parts = [f"{outcome(match)} ({who})", f"returns {returns}"]
    if match.get("invalid_player") is not None:
        parts.append(f"invalid move by Player {match['invalid_player']}")
    if match.get("truncated"):
        parts.append("stopped at the turn limit")
    return " · ".join(parts)


def render_turn(turn: dict) -> str:
    action = turn.get("action")
    move = f"<code>{escape(action)}</code>" if action else "<strong>invalid move</strong>"
    response = turn.get("response") or ""
    think = THINK.match(response.strip())
    body = []
    if think:
        body.append('<div class="label">Reasoning</div>'
                    f'<pre class="reasoning">{escape(think.group(1).strip())}</pre>')
        response = think.group(2)
    body.append(f'<div class="label">Response</div><pre class="response">{escape(response)}</pre>')
    css = "turn" if action else "turn invalid"
    return (
        f'<li class="{css}"><div class="turn-head">Turn {turn.get("turn", "?")} · '
        f'Player {turn.get("player", "?")} → {move}</div>'
        '<details class="observation"><summary>Observation</summary>'
        f'<pre>{escape(turn.get("observation") or "")}</pre></details>{"".join(body)}</li>'
    )


def render_match(match: dict) -> str:
    kind = outcome(match)
    data = {"game": match["game_id"], "step": str(match["step"]),
            "opponent": str(match.get("opponent", "self")), "outcome": kind}
    attrs = " ".join(f'data-{k}="{escape(v)}"' for k, v in data.items())
    moves = " · ".join(f"P{p} {escape(str(m))}" for p, m in match["moves"]) or "none"
    title = (f"{escape(match['game_id'])} · step {escape(str(match['step']))} · "
             f"seed {escape(str(match.get('seed', '?')))} · vs {escape(data['opponent'])}")
    turns = "".join(render_turn(t) for t in match["turns"])
    css = "outcome-" + kind.replace(" ", "-")
    return (
        f'<section class="match" {attrs}><h2>{title}</h2>'
        f'<p class="result {css}">{escape(result_text(match))}</p>'
        f'<p class="moves">Moves: {moves}</p><ol class="turns">{turns}</ol></section>'
    )


def _select(key: str, label: str, values: list[str]) -> str:
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return (f'<label>{label}<select id="f-{key}"><option value="">all</option>'
            f"{options}</select></label>")


def render_page(matches: list[dict], title: str = "spiral game replay") -> str:
    """The whole HTML document for ``matches``."""
    values = {
        "game": sorted({m["game_id"] for m in matches}),
        "step": [str(s) for s in sorted({int(m["step"]) for m in matches})],
        "opponent": sorted({str(m.get("opponent", "self")) for m in matches}),
        "outcome": sorted({outcome(m) for m in matches}),
    }
    selects = "".join(_select(key, label, values[key]) for key, label in FILTERS)
    body = "".join(render_match(m) for m in matches)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><form>{selects}"
        '<label><input type="checkbox" id="f-observations"> show observations</label></form>'
        f'<p id="shown">{len(matches)} matches</p></header><main>{body}</main>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def default_output(paths: list[Path]) -> Path:
    first = paths[0]
    return first / "replay.html" if first.is_dir() else first.with_suffix(".html")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiral.replay",
                                     description="Write game transcripts as one HTML page.")
    parser.add_argument("paths", nargs="+", type=Path, help="transcript .jsonl files or folders")
    parser.add_argument("--out", type=Path, help="the HTML file (default: beside the input)")
    parser.add_argument("--title", default="spiral game replay")
    args = parser.parse_args(argv)
    try:
        matches = read_transcripts(args.paths)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or default_output(args.paths)
    out.write_text(render_page(matches, args.title), encoding="utf-8")
    print(f"{len(matches)} matches -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
