"""Play a model in the terminal: ``python -m spiral.play checkpoint=PATH game=KuhnPoker-v1``.

You see your observation (what the model would see in your seat), type a move (``bet``,
``[bet]`` or ``\\boxed{bet}``), and after each of the model's moves you see its full response —
its reasoning and its answer — then the move it played. The model plays exactly as in training:
its observation through its chat template, one sampled answer, the answer's last ``\\boxed{}``
parsed by the game. An answer that is not a legal move (or is cut at ``max_new_tokens``) ends the
match with training's penalty: the model gets ``invalid_penalty``, you ``invalid_other``. A match
still running after the game's turn limit is a draw.

Options are ``key=value`` (``checkpoint=embedded seat=1 matches=3 temperature=0.7``); see
`PlayConfig`. Exit status: 0 done, 1 input ran out, 2 bad option, game or checkpoint (one line on
stderr; ``SPIRAL_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

import envs
from envs.play import human_turn
from spiral.config import ActorConfig, EnvConfig, ModelConfig, from_mapping, ranged
from spiral.errors import ConfigError, check_games, check_model_path, run_command
from spiral.models.prompting import Prompter
from spiral.rollout.actor import Actor, HFActor

Print = Callable[[str], None]
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class PlayConfig:
    checkpoint: str = "embedded"  # HF model dir, hub id, "embedded", or a run dir (latest)
    game: str = "KuhnPoker-v1"  # any registered game id
    seat: int = 0  # your player index (0 moves first)
    seed: int = ranged(0, ">= 0")  # seed of the first match; match i uses seed + i
    matches: int = ranged(1, ">= 1")  # how many matches to play
    temperature: float = ranged(1.0, ">= 0")  # the model's sampling temperature (0: greedy)
    top_p: float = ranged(1.0, "(0, 1]")  # the model's nucleus sampling
    max_new_tokens: int = ranged(1024, ">= 1")  # the model's answer limit (raise for reasoning)
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"  # float32 | bfloat16 | float16
    enable_thinking: bool | None = None  # chat-template flag for Qwen3-style templates


def parse_config(argv: list[str]) -> PlayConfig:
    """``key=value`` arguments (values read as YAML) -> a validated `PlayConfig`: its ranges,
    the game id and the checkpoint path are checked before anything loads."""
    import yaml
    from omegaconf import OmegaConf

    bad = [arg for arg in argv if "=" not in arg]
    if bad:
        raise ConfigError(f"expected key=value arguments, got {bad[0]!r}; keys: "
                          + ", ".join(PlayConfig.__dataclass_fields__))
    for arg in argv:  # name the argument whose value is not YAML
        try:
            OmegaConf.from_dotlist([arg])
        except yaml.YAMLError as err:
            raise ConfigError(f"{arg!r}: the value is not valid YAML "
                              f"({getattr(err, 'problem', None) or err})") from err
    data = OmegaConf.to_container(OmegaConf.from_dotlist(argv))
    cfg = from_mapping(PlayConfig, data)
    if cfg.seat not in (0, 1):
        raise ConfigError(f"seat must be 0 or 1, got {cfg.seat}")
    for key, choices in (("device", DEVICES), ("dtype", ("float32", "bfloat16", "float16"))):
        if getattr(cfg, key) not in choices:
            raise ConfigError(f"{key}={getattr(cfg, key)!r} is not one of {', '.join(choices)}")
    check_games([cfg.game], "game")
    if cfg.checkpoint != "embedded":  # resolving it would build the embedded model
        from spiral.evaluate.runner import resolve_checkpoint

        check_model_path(resolve_checkpoint(cfg.checkpoint), "checkpoint", shown=cfg.checkpoint,
                         run_dir=True)
    return cfg


def model_turn(game: envs.Game, actor: Actor, prompter: Prompter, rng: random.Random,
               print_fn: Print) -> str | None:
    """The model answers its observation; show the response; play and return its move."""
    player = game.current_player()
    generation = actor.generate([prompter(game.observe(player))], seed=rng.randrange(2**31))[0]
    print_fn(f"--- the model (Player {player}) answers:")
    print_fn(generation.text.strip() or "(an empty answer)")
    if not generation.finished:
        print_fn("(the answer was cut at max_new_tokens)")
        return None
    move = game.parse_action(generation.text)
    if move is None:
        return None
    try:
        game.step(move)
    except ValueError:  # an open-ended game can still refuse a parsed move
        return None
    print_fn(f"Player {player} (model) plays {move}")
    return move


def play_match(game: envs.Game, actor: Actor, prompter: Prompter, seat: int,
               rng: random.Random, max_turns: int | None, env: EnvConfig,
               input_fn: Callable[[str], str], print_fn: Print) -> float:
    """Play one reset match, you in ``seat``; returns your return."""
    turns = 0
    returns = None
    while not game.is_terminal() and (max_turns is None or turns < max_turns):
        if game.current_player() == seat:
            human_turn(game, seat, input_fn, print_fn)
        elif model_turn(game, actor, prompter, rng, print_fn) is None:
            print_fn("The model's answer is not a legal move: it loses the match "
                     f"({env.invalid_penalty:+g} to it, {env.invalid_other:+g} to you).")
            returns = [env.invalid_other] * game.num_players
            returns[1 - seat] = env.invalid_penalty
            break
        turns += 1
    print_fn("--- final state ---")
    print_fn(game.render())
    if returns is None and not game.is_terminal():
        print_fn(f"Turn limit ({max_turns}) reached: the match is a draw.")
        returns = [0.0] * game.num_players
    returns = returns if returns is not None else list(game.returns())
    mine, theirs = returns[seat], returns[1 - seat]
    verdict = "You win." if mine > theirs else "You lose." if mine < theirs else "Draw."
    print_fn(f"Returns: you (Player {seat}) {mine:+g}, the model {theirs:+g}. {verdict}")
    return mine


def load_actor(cfg: PlayConfig) -> tuple[HFActor, Prompter]:
    from spiral.evaluate.runner import resolve_checkpoint
    from spiral.models.loading import load_model, load_tokenizer, pick_device

    path = resolve_checkpoint(cfg.checkpoint)
    tokenizer = load_tokenizer(path)
    model = load_model(path, ModelConfig(dtype=cfg.dtype), pick_device(cfg.device))
    actor_cfg = ActorConfig(temperature=cfg.temperature, top_p=cfg.top_p,
                            max_new_tokens=cfg.max_new_tokens, batch_size=1)
    return HFActor(model, tokenizer, actor_cfg), Prompter(tokenizer, cfg.enable_thinking)


def main(argv: list[str] | None = None, input_fn: Callable[[str], str] = input,
         print_fn: Print | None = None) -> int:
    """Run the command; returns the exit status. A mistake in the options is one line on stderr
    (or through ``print_fn`` when one is given)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in argv):
        (print_fn or print)(__doc__)
        return 0
    return run_command(_play, argv, input_fn, print_fn or print, print_fn=print_fn)


def _play(argv: list[str], input_fn: Callable[[str], str], print_fn: Print) -> int:
    cfg = parse_config(argv)
    max_turns = envs.spec(cfg.game).max_turns
    actor, prompter = load_actor(cfg)
    env = EnvConfig(games=(cfg.game,))
    total = 0.0
    for index in range(cfg.matches):
        print_fn(f"=== {cfg.game}, match {index + 1} of {cfg.matches}: you are Player {cfg.seat}")
        game = envs.make(cfg.game)
        game.reset(cfg.seed + index)
        rng = random.Random(f"spiral.play {cfg.seed + index}")
        try:
            total += play_match(game, actor, prompter, cfg.seat, rng, max_turns, env,
                                input_fn, print_fn)
        except EOFError:
            print_fn("\nNo more input; stopping.")
            return 1
    if cfg.matches > 1:
        print_fn(f"Your total return over {cfg.matches} matches: {total:+g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
