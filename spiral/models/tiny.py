"""The embedded model: a tiny Qwen3-architecture LM and BPE tokenizer that spiral builds offline.

Why: a fresh machine with no model hub must still train end to end in minutes. ``build`` makes,
deterministically from a seed:

1. a byte-level BPE tokenizer (``tokenizers``) trained on the built-in games' observations and
   moves plus synthetic math text, wrapped as a transformers fast tokenizer with ChatML special
   tokens and a chat template, so ``apply_chat_template`` works as with Qwen models;
2. a ``Qwen3ForCausalLM`` (~1M parameters, untied embeddings) from random init;
3. *format-only* pretraining on transcripts of uniformly random legal play in every game of
   ``TinySpec.games``: prompt = the chat-templated observation, response = the game's
   canonical answer for the move (``envs.GameSpec.answer``; by default ``\\boxed{<move>}``),
   then ``<|im_end|>``. The model learns the answer format and which moves are legal, and because
   the moves are uniform it learns no strategy: strategy must come from self-play. In Kuhn Poker
   the answer opens with a brief thought that restates the player's seat and card and names the
   move right after the card ("I am Player 1. Q calls. \\boxed{[call]}"); the move is still
   uniformly random, so this carries no strategy. It matters for a 1M-parameter model: when the
   move is chosen at the card's own token, the card is in the residual stream where the move is
   predicted, and self-play learns card-dependent play at once. With the card several tokens away,
   the model first learns card-blind play and stalls at "always bet and call" (exploitability 1/3)
   - we measured that with a thought that ended in the card.

The built model ships with spiral as a small, deliberate fixture in ``spiral/models/embedded/``
(made by ``python -m spiral.models.tiny --out spiral/models/embedded``), so a fresh clone trains
at once.
``embedded_model_path()`` uses it when its recorded spec equals ``TinySpec()``; otherwise (the
spec was changed) it builds once into a cache directory (``$SPIRAL_HOME`` or ``~/.cache/spiral``)
and reuses that. Command: ``python -m spiral.models.tiny [--out DIR]``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import envs
from envs.opponents import make_opponent
from spiral.config import plain
from spiral.errors import cache_root

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Everything that determines the embedded model; its hash names the cache entry."""

    version: int = 4
    seed: int = 0
    games: tuple[str, ...] = ("KuhnPoker-v1", "TicTacToe-v1", "SimpleNegotiation-v1")
    sft_schedule: tuple[int, ...] = (0, 1, 2, 1)  # indices into games, one game per batch
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_positions: int = 1024
    corpus_games: int = 300  # random games per built-in game for the tokenizer corpus
    sft_examples: int = 8000  # format examples per built-in game
    sft_steps: int = 2400
    sft_batch: int = 64
    sft_lr: float = 3e-3

    def key(self) -> str:
        """The cache folder name: readable fields, then a hash of every field."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return "embedded-v{version}-h{hidden_size}-l{num_layers}-s{seed}-".format(
            **asdict(self)) + digest[:10]


def random_play_examples(game_id: str, n: int, seed: int) -> list[tuple[str, str]]:
    """(observation, response text) pairs from uniformly random play of ``game_id``."""
    rng = random.Random(f"{game_id}/{seed}")
    opponent = make_opponent("random", game_id)
    answer = envs.spec(game_id).answer_text  # the game's canonical answer form
    examples: list[tuple[str, str]] = []
    game_seed = 0
    while len(examples) < n:
        game = envs.make(game_id)
        game.reset(seed=rng.randrange(2**31) + game_seed)
        game_seed += 1
        while not game.is_terminal() and len(examples) < n:
            observation = game.observe(game.current_player())
            move = game.parse_action(opponent.act(game, rng))
            examples.append((observation, answer(move, game)))
            game.step(move)
    return examples


def synthetic_math_text(n: int, seed: int) -> list[str]:
    """Small arithmetic and LaTeX snippets so the tokenizer has math pieces too."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(1, 99)
        lines.append(
            rng.choice(
                [
                    f"What is ${a} + {b}$? The answer is $\\boxed{{{a + b}}}$.",
                    f"Compute ${a} \\times {b}$. So the answer is \\boxed{{{a * b}}}.",
                    f"Simplify $\\frac{{{a}}}{{{b}}}$ and $\\sqrt{{{b * b}}} = {b}$.",
                    f"Solve $x^2 - {b * b} = 0$. Then $x = \\pm {b}$, so \\boxed{{{b}}}.",
                ]
            )
        )
    return lines


