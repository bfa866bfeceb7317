"""Game transcripts as one self-contained HTML page: ``python -m spiral.replay PATH...``.

PATH is a transcript file (``out_dir/games/step_000010.jsonl``, one match per line, as
`spiral.rollout.transcripts.transcript` writes them) or a folder of them (all ``*.jsonl``
inside). The page shows, per match, the result and the full move list, then every turn the model
played: the observation it saw, its response (a ``<think>`` block shown apart as reasoning) and
the move it was scored with (or that it was invalid). Drop-downs filter by game, step, opponent
and outcome with a few lines of inline JavaScript (a link can preset them:
``replay.html#game=TicTacToe-v1&outcome=loss&observations=1``). The page needs no network and no
other file.

A transcript is untrusted text: every field that reaches the page is HTML-escaped (text and
attribute values; none goes into the script), and a Content-Security-Policy lets only the page's
own script and style run. A record the page cannot show (a line that is not JSON, such as the
half-written last line of a killed run, a non-integer step, returns that are not two numbers,
model seats that are not 0/1, missing keys, wrong types) is skipped, counted on stderr and listed
on the page; odd values inside a shown record (a turn's player, an action that is not text) are
shown as text. Mistakes on the command line (a missing path, an unreadable file, no transcripts
at all) end with one ``error: ...`` line on stderr and exit status 2; ``SPIRAL_DEBUG=1`` shows
the traceback instead.

Outcomes are the model's own (``win``, ``draw``, ``loss``, ``invalid``) when it played one
seat against a fixed opponent; in self-play they are ``P0 wins``, ``P1 wins``, ``draw`` or
``invalid``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from html import escape
from pathlib import Path

REQUIRED = ("step", "game_id", "model_players", "returns", "moves", "turns")
THINK = re.compile(r"<think>(.*?)(?:</think>|$)(.*)", re.DOTALL)
FILTERS = (("game", "Game"), ("step", "Step"), ("opponent", "Opponent"), ("outcome", "Outcome"))
SURROGATE = re.compile("[\ud800-\udfff]")  # a lone one (JSON allows it) cannot be UTF-8

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


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only the page's own script and style may run, even if some text were ever left unescaped.
POLICY = (f"default-src 'none'; script-src {_digest(SCRIPT)}; style-src {_digest(STYLE)}; "
          "base-uri 'none'; form-action 'none'")


class ReplayError(Exception):
    """A mistake on the command line or in the input files: one line for the user."""


class Malformed(ValueError):
    """A transcript record the page cannot show; it is skipped and counted."""


def read_transcripts(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """Every showable match of the given files and folders, in file order, and one
    ``file:line: reason`` per skipped record (malformed, or a line that is not JSON). A missing
    path, an unreadable file or no transcript at all raise `ReplayError`."""
    matches, skipped = [], []
    for file in _files(paths):
        for number, record in _records(file):
            try:
                if isinstance(record, Malformed):
                    raise record
                matches.append(_check(record))
            except Malformed as err:
                skipped.append(f"{file}:{number}: {err}")
    if not matches:
        first = f" ({len(skipped)} malformed, first: {skipped[0]})" if skipped else ""
        raise ReplayError(f"no transcripts in {', '.join(map(str, paths))}{first}")
    return matches, skipped


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.jsonl") if p.is_file())
            if not found:
                raise ReplayError(f"{path}: no transcript files (*.jsonl) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            what = "not a file or folder" if path.exists() else "no such file or folder"
            raise ReplayError(f"{path}: {what}")
    return files


def _records(file: Path):
    """(line number, parsed JSON) for every non-blank line of ``file``; a line that is not UTF-8
    JSON (e.g. the half-written last line of a killed run) comes as a `Malformed` instead."""
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ReplayError(f"{file}: cannot read ({err.strerror or err})") from err
    for number, raw in enumerate(data.splitlines(), start=1):  # only \n, \r: not U+2028
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, Malformed("not UTF-8 text")
            continue
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            yield number, Malformed(f"not valid JSON ({err.msg}, column {err.colno})")
        except (ValueError, RecursionError) as err:  # a 5000-digit number, deep nesting
            yield number, Malformed(f"not valid JSON ({_brief(str(err))})")


def _check(record: object) -> dict:
    """A clean copy of one record: numbers checked, every shown value as text."""
    if not isinstance(record, dict):
        raise Malformed(f"not a JSON object: {_brief(record)}")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise Malformed(f"not a spiral transcript (missing {', '.join(missing)})")
    for key, kind, name in (("game_id", str, "a string"), ("moves", list, "a list"),
                            ("turns", list, "a list")):
        if not isinstance(record[key], kind):
            raise Malformed(f"{key} is not {name}: {_brief(record[key])}")
    for i, turn in enumerate(record["turns"]):
        if not isinstance(turn, dict):
            raise Malformed(f"turns[{i}] is not an object: {_brief(turn)}")
    invalid = record.get("invalid_player")
    return {
        "step": _step(record["step"]), "game_id": record["game_id"],
        "seed": _text(record.get("seed"), "?"), "opponent": _text(record.get("opponent"), "self"),
        "model_players": _seats(record["model_players"]), "returns": _returns(record["returns"]),
        "invalid_player": None if invalid is None else _text(invalid),
        "truncated": record.get("truncated"),
        "moves": [_move(m) for m in record["moves"]],
        "turns": [{key: _text(turn.get(key), "?" if key in ("player", "turn") else "")
                   for key in ("player", "turn", "observation", "response", "action")}
                  | {"cut": turn.get("cut") is True} for turn in record["turns"]],
    }


def _step(value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed(f"step is not an integer: {_brief(value)}")
    return value


def _seats(value: object) -> list[int]:
    seats = isinstance(value, list) and all(type(seat) is int for seat in value)
    if not seats or value not in ([0], [1], [0, 1], [1, 0]):
        raise Malformed(f"model_players is not one or two seats of 0 and 1: {_brief(value)}")
    return value


def _returns(value: object) -> list[float]:
    ok = isinstance(value, list) and len(value) == 2 and all(
        isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r) for r in value)
    if not ok:
        raise Malformed(f"returns is not two finite numbers: {_brief(value)}")
    return value


def _move(value: object) -> tuple[str, str]:
    if isinstance(value, list) and len(value) == 2:
        return _text(value[0], "?"), _text(value[1])
    return "?", _text(value)


def _text(value: object, default: str = "") -> str:
    """``value`` as shown on the page: a string as is, anything else as JSON."""
    if value is None:
        return default
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _brief(value: object) -> str:
    """A short, ASCII-only echo of a bad value for messages (no terminal control codes)."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    truncated = match.get("truncated")
    if truncated is True:
        parts.append("stopped at the turn limit")
    elif truncated not in (None, False):
        parts.append(f"truncated: {_text(truncated)}")
    return " · ".join(parts)


