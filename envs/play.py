"""Play a registered game in the terminal against a fixed opponent.

    python -m envs.play KuhnPoker-v1 --opponent optimal --seat 1 --seed 3 --games 2
    python -m envs.play openspiel/leduc_poker

You see your observation (what a policy would see), type a move (``bet``, ``[bet]`` or
``\\boxed{bet}`` all work), and watch the opponent answer. A line that is not a legal move is
refused and the valid moves are shown again. Each match ends with the full state, ``render()``,
and the returns. As in self-play, a match still running after the game's ``max_turns`` moves
ends as a draw. An unknown game id prints the registered ids and exits with status 2.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable

import envs
from envs.opponents import Opponent, make_opponent

Print = Callable[[str], None]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m envs.play", description=__doc__.split("\n")[0])
    parser.add_argument("game", help="a registered game id, e.g. KuhnPoker-v1 or openspiel/nim")
    parser.add_argument("--opponent", default="random", choices=("random", "optimal"))
    parser.add_argument("--seat", type=int, default=0, choices=(0, 1), help="your player index")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first match")
    parser.add_argument("--games", type=int, default=1, help="how many matches to play")
    return parser.parse_args(argv)


def main(
    argv: list[str] | None = None,
    input_fn: Callable[[str], str] = input,
    print_fn: Print = print,
) -> int:
    """Run the command; returns the exit status (0 done, 1 input ran out, 2 bad game/opponent)."""
    args = parse_args(argv)
    try:
        max_turns = envs.spec(args.game).max_turns
        opponent = make_opponent(args.opponent, args.game)
    except (KeyError, ValueError) as err:
        print_fn(str(err.args[0]) if err.args else repr(err))
        return 2
    total = 0.0
    for index in range(args.games):
        print_fn(f"=== {args.game}, match {index + 1} of {args.games}: you are Player {args.seat}")
        game = envs.make(args.game)
        game.reset(args.seed + index)
        opponent_rng = random.Random(f"envs.play opponent {args.seed + index}")
        try:
            total += play_match(
                game, opponent, args.seat, opponent_rng, max_turns, input_fn, print_fn
            )
        except EOFError:
            print_fn("\nNo more input; stopping.")
            return 1
    if args.games > 1:
        print_fn(f"Your total return over {args.games} matches: {total:+g}")
    return 0


def play_match(
    game: envs.Game,
    opponent: Opponent,
    seat: int,
    rng: random.Random,
    max_turns: int | None,
    input_fn: Callable[[str], str],
    print_fn: Print,
) -> float:
    """Play one reset match to the end; return the human's return."""
    turns = 0
    while not game.is_terminal() and (max_turns is None or turns < max_turns):
        player = game.current_player()
        if player == seat:
            human_turn(game, seat, input_fn, print_fn)
        else:
            text = opponent.act(game, rng)
            action = game.parse_action(text)
            if action is None:
                raise RuntimeError(f"opponent {opponent.name!r} answered an illegal move: {text!r}")
            game.step(action)
            print_fn(f"Player {player} (opponent, {opponent.name}) plays {action}")
        turns += 1
    print_fn("--- final state ---")
    print_fn(game.render())
    returns = game.returns() if game.is_terminal() else (0.0,) * game.num_players
    if not game.is_terminal():
        print_fn(f"Turn limit ({max_turns}) reached: the match is a draw.")
    mine, theirs = returns[seat], returns[1 - seat]
    outcome = "You win." if mine > theirs else "You lose." if mine < theirs else "Draw."
    print_fn(f"Returns: you (Player {seat}) {mine:+g}, opponent {theirs:+g}. {outcome}")
    return mine


def human_turn(game: envs.Game, seat: int, input_fn: Callable[[str], str], print_fn: Print):
    """Show the human's observation and read lines until one is a legal move; play it."""
    print_fn(game.observe(seat))
    while True:
        text = input_fn("Your move: ")
        action = game.parse_action(text)
        if action is not None:
            try:
                game.step(action)
                print_fn(f"Player {seat} (you) plays {action}")
                return
            except ValueError as err:  # an open-ended game can still refuse a parsed move
                print_fn(f"Invalid move: {err}")
                continue
        legal = game.legal_actions()
        hint = f"Valid moves: {', '.join(legal)}" if legal else "Answer in the bracketed form."
        print_fn(f"Invalid move {text.strip()!r}. {hint}")


if __name__ == "__main__":
    raise SystemExit(main())
