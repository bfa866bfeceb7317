"""Deduction-v1: Clue-style murder mysteries whose unique solution a solver proves.

``n`` suspects (3, 4, 5 at difficulty 1, 2, 3) each had one of ``n`` weapons, waited in one of
``n`` rooms and arrived at one of ``n`` consecutive hours, no two alike; one is the murderer.
Clues (``Same``, ``AnyOf``, ``Arrival``) are facts of this hidden ``World`` that admit no other:
while the solver (python-constraint, enumerating up to 2 solutions) finds another world, a
random true clue that it breaks is added; from difficulty 2 clues are then removed while the
solution stays unique. The model answers difficulty + 1 questions in one box; the reward is the
share answered right. Categories say what is asked: ``who``, ``what`` (weapon), ``where``,
``when``, ``mixed``. The key hashes the cast and the world and fixes the instance; the split is
read off it before the clue search. More, with examples: docs/deduction.md.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from typing import NamedTuple

from tasks.answers import boxed
from tasks.core import NO_ANSWER, Problem, Score, check_split, instance_key, split_of

TASK_ID = "Deduction-v1"
CATEGORIES = ("who", "what", "where", "when", "mixed")
DIFFICULTIES = (1, 2, 3)
MAX_DRAWS = 1000  # world redraws before generate gives up (a world is "test" with p = 0.2)
CLUE_TRIES = 200  # random clues tried against one counter-world before a direct fact

SUSPECT, MURDERER = "suspect", "murderer"
ATTRS = ("weapon", "room", "time")  # each a bijection between suspects and values
KINDS = (SUSPECT, MURDERER, *ATTRS)  # also the order of preference for a sentence's subject
ASKED = {"who": (SUSPECT,), "what": ("weapon",), "where": ("room",), "when": ("time",),
         "mixed": (SUSPECT, *ATTRS)}
LISTS = {"Suspects": SUSPECT, "Weapons": "weapon", "Rooms": "room", "Times": "time"}
POOLS = {
    SUSPECT: ("Miss Scarlett", "Colonel Mustard", "Mrs. White", "Reverend Green", "Mrs. Peacock",
              "Professor Plum", "Dr. Orchid", "Madame Rose", "Sergeant Gray", "Lady Lavender"),
    "weapon": ("rope", "candlestick", "dagger", "lead pipe", "revolver", "wrench", "poison",
               "horseshoe", "axe", "trophy"),
    "room": ("kitchen", "ballroom", "conservatory", "dining room", "billiard room", "library",
             "lounge", "hall", "study", "cellar"),
}
DRAWS = {  # difficulty -> weight of each clue kind
    1: {"same": 2, "differ": 3, "before": 2},
    2: {"same": 2, "differ": 3, "one_of": 2, "before": 2},
    3: {"same": 1, "differ": 2, "one_of": 2, "any_of": 2, "before": 2, "hour_after": 1},
}
PHRASES = {  # kind -> (as a subject, as a predicate, as a negated predicate)
    SUSPECT: ("{}", "was {}", "was not {}"),
    MURDERER: ("the murderer", "was the murderer", "was not the murderer"),
    "weapon": ("the person with the {}", "had the {}", "did not have the {}"),
    "room": ("the person in the {}", "was in the {}", "was not in the {}"),
    "time": ("the person who arrived at {}", "arrived at {}", "did not arrive at {}"),
}
QUESTIONS = {SUSPECT: "Who {}?", "weapon": "Which weapon did {} have?",  # "Who" + predicate
             "room": "In which room was {}?", "time": "At what time did {} arrive?"}
Cast = dict[str, tuple[str, ...]]  # kind -> names shown ("time": hour labels such as "8 pm")


class Ref(NamedTuple):
    """Names one suspect: ``kind`` in ``KINDS``, ``value`` indexes that kind's names."""

    kind: str
    value: int = 0