def train_tokenizer(texts: list[str], spec: TinySpec):
    """Byte-level BPE with single-digit splitting, wrapped as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=spec.max_positions,
    )


def new_model(tokenizer, spec: TinySpec):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.hidden_size // spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    return Qwen3ForCausalLM(config)


def encode_examples(tokenizer, examples: list[tuple[str, str]]) -> list[tuple[list, list]]:
    """(prompt ids, response ids + eos) per example, tokenized the way the rollout does."""
    from spiral.models.prompting import Prompter

    prompter = Prompter(tokenizer)
    encoded = []
    for observation, text in examples:
        response = tokenizer.encode(text, add_special_tokens=False)
        encoded.append((prompter(observation), response + [tokenizer.eos_token_id]))
    return encoded


def format_pretrain(model, encoded, spec: TinySpec, log=print, device="cpu") -> list[float]:
    """Supervised next-token loss on the responses only; returns the loss curve.

    ``encoded`` holds ``spec.sft_examples`` examples of each built-in game, game after game.
    Batches take one game at a time (similar lengths, little padding); TicTacToe, whose legal
    moves are the hardest to read off the board, gets half of them.
    """
    from spiral.models.logprobs import pad_batch

    rng = random.Random(spec.seed)
    n = spec.sft_examples
    by_game = [encoded[i : i + n] for i in range(0, len(encoded), n)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.sft_lr, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=spec.sft_lr, total_steps=spec.sft_steps, pct_start=0.1
    )
    model.train()
    losses = []
    for step in range(spec.sft_steps):
        # one game per batch: similar lengths, so little padding
        game = spec.sft_schedule[step % len(spec.sft_schedule)]
        batch = rng.sample(by_game[game], spec.sft_batch)
        input_ids, attention, labels = pad_batch(batch, pad_id=0, label_prompt=False)
        out = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                    labels=labels.to(device))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        if step % 100 == 0 or step == spec.sft_steps - 1:
            log(f"format pretraining step {step}: loss {losses[-1]:.3f}")
    model.eval()
    return losses


def build(out_dir: str | Path, spec: TinySpec = TinySpec(), log=print, device="cpu") -> Path:
    """Build the embedded model into ``out_dir`` (HF format, safetensors).

    Deterministic for a given device; a GPU build is much faster and equivalent in quality,
    but its floating-point rounding (hence its exact weights) differs from a CPU build.
    """
    torch.manual_seed(spec.seed)
    started = time.time()
    corpus = []
    examples = []
    for game_id in spec.games:
        plays = random_play_examples(game_id, spec.sft_examples, spec.seed)
        examples += plays
        corpus += [obs for obs, _ in plays[: spec.corpus_games * 4]]
        corpus += [response for _, response in plays]
    corpus += synthetic_math_text(2000, spec.seed)
    tokenizer = train_tokenizer(corpus, spec)
    model = new_model(tokenizer, spec).to(device)
    encoded = encode_examples(tokenizer, examples)
    losses = format_pretrain(model, encoded, spec, log=log, device=device)
    model = model.cpu()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {"spec": asdict(spec), "final_loss": losses[-1], "build_seconds": time.time() - started,
            "device": str(device), "torch": torch.__version__}
    (out / "spiral_embedded.json").write_text(json.dumps(info, indent=2))
    log(f"embedded model built in {info['build_seconds']:.0f}s -> {out}")
    return out


SHIPPED = Path(__file__).parent / "embedded"


def _spec_of(path: Path) -> dict | None:
    info = path / "spiral_embedded.json"
    return json.loads(info.read_text())["spec"] if info.exists() else None


def embedded_model_path(spec: TinySpec = TinySpec(), log=print) -> Path:
    """The shipped embedded model, or a cached build of ``spec`` (made on first use)."""
    if _spec_of(SHIPPED) == plain(asdict(spec)):  # as its recorded JSON reads back
        return SHIPPED
    final = cache_root() / spec.key()
    if (final / "spiral_embedded.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{spec.key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "spiral_embedded.json").exists():
            return final
        log(f"building the embedded model (first use) into {final}")
        tmp = final.parent / f".{spec.key()}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp, spec, log=log)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return final


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write here instead of the cache directory")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    print(build(args.out, device=args.device) if args.out else embedded_model_path())


if __name__ == "__main__":
    main()
