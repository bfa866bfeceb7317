"""Math-v1 against sympy, reading each problem back from its rendered prompt.

The independent side never sees the generator's numbers: it takes the ``$...$`` formulas out of
the prompt, turns their LaTeX into sympy (``to_sympy``) and evaluates, ``sympy.solve``s,
interpolates or sums them; gcd/lcm, percentages and remainders are read from the sentence by
regular expressions and computed with sympy. Then the verifier: tables of equivalent forms it
must accept and near misses it must reject, the same on every generated answer, and math-verify
kept to its time limit.
"""

from __future__ import annotations

import re
import threading
import time
from fractions import Fraction
from functools import reduce

import pytest
import sympy
from sympy.parsing.sympy_parser import (
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

import tasks
from tasks.core import Problem
from tasks.grading import load_math_verify
from tasks.mathgen import CATEGORIES, Math, render, values

TASK = Math()
COUNT = 200  # instances per category and difficulty, half from each split
X, Y, K, P = sympy.symbols("x y k p")
TRANSFORMS = (*standard_transformations, implicit_multiplication_application)


def to_sympy(latex: str) -> sympy.Expr:
    """LaTeX of the prompts (``\\frac``, ``\\times``, ``\\div``, ``^{}``, ``3x``, ``2(x + 1)``)
    as an exact sympy expression."""
    text = latex.replace("\\left", "").replace("\\right", "")
    while "\\frac" in text:
        text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", text)
    for old, new in (("\\times", "*"), ("\\div", "/"), ("^", "**"), ("{", "("), ("}", ")")):
        text = text.replace(old, new)
    return parse_expr(text, local_dict={"x": X, "y": Y}, transformations=TRANSFORMS)


def formulas(problem: Problem) -> list[str]:
    return re.findall(r"\$([^$]*)\$", problem.prompt.split("\n\n")[0])


def equation(latex: str) -> sympy.Eq:
    left, right = latex.split("=")
    return sympy.Eq(to_sympy(left), to_sympy(right))


def problems(category: str, difficulties=(1, 2, 3), count: int = COUNT) -> list[Problem]:
    return [TASK.generate(seed, ("train", "test")[seed % 2], category, d)
            for d in difficulties for seed in range(count)]


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


# --------------------------------------------------------------------------- the checker


def test_check_task_passes():
    assert tasks.check_task("Math-v1").problems > 0
    assert len(CATEGORIES) >= 5 and set(TASK.categories) == set(CATEGORIES)


def test_categories_narrow_the_mix_and_bad_arguments_are_refused():
    narrow = tasks.make("Math-v1", categories=["modular"])
    assert {narrow.generate(seed).category for seed in range(20)} == {"modular"}
    drawn = {TASK.generate(seed).category for seed in range(300)}
    assert drawn == set(CATEGORIES)
    with pytest.raises(ValueError, match="unknown Math-v1 categories"):
        Math(categories=["calculus"])
    with pytest.raises(ValueError, match="timeout_s"):
        Math(timeout_s=0)
    with pytest.raises(ValueError, match="difficulty"):
        TASK.generate(0, difficulty=4)


# --------------------------------------------------------------------------- answers vs sympy


HARDER = {  # what each level adds: (difficulty, LaTeX that occurs from it on)
    "arithmetic": ((2, "\\div"), (3, "^"), (3, "\\left(-")),
    "fractions": ((2, "\\times"), (3, "\\div"), (3, "\\left(-")),
}


@pytest.mark.parametrize("category", ["arithmetic", "fractions"])
def test_expressions_evaluate_to_the_answer(category):
    for problem in problems(category):
        (latex,) = formulas(problem)
        result = to_sympy(latex)
        assert result == sympy.Rational(problem.answer), problem.prompt
        if category == "arithmetic":
            assert result.is_Integer
    for difficulty, latex in HARDER[category]:
        assert not any(latex in p.prompt for p in problems(category, (difficulty - 1,), 40))
        assert any(latex in p.prompt for p in problems(category, (difficulty,), 40))


def test_fraction_answers_are_written_in_lowest_terms():
    for problem in problems("fractions"):
        for p, q in re.findall(r"\\frac\{(\d+)\}\{(\d+)\}", TASK.answer_text(problem)):
            assert sympy.igcd(int(p), int(q)) == 1 and int(q) > 1


def test_linear_equations_have_the_one_solution_sympy_finds():
    fractional = 0
    for problem in problems("linear_equation"):
        (_, latex) = formulas(problem)
        assert sympy.solve(equation(latex), X) == [sympy.Rational(problem.answer)], latex
        fractional += problem.difficulty == 3 and Fraction(problem.answer).denominator > 1
    assert fractional == COUNT  # difficulty 3's solutions are never integers


def test_linear_systems_have_the_one_solution_sympy_finds():
    for problem in problems("linear_system"):
        first, second = (equation(f) for f in formulas(problem) if "=" in f)
        solutions = sympy.solve([first, second], [X, Y], dict=True)
        want = values(problem)
        assert solutions == [{X: sympy.Rational(want[0]), Y: sympy.Rational(want[1])}]
        if problem.difficulty == 3:
            assert max(v.denominator for v in want) > 1


def test_quadratic_roots_are_the_set_sympy_solves_for():
    doubles = 0
    for problem in problems("quadratic"):
        (_, latex) = formulas(problem)
        eq = equation(latex)
        assert sympy.degree(eq.lhs - eq.rhs, X) == 2
        roots = sympy.solve(eq, X)
        assert all(root.is_Rational for root in roots)
        assert sorted(roots) == [sympy.Rational(r) for r in problem.answer], latex
        if problem.difficulty == 2:  # one root is a fraction
            assert any(not root.is_Integer for root in roots)
        doubles += len(roots) == 1
    assert doubles > 0


def test_gcd_and_lcm_match_sympy():
    for problem in problems("gcd_lcm"):
        found = numbers(problem.prompt.split("\n")[0])
        combine = sympy.gcd if "greatest common divisor" in problem.prompt else sympy.lcm
        assert len(found) == (3 if problem.difficulty == 3 else 2)
        assert reduce(combine, map(sympy.Integer, found)) == int(problem.answer)


PERCENT_QUESTIONS = {  # the question read back, and the answer as an equation in p
    r"What is \$(\d+)\\%\$ of \$(\d+)\$\?": lambda a, b: sympy.Eq(P, sympy.Rational(a, 100) * b),
    r"\$(\d+)\$ is what percent of \$(\d+)\$\?": lambda a, b: sympy.Eq(P / 100 * b, a),
    r"costs (\d+) dollars\. Its price rises by \$(\d+)\\%\$\. What": lambda n, a: sympy.Eq(
        P, n + n * sympy.Rational(a, 100)),
    r"costs (\d+) dollars\. Its price rises by \$(\d+)\\%\$, and then the new price falls by "
    r"\$(\d+)\\%\$": lambda n, a, b: sympy.Eq(
        P, n * (1 + sympy.Rational(a, 100)) * (1 - sympy.Rational(b, 100))),
    r"After a \$(\d+)\\%\$ discount, a jacket costs (\d+) dollars": lambda a, c: sympy.Eq(
        P - P * sympy.Rational(a, 100), c),
}


def test_percent_questions_match_sympy():
    seen = set()
    for problem in problems("percent"):
        (pattern, build), = [(pattern, build) for pattern, build in PERCENT_QUESTIONS.items()
                             if re.search(pattern, problem.prompt)]
        match = re.search(pattern, problem.prompt)
        assert sympy.solve(build(*map(int, match.groups())), P) == [
            sympy.Rational(problem.answer)]
        seen.add(pattern)
    assert seen == set(PERCENT_QUESTIONS)


def test_sequence_terms_and_sums_match_sympy():
    kinds = set()
    for problem in problems("sequence"):
        (shown,) = formulas(problem)
        items = [to_sympy(item) for item in shown.split(", ")[:-1]]
        n = numbers(problem.prompt.split("$")[-1].split("\n")[0])[0]
        if "arithmetic" in problem.prompt:
            general = sympy.interpolate(list(zip(range(1, 5), items)), K)
            assert sympy.degree(general, K) <= 1
        else:
            ratio = items[1] / items[0]
            assert all(b / a == ratio for a, b in zip(items, items[1:]))
            general = items[0] * ratio ** (K - 1)
        asked = "sum" if "sum of its first" in problem.prompt else "term"
        want = (sympy.summation(general, (K, 1, n)) if asked == "sum" else general.subs(K, n))
        assert sympy.nsimplify(want) == sympy.Rational(problem.answer), problem.prompt
        kinds.add((asked, "arithmetic" in problem.prompt))
    assert len(kinds) == 4


def test_remainders_and_congruences_match_sympy():
    for problem in problems("modular"):
        text = problem.prompt.split("\n")[0]
        if match := re.search(r"\$(\d+) \\times (\d+)\$ is divided by \$(\d+)\$", text):
            a, b, m = map(sympy.Integer, match.groups())
            want = sympy.Mod(a * b, m)
        elif match := re.search(r"\$(\d+)\^\{(\d+)\}\$ is divided by \$(\d+)\$", text):
            base, e, m = map(sympy.Integer, match.groups())
            want = sympy.Mod(base**e, m)
        else:
            a, c, m = map(int, re.search(r"\$(\d+)x \\equiv (\d+) \\pmod\{(\d+)\}\$",
                                         text).groups())
            want = [x for x in range(m) if (a * x - c) % m == 0]
            assert len(want) == 1  # one solution modulo m
            want = want[0]
        assert want == int(problem.answer), text


# --------------------------------------------------------------------------- the verifier


def problem_of(category: str, answer) -> Problem:
    """A problem with ``answer``: the verifier reads only its category and answer."""
    return Problem("Math-v1", f"{category}/d1/table", "", answer, category, 1)


HALF = problem_of("fractions", "1/2")
THREE = problem_of("linear_equation", "3")
LCM = problem_of("gcd_lcm", "12600")
PERCENT = problem_of("percent", "15")
ROOTS = problem_of("quadratic", ["-2", "3"])
DOUBLE = problem_of("quadratic", ["-5/3"])
PAIR = problem_of("linear_system", {"x": "3/2", "y": "-1"})

ACCEPTED = [
    (HALF, ["\\frac{1}{2}", "1/2", "0.5", "0.50", "\\dfrac{1}{2}", "\\frac12", "2/4",
            "\\frac{2}{4}", "x = 0.5", "2^{-1}", "\\frac{1 + 1}{4}", "\\left(\\frac{1}{2}\\right)",
            "$\\frac{1}{2}$", "\\text{ }1/2."]),
    (THREE, ["3", "x = 3", "x=3.0", "\\sqrt{9}", "\\frac{6}{2}", "3/1", "+3"]),
    (LCM, ["12600", "12{,}600", "12,600", "\\text{12600}"]),
    (PERCENT, ["15", "15\\%", "15 \\%", "15%"]),
    (ROOTS, ["-2, 3", "3, -2", "\\{-2, 3\\}", "x = -2 \\text{ or } x = 3", "x_1 = 3, x_2 = -2",
             "x \\in \\{3, -2\\}", "-2 \\text{ and } 3", "x = -2; x = 3", "\\frac{1 \\pm 5}{2}",
             "-\\frac{4}{2}, 3", "-2.0, 3", "(-2, 3)"]),
    (DOUBLE, ["-5/3", "-\\frac{5}{3}", "x = -\\frac{10}{6}", "-\\frac{5}{3}, -\\frac{5}{3}"]),
    (PAIR, ["x = 3/2, y = -1", "y = -1, x = \\frac{3}{2}", "(3/2, -1)", "(x, y) = (1.5, -1)",
            "x = \\frac{3}{2} \\text{ and } y = -1", "x=\\frac32,y=-1", "x = 1.5; y = -1"]),
]
REJECTED = [
    (HALF, ["1/3", "-1/2", "2", "0.49", "0.5000001", "(0.5000001)", "0.50000000001",
            "\\frac{1}{2} + 0.0000001", "1/2, 1/3", "\\frac{1}{2}x", "\\frac{1}{3}", "50\\%",
            "none", "", "\\frac{1}{2}^{2}"]),
    (THREE, ["-3", "x = -3", "3.01", "x = 3 \\text{ or } x = 4", "\\sqrt{8}", "33", "\\{3\\}"]),
    (LCM, ["1260", "126,00", "12600.5"]),
    (PERCENT, ["0.15", "1.5\\%", "15\\%\\%", "150"]),
    (ROOTS, ["-2", "3", "2, -3", "-2, 3, 5", "-2, -3", "x = -2", "none", "\\pm 2", "-2, 3.5"]),
    (DOUBLE, ["5/3", "-5/3, 5/3", "-3/5", "-1.666", "-1.6666667"]),
    (PAIR, ["(-1, 3/2)", "x = -1, y = 3/2", "x = 3/2", "3/2", "x = 3/2, y = 1", "x = 3/2, x = -1",
            "(3/2, -1, 0)", "1.5, -1.0001", "y = 3/2, x = -1"]),
]


def _id(value) -> str:
    return f"{value.category}={value.answer}" if isinstance(value, Problem) else ""


@pytest.mark.parametrize(("problem", "texts"), ACCEPTED, ids=_id)
def test_equivalent_forms_are_accepted(problem, texts):
    for text in texts:
        for response in (f"\\boxed{{{text}}}", f"Step by step ... so it is \\boxed{{{text}}}."):
            score = TASK.verify(problem, response)
            assert score.correct and score.reward == 1, (text, score)


@pytest.mark.parametrize(("problem", "texts"), REJECTED, ids=_id)
def test_near_misses_are_rejected(problem, texts):
    for text in texts:
        score = TASK.verify(problem, f"\\boxed{{{text}}}")
        assert not score.correct and score.reward == 0, (text, score)
    assert TASK.verify(problem, TASK.answer_text(problem)).correct  # the table is not vacuous


def variants(problem: Problem) -> tuple[list[str], list[str]]:
    """Right answers written otherwise, and near misses, for any problem (its ``values``)."""
    want = values(problem)
    if isinstance(want, Fraction):
        misses = [want + 1, want - 1, -want, 2 * want, Fraction(want.numerator + 1,
                                                                want.denominator)]
        rights = [str(want), f"x = {want}", f"\\dfrac{{{want.numerator}}}{{{want.denominator}}}"]
        return rights, [str(m) for m in misses if m != want]
    if problem.category == "linear_system":
        x, y = want
        rights = [f"y = {y}, x = {x}", f"({x}, {y})", f"x = {x} \\text{{ and }} y = {y}"]
        misses = [(y, x), (x + 1, y), (x, -y), (x, y, 0)]
        return rights, [render("quadratic", miss) for miss in misses if miss != want]
    rights = [", ".join(map(str, reversed(want))), f"x \\in \\{{{', '.join(map(str, want))}\\}}"]
    misses = [want[:1], want[1:], (*want, max(want) + 1), (-want[0], *want[1:])]
    return rights, [render("quadratic", miss) for miss in misses
                    if miss and set(miss) != set(want)]


def test_every_generated_answer_is_accepted_rewritten_and_its_near_misses_rejected():
    checked = 0
    for category in CATEGORIES:
        for problem in problems(category, count=40):
            rights, misses = variants(problem)
            for text in rights:
                assert TASK.verify(problem, f"\\boxed{{{text}}}").correct, (problem.key, text)
            for text in misses:
                assert not TASK.verify(problem, f"\\boxed{{{text}}}").correct, (problem.key, text)
            checked += bool(misses)
    assert checked == len(CATEGORIES) * 3 * 40


def test_math_verify_is_cut_off_at_its_time_limit(monkeypatch):
    mv = load_math_verify()
    monkeypatch.setattr(mv, "parse", lambda *args, **kwargs: time.sleep(30))
    quick = Math(timeout_s=0.2)
    started = time.monotonic()
    assert not quick.verify(HALF, "\\boxed{\\frac12}").correct
    assert time.monotonic() - started < 2
    assert quick.verify(HALF, "\\boxed{1/2}").correct  # the exact reader needs no math-verify


def test_formulas_that_could_run_unbounded_never_reach_math_verify(monkeypatch):
    mv = load_math_verify()
    monkeypatch.setattr(mv, "parse", lambda *args, **kwargs: pytest.fail("math-verify called"))
    for text in ("9^{9^{9}}", "(10^{99})^{99}", "2^{1000}", "\\log_2 8", "x", "9" * 200):
        assert not TASK.verify(THREE, f"\\boxed{{{text}}}").formatted


def test_off_the_main_thread_only_the_exact_reader_grades():
    found = {}

    def grade():
        found["exact"] = TASK.verify(HALF, "\\boxed{0.5}")
        found["symbolic"] = TASK.verify(HALF, "\\boxed{\\frac12}")

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=30)
    assert found["exact"].correct and not found["symbolic"].correct
    assert TASK.verify(HALF, "\\boxed{\\frac12}").correct  # in the main thread it is right