@dataclass(frozen=True)
class World:
    """``cells[a * n + v]``: the suspect with value ``v`` of ``ATTRS[a]``; ``cells[3 * n]``: the
    murderer. The solver's clue checks see a dict of just the cells the clue reads."""

    n: int
    cells: tuple[int, ...] | dict[int, int]

    def who(self, ref: Ref) -> int:
        return ref.value if ref.kind == SUSPECT else self.cells[_var(ref, self.n)]

    def value(self, kind: str, suspect: int) -> int:
        base = ATTRS.index(kind) * self.n
        return next((v for v in range(self.n) if self.cells[base + v] == suspect), -1)


def _var(ref: Ref, n: int) -> int:
    """The cell of a non-suspect ref (integer variable names keep the search hash-free)."""
    return 3 * n if ref.kind == MURDERER else ATTRS.index(ref.kind) * n + ref.value


# --------------------------------------------------------------------------- clues


def phrase(ref: Ref, cast: Cast, form: int) -> str:
    """``ref`` as a subject (form 0), a predicate (1) or a negated predicate (2)."""
    names = cast.get(ref.kind, ("",))  # the murderer has no name
    return PHRASES[ref.kind][form].format(names[ref.value])


@dataclass(frozen=True)
class Same:
    """``a`` and ``b`` name the same suspect ("Mrs. White had the rope"); ``negated``: they
    name different ones ("The murderer was not in the hall")."""

    a: Ref
    b: Ref
    negated: bool = False

    def holds(self, world) -> bool:
        return (world.who(self.a) == world.who(self.b)) != self.negated

    def text(self, cast: Cast) -> str:
        return f"{phrase(self.a, cast, 0)} {phrase(self.b, cast, 1 + self.negated)}"


@dataclass(frozen=True)
class AnyOf:
    """At least one of two ``Same`` facts holds (as drawn, exactly one does)."""

    first: Same
    second: Same

    def holds(self, world) -> bool:
        return self.first.holds(world) or self.second.holds(world)

    def text(self, cast: Cast) -> str:
        first, second = self.first, self.second
        if first.a == second.a and not first.negated | second.negated:
            return (f"{phrase(first.a, cast, 0)} either {phrase(first.b, cast, 1)} or "
                    f"{phrase(second.b, cast, 1)}")
        return f"at least one of these is true: {first.text(cast)}; {second.text(cast)}"


@dataclass(frozen=True)
class Arrival:
    """``a`` arrived before ``b`` (``gap`` 0: at any earlier hour; 1: exactly one hour)."""

    a: Ref
    b: Ref
    gap: int = 0

    def holds(self, world) -> bool:
        first, second = (world.value("time", world.who(ref)) for ref in (self.a, self.b))
        return second == first + self.gap if self.gap else first < second

    def text(self, cast: Cast) -> str:
        a, b = phrase(self.a, cast, 0), phrase(self.b, cast, 0)
        return f"{b} arrived exactly one hour after {a}" if self.gap else f"{a} arrived before {b}"


Clue = Same | AnyOf | Arrival


def refs(clue: Clue) -> tuple[Ref, ...]:
    parts = [part for part in vars(clue).values() if not isinstance(part, bool | int)]
    return tuple(itertools.chain(*((p,) if isinstance(p, Ref) else refs(p) for p in parts)))


def sentence(clue: Clue, cast: Cast) -> str:
    text = clue.text(cast)
    return f"{text[0].upper()}{text[1:]}."


# --------------------------------------------------------------------------- solver