def render_turn(turn: dict) -> str:
    """One checked turn (see `_check`): every value is text and is escaped here."""
    action = turn["action"]
    invalid = "cut at the length limit" if turn.get("cut") else "invalid move"
    move = f"<code>{escape(action)}</code>" if action else f"<strong>{invalid}</strong>"
    response = turn["response"]
    think = THINK.match(response.strip())
    body = []
    if think:
        body.append('<div class="label">Reasoning</div>'
                    f'<pre class="reasoning">{escape(think.group(1).strip())}</pre>')
        response = think.group(2)
    body.append(f'<div class="label">Response</div><pre class="response">{escape(response)}</pre>')
    css = "turn" if action else "turn invalid"
    return (
        f'<li class="{css}"><div class="turn-head">Turn {escape(turn["turn"])} · '
        f'Player {escape(turn["player"])} → {move}</div>'
        '<details class="observation"><summary>Observation</summary>'
        f'<pre>{escape(turn["observation"])}</pre></details>{"".join(body)}</li>'
    )


def render_match(match: dict) -> str:
    """One checked match (see `_check`)."""
    kind = outcome(match)
    data = {"game": match["game_id"], "step": str(match["step"]),
            "opponent": match["opponent"], "outcome": kind}
    attrs = " ".join(f'data-{k}="{escape(v)}"' for k, v in data.items())
    moves = " · ".join(f"P{escape(p)} {escape(m)}" for p, m in match["moves"]) or "none"
    title = (f"{escape(match['game_id'])} · step {match['step']} · "
             f"seed {escape(match['seed'])} · vs {escape(match['opponent'])}")
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


def _skipped(skipped: list[str]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{escape(reason)}</li>" for reason in skipped)
    return (f'<details class="skipped"><summary>{len(skipped)} malformed record'
            f'{"s" if len(skipped) != 1 else ""} skipped</summary><ul>{items}</ul></details>')


def render_page(matches: list[dict], title: str = "spiral game replay",
                skipped: Sequence[str] = ()) -> str:
    """The whole HTML document for checked ``matches`` (from `read_transcripts`)."""
    values = {
        "game": sorted({m["game_id"] for m in matches}),
        "step": [str(s) for s in sorted({m["step"] for m in matches})],
        "opponent": sorted({m["opponent"] for m in matches}),
        "outcome": sorted({outcome(m) for m in matches}),
    }
    selects = "".join(_select(key, label, values[key]) for key, label in FILTERS)
    body = "".join(render_match(m) for m in matches)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><form>{selects}"
        '<label><input type="checkbox" id="f-observations"> show observations</label></form>'
        f'<p id="shown">{len(matches)} matches</p></header><main>{_skipped(skipped)}{body}</main>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )
    return SURROGATE.sub("\ufffd", page)


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
        return _write(args.paths, args.out or default_output(args.paths), args.title)
    except Exception as err:  # one line for the user, never a traceback
        if os.environ.get("SPIRAL_DEBUG", "0") not in ("", "0"):
            raise
        message = str(err) if isinstance(err, ReplayError) else (
            f"{type(err).__name__}: {err} (SPIRAL_DEBUG=1 shows the traceback)")
        print("error: " + " ".join(message.split()), file=sys.stderr)
        return 2


def _write(paths: list[Path], out: Path, title: str) -> int:
    if any(out.resolve() == path.resolve() for path in paths):
        raise ReplayError(f"{out}: the page would overwrite its input (pass --out)")
    matches, skipped = read_transcripts(paths)
    try:
        out.write_text(render_page(matches, title, skipped), encoding="utf-8")
    except OSError as err:
        raise ReplayError(f"{out}: cannot write the page ({err.strerror or err})") from err
    if skipped:
        print(f"warning: skipped {len(skipped)} malformed record{'s' * (len(skipped) != 1)} "
              f"(listed on the page), first: {skipped[0]}", file=sys.stderr)
    print(f"{len(matches)} matches -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
