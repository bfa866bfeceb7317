"""Exact TicTacToe metrics of a policy: optimal-move share and loss rate against perfect play.

A TicTacToe policy maps each of the 4,520 reachable non-terminal boards (9 characters, row-major,
``"X"``, ``"O"`` or ``"."``; X moves first) to probabilities over that board's legal moves
(``"[0]"`` ... ``"[8]"``). It is read off a model like the Kuhn policy in
`spiral.evaluate.games`: ``logprob`` scores the canonical answer of every legal move (the prompt
runs once per board and its KV cache is reused for each answer) and renormalises over the legal
moves; ``sample`` counts parsed moves among sampled answers (for models that reason first).

These numbers follow exactly, with no sampling noise:

- **optimal-move share**: the share of reachable boards where the policy's most likely move
  (ties: the lowest cell) is minimax-optimal (`envs.opponents.best_cells`);
- **loss rate vs perfect play**: the probability that the policy loses against the ``optimal``
  opponent (minimax, ties broken uniformly), by exhaustive recursion over the game tree, for
  each seat and averaged over the two seats. Perfect play cannot lose, so the rest is draws;
- **tactics**: the mean probability of completing a line where the mover can (``take_win``),
  and of taking the opponent's open cell where only the opponent can (``block``): the two
  one-move skills that decide most of a loss against perfect play.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import torch

import envs
from envs.opponents import best_cells
from envs.tictactoe import ACTIONS, EMPTY, LINES, MARKS
from spiral.rollout.actor import Actor
from spiral.rollout.selfplay import Prompter

GAME_ID = "TicTacToe-v1"
Policy = dict[str, dict[str, float]]


# --------------------------------------------------------------------------- positions


def has_line(board: str) -> bool:
    return any(board[a] != EMPTY and board[a] == board[b] == board[c] for a, b, c in LINES)


def mover(board: str) -> int:
    """The player to move on ``board``: 0 (X) after an even number of marks, else 1 (O)."""
    return (9 - board.count(EMPTY)) & 1


def child(board: str, cell: int) -> str:
    return board[:cell] + MARKS[mover(board)] + board[cell + 1 :]


@cache
def reachable_positions() -> tuple[str, ...]:
    """Every reachable board where someone is to move (4,520), by move count, then text."""
    seen, frontier = set(), [EMPTY * 9]
    while frontier:
        seen.update(frontier)
        following = set()
        for board in frontier:
            if not has_line(board) and EMPTY in board:
                following.update(child(board, c) for c, m in enumerate(board) if m == EMPTY)
        frontier = sorted(following - seen)
    live = [b for b in seen if not has_line(b) and EMPTY in b]
    return tuple(sorted(live, key=lambda b: (9 - b.count(EMPTY), b)))


def position_game(board: str):
    """A ``TicTacToe-v1`` match positioned at ``board`` (X and O moves interleaved).

    Marks are only ever added, so a board without a line has no line at any earlier point and
    any interleaving reaches it; the observation depends on the board alone."""
    xs = [c for c, m in enumerate(board) if m == MARKS[0]]
    os = [c for c, m in enumerate(board) if m == MARKS[1]]
    if not 0 <= len(xs) - len(os) <= 1 or has_line(board):
        raise ValueError(f"not a reachable board with a player to move: {board!r}")
    game = envs.make(GAME_ID)
    game.reset(seed=0)
    for index in range(len(xs) + len(os)):
        game.step(ACTIONS[(xs if index % 2 == 0 else os)[index // 2]])
    return game


# --------------------------------------------------------------------------- reading a model


def policy_logprob(model, tokenizer, prompter: Prompter, answer_format,
                   temperature: float = 1.0, positions: tuple[str, ...] | None = None,
                   chunk: int = 32) -> Policy:
    """Move probabilities from the log-probs of each legal move's canonical answer (+ EOS).

    ``answer_format(move, game)`` is the answer text whose probability stands for ``move``, as
    for `spiral.evaluate.games.kuhn_policy_logprob`."""
    boards = positions or reachable_positions()
    games = [position_game(b) for b in boards]
    prompts = [prompter(g.observe(g.current_player())) for g in games]
    encoded: dict[str, list[int]] = {}

    def answer(move: str, game) -> list[int]:
        text = answer_format(move, game)
        if text not in encoded:
            encoded[text] = tokenizer.encode(text, add_special_tokens=False)
        return encoded[text] + [tokenizer.eos_token_id]

    continuations = [[answer(m, g) for m in g.legal_actions()] for g in games]
    totals = shared_prompt_logprobs(model, prompts, continuations, tokenizer.pad_token_id,
                                    temperature, chunk)
    policy = {}
    for board, game, scores in zip(boards, games, totals):
        probs = torch.softmax(torch.tensor(scores, dtype=torch.float64), dim=0).tolist()
        policy[board] = dict(zip(game.legal_actions(), probs))
    return policy


def policy_sampled(actor: Actor, prompter: Prompter, samples: int, seed: int,
                   temperature: float | None = None,
                   positions: tuple[str, ...] | None = None) -> Policy:
    """Frequencies of parsed legal moves among ``samples`` answers per board (uniform if none)."""
    boards = positions or reachable_positions()
    games = [position_game(b) for b in boards]
    prompts = [prompter(g.observe(g.current_player())) for g in games for _ in range(samples)]
    generations = actor.generate(prompts, seed=seed, temperature=temperature)
    policy = {}
    for i, (board, game) in enumerate(zip(boards, games)):
        chunk = generations[i * samples : (i + 1) * samples]
        counts = Counter(game.parse_action(g.text) for g in chunk if g.finished)
        legal = game.legal_actions()
        valid = sum(counts[m] for m in legal)
        policy[board] = {m: counts[m] / valid if valid else 1 / len(legal) for m in legal}
    return policy


@torch.no_grad()
def shared_prompt_logprobs(model, prompts: list[list[int]], continuations: list[list[list[int]]],
                           pad_id: int, temperature: float = 1.0,
                           chunk: int = 32) -> list[list[float]]:
    """Summed log-prob of each continuation of each prompt; each prompt is run once.

    ``continuations[i]`` lists the token sequences scored after ``prompts[i]``. Log-probs are
    ``log_softmax(logits / temperature)``, as the actor samples and the learner recomputes."""
    out: list[list[float]] = []
    for start in range(0, len(prompts), chunk):
        out += _score_chunk(model, prompts[start : start + chunk],
                            continuations[start : start + chunk], pad_id, temperature)
    return out


def _score_chunk(model, prompts, continuations, pad_id: int, temperature: float):
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):  # left-padded: every prompt ends at the last column
        ids[i, width - len(prompt) :] = torch.tensor(prompt)
        mask[i, width - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (P, W)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1)  # (P, V)
    owner = [i for i, conts in enumerate(continuations) for _ in conts]
    flat = [c for conts in continuations for c in conts]
    index = torch.tensor(owner, device=device)  # (N,)
    cache_ = out.past_key_values
    cache_.reorder_cache(index)  # one copy of its prompt's cache per continuation
    length = max(len(c) for c in flat)
    cont = torch.full((len(flat), length), pad_id, dtype=torch.long, device=device)
    cont_mask = torch.zeros((len(flat), length), dtype=torch.long, device=device)
    for j, tokens in enumerate(flat):
        cont[j, : len(tokens)] = torch.tensor(tokens)
        cont_mask[j, : len(tokens)] = 1
    cont_positions = positions[index, -1:] + 1 + torch.arange(length, device=device)  # (N, L)
    logits = model(input_ids=cont, attention_mask=torch.cat([mask[index], cont_mask], dim=1),
                   position_ids=cont_positions, past_key_values=cache_).logits  # (N, L, V)
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    predicted = torch.cat([first[index][:, None], logp[:, :-1]], dim=1)  # token t from t-1
    token_logp = predicted.gather(-1, cont[..., None]).squeeze(-1) * cont_mask  # (N, L)
    totals = token_logp.sum(dim=1).tolist()
    grouped, at = [], 0
    for conts in continuations:
        grouped.append(totals[at : at + len(conts)])
        at += len(conts)
    return grouped


# --------------------------------------------------------------------------- metrics


def most_likely_move(probabilities: dict[str, float]) -> str:
    """The most probable move; ties go to the lowest cell."""
    return max(sorted(probabilities, key=ACTIONS.index), key=lambda m: probabilities[m])


def optimal_move_share(policy: Policy) -> float:
    """Share of reachable boards whose most likely move is minimax-optimal."""
    boards = reachable_positions()
    _check(policy, boards)
    hits = sum(ACTIONS.index(most_likely_move(policy[b])) in best_cells(b) for b in boards)
    return hits / len(boards)


def line_completions(board: str, mark: str) -> set[int]:
    """The free cells that would give ``mark`` a line on ``board``."""
    cells = set()
    for line in LINES:
        marks = [board[c] for c in line]
        if marks.count(mark) == 2 and marks.count(EMPTY) == 1:
            cells.add(line[marks.index(EMPTY)])
    return cells


def tactical_cells(board: str) -> tuple[str, set[int]]:
    """``("take_win", cells)`` where the mover can complete a line, else ``("block", cells)``
    where the opponent could, else ``("", set())``."""
    wins = line_completions(board, MARKS[mover(board)])
    if wins:
        return "take_win", wins
    threats = line_completions(board, MARKS[1 - mover(board)])
    return ("block", threats) if threats else ("", set())


def tactics(policy: Policy) -> dict[str, float]:
    """Mean probability of taking an immediate win (boards that offer one) and of blocking
    the opponent's immediate win (boards that offer the mover none but the opponent one)."""
    _check(policy, reachable_positions())
    found: dict[str, list[float]] = {"take_win": [], "block": []}
    for board in reachable_positions():
        kind, cells = tactical_cells(board)
        if kind:
            found[kind].append(sum(policy[board][ACTIONS[c]] for c in cells))
    return {kind: sum(values) / len(values) for kind, values in found.items()}


