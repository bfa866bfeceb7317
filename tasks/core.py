"""The Task protocol, the task registry and the train/test split every task shares.

A task is a family of single-turn verifiable problems: ``generate`` renders one instance (a
prompt with an exact answer), ``verify`` scores a model's response to it. Tasks are pure
Python: no torch, and nothing from ``spiral`` is imported here.

Registry ids look like ``GameTheory-v1``. Entry points are ``"module:Class"`` strings,
imported lazily on ``make``, so that listing tasks stays cheap (as ``envs`` does for games).

Splits: an instance belongs to ``"train"`` or ``"test"`` by a hash of its identity alone (the
last ``/``-separated part of its key; ``split_of``), so the two splits can never share an
instance, whatever seeds or difficulty labels draw it. ``generate_in_split`` redraws until the
instance lands in the requested split.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from envs.core import load_ref

SPLITS = ("train", "test")
TEST_PERCENT = 20  # share of the instance space that belongs to the test split
MAX_DRAWS = 1000  # redraws before generate_in_split gives up (0.8**1000: never, if not stuck)


@dataclass(frozen=True)
class Problem:
    """One instance of a task: what the model sees and the exact answer it is checked against."""

    task_id: str  # "GameTheory-v1"
    key: str  # stable id of the instance, e.g. "normal_form_2x2/d1/7f3a..."
    prompt: str  # what the model sees: the problem, then the answer format
    answer: Any  # canonical exact answer, JSON-serialisable (fractions as "p/q" strings)
    category: str  # e.g. "normal_form_2x2"
    difficulty: int  # 1 (easy) .. 3 (hard)


@dataclass(frozen=True)
class Score:
    """A verified response."""

    reward: float  # what RL optimises, in [0, 1]: accuracy (partial credit where defined)
    correct: bool  # fully right
    formatted: bool  # an answer in the required format was found (e.g. a \boxed{...})


NO_ANSWER = Score(0.0, False, False)


@runtime_checkable
class Task(Protocol):
    """A family of single-turn problems with exact answers, seeded like games."""

    task_id: str
    categories: tuple[str, ...]

    def generate(self, seed: int, split: str = "train", category: str | None = None,
                 difficulty: int | None = None) -> Problem:
        """Deterministic in its arguments; ``None`` category/difficulty are drawn from the
        seed. Instances of the two splits never coincide (see ``split_of``)."""

    def verify(self, problem: Problem, response: str) -> Score:
        """Score ``response`` (the last ``\\boxed{...}`` is the answer). Never raises."""

    def answer_text(self, problem: Problem) -> str:
        """The canonical answer as the model should write it, e.g. ``\\boxed{(A, X)}``."""

    def sample_answer(self, problem: Problem, rng: random.Random) -> str:
        """A random well-formed answer text (right format, no solving), from ``rng`` only."""


# --------------------------------------------------------------------------- splits


def split_of(key: str) -> str:
    """The split instance ``key`` belongs to: a fixed hash of its identity, the part after the
    last ``/`` (what precedes it, such as category and difficulty, only labels it). The same
    game drawn at two difficulties is the same instance, so it is in one split."""
    identity = key.rpartition("/")[2]
    digest = hashlib.sha256(identity.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") % 100 < TEST_PERCENT else "train"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def chosen_categories(task_id: str, categories, known) -> tuple[str, ...]:
    """The categories a task draws from: ``categories`` (all of ``known`` when None), each one
    of ``known``; else `ValueError` listing them."""
    chosen = tuple(known) if categories is None else tuple(categories)
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise ValueError(f"unknown {task_id} categories {unknown or chosen!r}; "
                         f"choose from {', '.join(known)}")
    return chosen


def check_request(category: str | None, difficulty: int | None, known,
                  difficulties: tuple[int, ...]) -> None:
    """A ``generate`` call's category (one of ``known`` or None) and difficulty (one of
    ``difficulties`` or None), else `ValueError`."""
    if category is not None and category not in known:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(known)}")
    if difficulty is not None and difficulty not in difficulties:
        raise ValueError(f"difficulty must be one of {difficulties}, got {difficulty!r}")


def generate_in_split(salt: str, seed: int, split: str,
                      draw: Callable[[random.Random], Problem]) -> Problem:
    """``draw(rng)`` with ``rng = random.Random(f"{salt}/{seed}/{split}/{attempt}")`` for
    attempts 0, 1, ... until the problem's key belongs to ``split``.

    ``salt`` names everything else the draw depends on (task id, category, difficulty), so
    the result is deterministic in (salt, seed, split)."""
    check_split(split)
    for attempt in range(MAX_DRAWS):
        problem = draw(random.Random(f"{salt}/{seed}/{split}/{attempt}"))
        if split_of(problem.key) == split:
            return problem
    raise RuntimeError(f"{salt}: no {split} instance in {MAX_DRAWS} draws (seed {seed}); "
                       "its instance space is too small")


def instance_key(category: str, difficulty: int, data: Any) -> str:
    """A stable key ``<category>/d<difficulty>/<identity>``: the identity hashes the category
    and ``data``, the canonical description of the instance (its ``repr`` must be stable: ints,
    strs, tuples, lists), but not the difficulty, which only labels it (see ``split_of``)."""
    digest = hashlib.sha256(repr((category, data)).encode("utf-8")).hexdigest()[:16]
    return f"{category}/d{difficulty}/{digest}"


# --------------------------------------------------------------------------- registry


Ref = str | Callable[..., Any]  # "module:attr", imported on first use, or the object itself


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: how to build it, with its default keyword arguments."""

    id: str
    entry_point: Ref
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> Task:
        factory = load_ref(self.entry_point)
        return factory(**{**self.kwargs, **overrides})


_REGISTRY: dict[str, TaskSpec] = {}


def register(task_id: str, entry_point: Ref, **default_kwargs: Any) -> None:
    """Register a task under ``task_id``; ``entry_point`` is ``"module:Class"`` (imported on
    first ``make``) or a callable. A duplicate id raises ``ValueError``."""
    if task_id in _REGISTRY:
        raise ValueError(f"task id {task_id!r} is already registered")
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ValueError(f"entry_point must look like 'module:Class', got {entry_point!r}")
    _REGISTRY[task_id] = TaskSpec(task_id, entry_point, dict(default_kwargs))


def spec(task_id: str) -> TaskSpec:
    """The spec of a registered id; an unknown id raises ``KeyError`` listing the known ids."""
    if task_id not in _REGISTRY:
        raise KeyError(f"unknown task id {task_id!r}; registered ids: {', '.join(list_tasks())}")
    return _REGISTRY[task_id]


def make(task_id: str, **kwargs: Any) -> Task:
    """A new task ``task_id``; ``kwargs`` update the registered default keyword arguments."""
    return spec(task_id).build(**kwargs)


def list_tasks() -> list[str]:
    """Every registered id, sorted."""
    return sorted(_REGISTRY)