def solve(n: int, clues: list[Clue], limit: int = 2) -> list[World]:
    """Up to ``limit`` worlds of ``n`` suspects satisfying every clue (backtracking search)."""
    from constraint import AllDifferentConstraint, BacktrackingSolver, FunctionConstraint
    from constraint import Problem as Csp

    csp = Csp(BacktrackingSolver())  # picks the most constrained variable, then fewest values
    csp.addVariables(range(3 * n + 1), range(n))
    for a in range(len(ATTRS)):
        csp.addConstraint(AllDifferentConstraint(), list(range(a * n, (a + 1) * n)))
    for clue in clues:  # on a world of just the cells it reads (an order clue: every hour)
        cells = {_var(ref, n) for ref in refs(clue) if ref.kind != SUSPECT}
        cells = sorted(cells | set(range(2 * n, 3 * n) if type(clue) is Arrival else ()))
        csp.addConstraint(FunctionConstraint(lambda *values, clue=clue, cells=cells: clue.holds(
            World(n, dict(zip(cells, values))))), cells)
    return [World(n, tuple(found[v] for v in range(3 * n + 1)))
            for found in itertools.islice(csp.getSolutionIter(), limit)]


def _counter_world(world: World, clues: list[Clue]) -> World | None:
    """A world other than ``world`` that satisfies every clue, or None if ``world`` is unique."""
    return next((w for w in solve(world.n, clues) if w != world), None)


# --------------------------------------------------------------------------- generation


def _names(world: World, suspect: int, kinds: tuple[str, ...]) -> list[Ref]:
    """Every ref of a kind in ``kinds`` that names ``suspect``."""
    return [Ref(SUSPECT, suspect) if kind == SUSPECT else Ref(MURDERER) if kind == MURDERER
            else Ref(kind, world.value(kind, suspect))
            for kind in kinds if kind != MURDERER or suspect == world.who(Ref(MURDERER))]


def _ordered(a: Ref, b: Ref) -> tuple[Ref, Ref]:
    """The pair with the better sentence subject first (a name before "the murderer" ...)."""
    return (a, b) if KINDS.index(a.kind) <= KINDS.index(b.kind) else (b, a)


def _pair(rng: random.Random, world: World, s: int, t: int, level: int) -> tuple[Ref, Ref]:
    """A ref naming ``s`` (as allowed at ``level``), one of another kind naming ``t``."""
    a = rng.choice(_names(world, s, KINDS[:2] if level == 1 else KINDS))
    return _ordered(a, rng.choice([ref for ref in _names(world, t, KINDS) if ref.kind != a.kind]))


def draw_clue(rng: random.Random, world: World, level: int) -> Clue:
    """A random clue true of ``world``, of a kind used at ``level``."""
    kind = rng.choices(list(DRAWS[level]), list(DRAWS[level].values()))[0]
    s, t = rng.sample(range(world.n), 2)
    if kind in ("same", "differ"):
        return Same(*_pair(rng, world, s, s if kind == "same" else t, level), kind == "differ")
    if kind == "any_of":  # one true fact, one false
        facts = [Same(*_pair(rng, world, s, s, level)), Same(*_pair(rng, world, s, t, level))]
        return AnyOf(*rng.sample(facts, 2))
    if kind == "one_of":  # "<a> either had the rope or had the dagger"
        a = rng.choice(_names(world, s, KINDS))
        attr = rng.choice([k for k in ATTRS if k != a.kind])
        options = [world.value(attr, s), world.value(attr, t)]
        return AnyOf(*(Same(a, Ref(attr, v)) for v in rng.sample(options, 2)))
    if kind == "hour_after":
        hour = 2 * world.n + rng.randrange(world.n - 1)
        s, t = world.cells[hour], world.cells[hour + 1]
    else:
        s, t = sorted((s, t), key=lambda x: world.value("time", x))
    kinds = KINDS[:2] if level == 1 else KINDS[:4]  # no hours: they would give the order away
    a, b = (rng.choice(_names(world, x, kinds)) for x in (s, t))
    return Arrival(a, b, int(kind == "hour_after"))


def _refuting_clue(rng: random.Random, world: World, other: World, level: int) -> Clue:
    """A random clue true of ``world`` and false of ``other``; a direct fact if none is found."""
    for _ in range(CLUE_TRIES):
        clue = draw_clue(rng, world, level)
        if not clue.holds(other):
            return clue
    facts = [Same(Ref(SUSPECT, s), ref) for s in range(world.n)
             for ref in _names(world, s, KINDS[1:])]
    return next(fact for fact in facts if not fact.holds(other))