def outcome_vs_perfect(policy: Policy, seat: int) -> dict[str, float]:
    """Exact probabilities of ``win``/``draw``/``loss`` for ``policy`` in seat ``seat`` against
    the minimax opponent (uniform among its best moves)."""
    _check(policy, reachable_positions())

    @cache
    def value(board: str) -> tuple[float, float, float]:  # (win, draw, loss) for the policy
        if has_line(board):  # the player who just moved completed a line
            return (1.0, 0.0, 0.0) if mover(board) != seat else (0.0, 0.0, 1.0)
        if EMPTY not in board:
            return (0.0, 1.0, 0.0)
        if mover(board) == seat:
            moves = policy[board].items()
            weighted = [(p, value(child(board, ACTIONS.index(m)))) for m, p in moves]
        else:
            best = best_cells(board)
            weighted = [(1 / len(best), value(child(board, c))) for c in best]
        return tuple(sum(p * v[k] for p, v in weighted) for k in range(3))

    win, draw, loss = value(EMPTY * 9)
    return {"win": win, "draw": draw, "loss": loss}


def tictactoe_metrics(policy: Policy) -> dict[str, float]:
    """``eval/TicTacToe-v1/...``: optimal-move share, exact loss rate vs perfect play, tactics."""
    prefix = f"eval/{GAME_ID}"
    as_x, as_o = outcome_vs_perfect(policy, 0), outcome_vs_perfect(policy, 1)
    skills = tactics(policy)
    return {
        f"{prefix}/optimal_move_share": optimal_move_share(policy),
        f"{prefix}/vs_perfect/loss_rate": (as_x["loss"] + as_o["loss"]) / 2,
        f"{prefix}/vs_perfect/loss_rate_as_x": as_x["loss"],
        f"{prefix}/vs_perfect/loss_rate_as_o": as_o["loss"],
        f"{prefix}/vs_perfect/draw_rate": (as_x["draw"] + as_o["draw"]) / 2,
        f"{prefix}/tactics/take_win": skills["take_win"],
        f"{prefix}/tactics/block": skills["block"],
        f"{prefix}/positions": len(reachable_positions()),
    }


def minimax_policy() -> Policy:
    """Perfect play: uniform over the minimax-optimal moves of every board."""
    policy = {}
    for board in reachable_positions():
        best = best_cells(board)
        policy[board] = {ACTIONS[c]: 1 / len(best) for c in best}
    return policy


def _check(policy: Policy, boards: tuple[str, ...]) -> None:
    missing = [b for b in boards if b not in policy]
    if missing:
        raise ValueError(f"the policy lacks {len(missing)} reachable boards, e.g. {missing[0]!r}")
