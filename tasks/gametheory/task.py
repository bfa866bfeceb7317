"""GameTheory-v1: single-turn game-theory problems, generated with exact answers.

Categories (``GameTheory.categories``), each with difficulty 1..3:

- ``normal_form_2x2``, ``normal_form_3x3``, ``normal_form_3x4``, ``normal_form_4x4``: every
  pure Nash equilibrium of a bimatrix game (``matrix``);
- ``mixed_2x2``: the fully mixed equilibrium (p, q) of a 2x2 game (``matrix``);
- ``zero_sum``: the value of a zero-sum matrix game (``matrix``);
- ``sequential``: the subgame-perfect path of a perfect-information game tree (``sequential``);
- ``auction``: closed-form first-price, second-price and all-pay questions (``auction``);
- ``cooperative``: Shapley values of a 3- or 4-player game (``cooperative``);
- ``bayesian``: the pure Bayesian Nash equilibria of a game with a privately typed column
  player (``bayesian``).

The model answers in ``\\boxed{...}`` (the last box counts); how each category's answer is
written and graded is in ``formats``. Reward is 1 for a correct answer, else 0.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tasks.answers import boxed
from tasks.core import (
    NO_ANSWER,
    Problem,
    Score,
    check_request,
    chosen_categories,
    generate_in_split,
    instance_key,
)
from tasks.gametheory import auction, bayesian, cooperative, matrix, sequential
from tasks.gametheory.base import DIFFICULTIES, Category

ALL = {category.name: category for module in (matrix, sequential, auction, cooperative, bayesian)
       for category in module.CATEGORIES}


class GameTheory:
    """The ``GameTheory-v1`` task; ``categories`` narrows the mix drawn when none is asked."""

    task_id = "GameTheory-v1"

    def __init__(self, categories: Sequence[str] | None = None) -> None:
        self.categories = chosen_categories(self.task_id, categories, ALL)

    def generate(self, seed: int, split: str = "train", category: str | None = None,
                 difficulty: int | None = None) -> Problem:
        check_request(category, difficulty, ALL, DIFFICULTIES)
        salt = f"{self.task_id}/{category}/{difficulty}"
        return generate_in_split(salt, seed, split,
                                 lambda rng: self._draw(rng, category, difficulty))

    def _draw(self, rng: random.Random, category: str | None,
              difficulty: int | None) -> Problem:
        kind = ALL[category if category is not None else rng.choice(self.categories)]
        level = difficulty if difficulty is not None else rng.choice(DIFFICULTIES)
        instance = kind.draw(rng, level)
        prompt = f"{instance.question}\n\n{kind.form.instructions(instance.answer)}"
        return Problem(self.task_id, instance_key(kind.name, level, instance.data), prompt,
                       instance.answer, kind.name, level)

    def verify(self, problem: Problem, response: str) -> Score:
        content = boxed(response)
        if content is None:
            return NO_ANSWER
        return _category(problem).form.grade(problem.answer, content)

    def answer_text(self, problem: Problem) -> str:
        return f"\\boxed{{{_category(problem).form.render(problem.answer)}}}"

    def sample_answer(self, problem: Problem, rng: random.Random) -> str:
        return f"\\boxed{{{_category(problem).form.sample(problem.answer, rng)}}}"


def _category(problem: Problem) -> Category:
    return ALL[problem.category]