def make_clues(rng: random.Random, world: World, level: int) -> list[Clue]:
    """Clues that admit ``world`` only: add refuting clues until the solver proves it unique,
    then (difficulty >= 2) drop each clue without which it stays unique."""
    clues: list[Clue] = []
    while (other := _counter_world(world, clues)) is not None:
        clues.append(_refuting_clue(rng, world, other, level))
    if level >= 2:
        order = rng.sample(clues, len(clues))
        if level == 3:  # direct facts are the first to go
            order.sort(key=lambda clue: not (type(clue) is Same and clue.a.kind == SUSPECT))
        for clue in order:
            rest = [c for c in clues if c is not clue]
            if _counter_world(world, rest) is None:
                clues = rest
    return rng.sample(clues, len(clues))


# --------------------------------------------------------------------------- instances


def draw_world(rng: random.Random, n: int) -> tuple[Cast, World]:
    """A random cast of ``n`` names of each kind and a random hidden world over it."""
    start = rng.randint(5, 12 - n)  # arrival hours start .. start + n - 1, all pm
    cast = {kind: tuple(rng.sample(POOLS[kind], n)) for kind in POOLS}
    cast["time"] = tuple(f"{hour} pm" for hour in range(start, start + n))
    cells = [suspect for _ in ATTRS for suspect in rng.sample(range(n), n)]
    return cast, World(n, (*cells, rng.randrange(n)))


def _answer(world: World, about: Ref, kind: str) -> Ref:
    suspect = world.who(about)
    return Ref(SUSPECT, suspect) if kind == SUSPECT else Ref(kind, world.value(kind, suspect))


def question_text(about: Ref, kind: str, cast: Cast) -> str:
    return QUESTIONS[kind].format(phrase(about, cast, int(kind == SUSPECT)))


def make_questions(rng: random.Random, world: World, clues: list[Clue], category: str,
                   count: int) -> list[tuple[Ref, str]]:
    """``count`` questions ``(about, asked kind)``; any that a clue states outright come last."""
    n = world.n
    stated = {(c.a, c.b) for c in clues if type(c) is Same and not c.negated}
    abouts = [Ref(MURDERER)] + [Ref(kind, v) for kind in (SUSPECT, *ATTRS) for v in range(n)]
    questions = [(about, kind) for kind in ASKED[category] for about in abouts
                 if about.kind != kind]
    rng.shuffle(questions)
    questions.sort(key=lambda q: _ordered(q[0], _answer(world, *q)) in stated)
    return questions[:count]


def render(cast: Cast, clues: list[Clue], questions: list[tuple[Ref, str]]) -> str:
    example = "; ".join(f"{i}: ..." for i in range(1, len(questions) + 1))
    return "\n".join([
        "Solve this murder mystery by deduction.",
        "",
        *(f"{label}: {', '.join(cast[kind])}" for label, kind in LISTS.items()),
        "",
        "Each suspect had exactly one of the weapons, waited in exactly one of the rooms and "
        "arrived at exactly one of the times; no two suspects share a weapon, a room or a "
        "time. Exactly one suspect is the murderer. \"Before\" means at any earlier time.",
        "",
        "Clues:",
        *(f"{i}. {sentence(clue, cast)}" for i, clue in enumerate(clues, 1)),
        "",
        "Questions:",
        *(f"{i}. {question_text(*q, cast)}" for i, q in enumerate(questions, 1)),
        "",
        "The clues determine every answer. Answer all the questions in one box, numbered like "
        f"the questions and separated by semicolons: \\boxed{{{example}}}",
    ])


def build(key: str, category: str, level: int, cast: Cast, world: World) -> Problem:
    """The instance of ``key``: its clues and questions are drawn from ``Random(key)``."""
    rng = random.Random(key)
    clues = make_clues(rng, world, level)
    questions = make_questions(rng, world, clues, category, level + 1)
    answer = [cast[ref.kind][ref.value] for ref in (_answer(world, *q) for q in questions)]
    return Problem(TASK_ID, key, render(cast, clues, questions), answer, category, level)


# --------------------------------------------------------------------------- answers

_NUMBER = r"\s*(?:q(?:uestion)?\s*)?\(?\d{1,3}\s*[:.)](?!\d)"  # "2:", "Q2.", "(2)"
_LABEL = re.compile(rf"({_NUMBER})(.*)", re.I | re.S)
_PARTS = re.compile(rf";|\n|,(?={_NUMBER})", re.I)


def read_answers(content: str, count: int) -> list[str] | None:
    """The answer to each question: numbered parts in any order, or unnumbered parts in
    order; None for a mix. A question answered twice is answered ``""``."""
    parts = [part.strip() for part in _PARTS.split(content) if part.strip()]
    labelled = [_LABEL.fullmatch(part) for part in parts]
    if not parts or (any(labelled) and not all(labelled)):
        return None
    if not any(labelled):
        return (parts + [""] * count)[:count]
    numbers = [int(re.search(r"\d+", match[1])[0]) for match in labelled]
    found = dict(zip(numbers, (match[2].strip() for match in labelled)))
    return [found[i] if numbers.count(i) == 1 else "" for i in range(1, count + 1)]


def canonical(answer: str) -> str:
    """``answer`` compared: lower case, without LaTeX commands, punctuation, spaces, articles,
    ":00" or "o'clock" ("The Lead-Pipe" -> "leadpipe", "8:00 P.M." -> "8pm")."""
    text = re.sub(r"\\[a-z]+|:00|o'?clock", " ", answer.lower())
    return "".join(w for w in re.split(r"[^a-z0-9]+", text) if w not in ("the", "a", "an"))


# --------------------------------------------------------------------------- the task


class Deduction:
    """Clue-style deduction puzzles with proven-unique solutions (see the module docstring)."""

    task_id = TASK_ID
    categories = CATEGORIES

    def generate(self, seed: int, split: str = "train", category: str | None = None,
                 difficulty: int | None = None) -> Problem:
        check_split(split)
        if category not in (None, *CATEGORIES) or difficulty not in (None, *DIFFICULTIES):
            raise ValueError(f"category must be one of {CATEGORIES} and difficulty one of "
                             f"{DIFFICULTIES}; got {category!r}, {difficulty!r}")
        for attempt in range(MAX_DRAWS):
            rng = random.Random(f"{TASK_ID}/{category}/{difficulty}/{seed}/{split}/{attempt}")
            level = difficulty or rng.choice(DIFFICULTIES)
            kind = category or rng.choice(CATEGORIES)
            cast, world = draw_world(rng, level + 2)
            key = instance_key(kind, level, (tuple(cast.values()), world.cells))
            if split_of(key) == split:
                return build(key, kind, level, cast, world)
        raise RuntimeError(f"{TASK_ID}: no {split} instance in {MAX_DRAWS} draws (seed {seed})")

    def verify(self, problem: Problem, response: str) -> Score:
        content = boxed(response)
        expected = list(problem.answer)
        given = None if content is None else read_answers(content, len(expected))
        if given is None:
            return NO_ANSWER
        right = sum(bool(g) and canonical(g) == canonical(e) for e, g in zip(expected, given))
        return Score(right / len(expected), right == len(expected), True)

    def answer_text(self, problem: Problem) -> str:
        return "\\boxed{" + "; ".join(f"{i}: {a}" for i, a in enumerate(problem.answer, 1)) + "}"

    def sample_answer(self, problem: Problem, rng: random.Random) -> str:
        lists = [line.partition(": ")[2].split(", ") for line in problem.prompt.splitlines()
                 if line.partition(": ")[0] in LISTS]
        picks = [rng.choice(next(names for names in lists if answer in names))
                 for answer in problem.answer]
        return "\\boxed{" + "; ".join(f"{i}: {a}" for i, a in enumerate(picks, 1)) + "}"
