"""GameTheory-v1: every solver against an independent one on thousands of generated games
(nashpy; scipy's linprog; brute force over strategy profiles and a bottom-up pass over the
prompt's own outcome table; permutation averaging; numeric best replies and Monte Carlo),
pinned textbook facts, and a verifier that accepts equivalent answers and rejects near misses.
"""

import itertools
import random
import re
import warnings
from fractions import Fraction
from math import factorial

import nashpy
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.sparse import block_diag

import tasks
from tasks.gametheory import auction, bayesian, cooperative, matrix, sequential
from tasks.gametheory.task import ALL

TASK = tasks.make("GameTheory-v1")


def instances(category, count, difficulties=(1, 2, 3)):
    """``count`` generated instances of ``category`` per difficulty: (difficulty, Instance)."""
    return [(d, ALL[category].draw(random.Random(f"test/{seed}"), d))
            for d in difficulties for seed in range(count)]


# --------------------------------------------------------------------------- pure equilibria


def nashpy_pure(first, second):
    """(row, column) of every pure profile where both play a best response, by nashpy."""
    game, rows, columns = nashpy.Game(first, second), *map(np.eye, np.shape(first))
    return [(i, j) for i, j in itertools.product(range(len(rows)), range(len(columns)))
            if all(game.is_best_response(rows[i], columns[j]))]


@pytest.mark.parametrize("category", ["normal_form_2x2", "normal_form_3x3", "normal_form_3x4",
                                      "normal_form_4x4"])
def test_pure_equilibria_match_nashpy_best_replies(category):
    seen_none = seen_several = 0
    for _, instance in instances(category, 300):
        want = sorted([matrix.ROWS[i], matrix.COLUMNS[j]] for i, j in nashpy_pure(*instance.data))
        assert sorted(instance.answer) == want
        seen_none += not want
        seen_several += len(want) > 1
    assert seen_none and seen_several  # both kinds of answer occur


def test_pure_equilibria_match_nashpy_support_enumeration():
    for category in ("normal_form_2x2", "normal_form_3x3"):
        for _, instance in instances(category, 25):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = nashpy.Game(*map(np.array, instance.data)).support_enumeration(
                    non_degenerate=False)
                pure = {(int(np.argmax(x)), int(np.argmax(y))) for x, y in found
                        if np.isclose(x.max(), 1) and np.isclose(y.max(), 1)}
            assert sorted(instance.answer) == sorted(
                [matrix.ROWS[i], matrix.COLUMNS[j]] for i, j in pure)


def test_pure_equilibria_textbook_games():
    prisoners = ((-1, -3), (0, -2)), ((-1, 0), (-3, -2))  # A/W: cooperate, B/X: defect
    assert matrix.pure_equilibria(*prisoners) == [(1, 1)]
    coordination = ((2, 0), (0, 1)), ((2, 0), (0, 1))
    assert matrix.pure_equilibria(*coordination) == [(0, 0), (1, 1)]
    pennies = ((1, -1), (-1, 1)), ((-1, 1), (1, -1))
    assert matrix.pure_equilibria(*pennies) == []


# --------------------------------------------------------------------------- mixed 2x2


def test_mixed_equilibrium_matches_nashpy():
    for _, instance in instances("mixed_2x2", 200):
        equilibria = list(nashpy.Game(*map(np.array, instance.data)).support_enumeration())
        assert len(equilibria) == 1  # exactly one equilibrium, fully mixed
        (x, y), = equilibria
        p, q = Fraction(instance.answer["p"]), Fraction(instance.answer["q"])
        assert 0 < p < 1 and 0 < q < 1
        assert np.allclose([x[0], y[0]], [float(p), float(q)], atol=1e-9)


def test_mixed_equilibrium_textbook_games():
    pennies = ((1, -1), (-1, 1)), ((-1, 1), (1, -1))
    assert matrix.mixed_equilibrium_2x2(*pennies) == (Fraction(1, 2), Fraction(1, 2))
    # the column player is indifferent when p = 2/3, the row player when q = 1/4
    game = ((3, 0), (0, 1)), ((1, 2), (2, 0))
    assert matrix.mixed_equilibrium_2x2(*game) == (Fraction(2, 3), Fraction(1, 4))


# --------------------------------------------------------------------------- zero-sum


def lp_values(payoffs):
    """Each game's value by one LP over all games (block g: max v_g s.t. x_g^T A_g >= v_g,
    sum x_g = 1, x_g >= 0); the blocks share nothing, so max sum v_g maximises each."""
    upper, equal, costs, bounds = [], [], [], []
    for payoff in map(np.array, payoffs):
        rows, columns = payoff.shape
        upper.append(np.c_[-payoff.T, np.ones(columns)])
        equal.append(np.r_[np.ones(rows), 0.0][None])
        costs.append(np.r_[np.zeros(rows), -1.0])
        bounds += [(0, None)] * rows + [(None, None)]
    result = linprog(np.concatenate(costs), A_ub=block_diag(upper), b_ub=np.zeros(
        sum(len(u) for u in upper)), A_eq=block_diag(equal), b_eq=np.ones(len(equal)),
        bounds=bounds, method="highs")
    assert result.status == 0
    ends = np.cumsum([len(c) for c in costs]) - 1
    return result.x[ends]


def test_zero_sum_value_matches_linprog():
    drawn = [instance for _, instance in instances("zero_sum", 700)]
    values = [Fraction(instance.answer) for instance in drawn]
    assert values == [matrix.zero_sum_value(instance.data) for instance in drawn]
    assert np.allclose(np.array(values, dtype=float), lp_values([i.data for i in drawn]),
                       atol=1e-7)
    assert sum(value.denominator > 1 for value in values) > 200  # many mixed, not saddles


def test_zero_sum_textbook_values():
    assert matrix.zero_sum_value(((0, -1, 1), (1, 0, -1), (-1, 1, 0))) == 0  # rock-paper-scissors
    assert matrix.zero_sum_value(((2, -3), (-3, 4))) == Fraction(-1, 12)  # Morra-like
    assert matrix.zero_sum_value(((1, 2), (0, 3))) == 1  # saddle point at (A, W)
    assert matrix.zero_sum_value(((3, -1, 2), (-2, 4, 1))) == 1  # x = (3/5, 2/5) equalises W, X


# --------------------------------------------------------------------------- sequential

_OUTCOME = re.compile(r"^\s+([A-Z](?:, [A-Z])*): \((-?\d+), (-?\d+)\)$", re.MULTILINE)


def outcomes_from_prompt(prompt):
    return {tuple(path.split(", ")): (int(a), int(b)) for path, a, b in _OUTCOME.findall(prompt)}


def bottom_up(outcomes):
    """Backward induction as a pass from the deepest decision points up (no recursion)."""
    value, choice = dict(outcomes), {}
    for depth in range(max(map(len, outcomes)) - 1, -1, -1):
        children = sorted(h for h in value if len(h) == depth + 1)
        for parent, group in itertools.groupby(children, key=lambda h: h[:depth]):
            best = max(group, key=lambda h: value[h][depth % 2])
            value[parent], choice[parent] = value[best], best[-1]
    path = ()
    while path in choice:
        path += (choice[path],)
    return list(path)


def subgame_perfect_paths(outcomes):
    """Paths of every strategy profile that is a Nash equilibrium of every subgame."""
    nodes = sorted({h[:d] for h in outcomes for d in range(len(h))})
    moves = {h: sorted({o[len(h)] for o in outcomes if o[:len(h)] == h}) for h in nodes}
    strategies = [[dict(zip(mine, pick)) for pick in itertools.product(*(moves[h] for h in mine))]
                  for mine in ([h for h in nodes if len(h) % 2 == p] for p in (0, 1))]

    def play(profile, start):
        while start not in outcomes:
            start += (profile[start],)
        return start

    def equilibrium(profile, start):
        base = outcomes[play(profile, start)]
        return all(outcomes[play({**profile, **other}, start)][p] <= base[p]
                   for p in (0, 1) for other in strategies[p])

    return [list(play({**s0, **s1}, ())) for s0 in strategies[0] for s1 in strategies[1]
            if all(equilibrium({**s0, **s1}, node) for node in nodes)]


def test_sequential_matches_bottom_up_pass_over_the_prompt():
    for difficulty in (1, 2, 3):
        for seed in range(800):
            problem = TASK.generate(seed, "train", "sequential", difficulty)
            outcomes = outcomes_from_prompt(problem.prompt)
            assert len(outcomes) == {1: 4, 2: 8, 3: 12}[difficulty]
            assert bottom_up(outcomes) == problem.answer


def test_sequential_is_the_unique_subgame_perfect_equilibrium():
    for _, instance in instances("sequential", 60, (1, 2)):
        outcomes = dict(instance.data)
        assert subgame_perfect_paths(outcomes) == [instance.answer]


def test_sequential_textbook_game():
    # entry game: the entrant (Player 1) enters (B) or stays out (A); the incumbent accommodates
    # (X) or fights (Y). Fighting is a non-credible threat: the entrant enters.
    outcomes = {("A", "X"): (0, 4), ("A", "Y"): (-1, 3), ("B", "X"): (2, 2), ("B", "Y"): (-3, -1)}
    assert sequential.backward_induction(outcomes) == ("B", "X")


# --------------------------------------------------------------------------- cooperative


def shapley_by_permutations(players, worth):
    """Average marginal contribution over all n! joining orders."""
    totals = [Fraction(0)] * players
    for order in itertools.permutations(range(1, players + 1)):
        joined = ()
        for player in order:
            bigger = tuple(sorted((*joined, player)))
            totals[player - 1] += worth[bigger] - (worth[joined] if joined else 0)
            joined = bigger
    return [total / factorial(players) for total in totals]


def test_shapley_matches_permutation_averaging():
    for _, instance in instances("cooperative", 500):
        worth = dict(instance.data)
        players = max(map(len, worth))
        want = shapley_by_permutations(players, worth)
        assert [Fraction(value) for value in instance.answer] == want
        assert sum(want) == worth[tuple(range(1, players + 1))]  # efficiency


def test_shapley_glove_game():
    # player 1 holds a left glove, players 2 and 3 right gloves; a pair is worth 1
    worth = {(1,): 0, (2,): 0, (3,): 0, (1, 2): 1, (1, 3): 1, (2, 3): 0, (1, 2, 3): 1}
    assert cooperative.shapley_values(3, worth) == [Fraction(2, 3), Fraction(1, 6), Fraction(1, 6)]


# --------------------------------------------------------------------------- auctions


def best_reply(utility, high, points=200_001):
    grid = np.linspace(0, high, points)
    return grid[np.argmax(utility(grid))], high / (points - 1)


@pytest.mark.parametrize("n, top, value", [(2, 10, 7), (3, 5, 2), (5, 100, 64), (8, 30, 29)])
def test_first_price_bid_is_a_best_reply(n, top, value):
    slope = (n - 1) / n  # the others bid slope * their value
    bid, step = best_reply(lambda b: (value - b) * np.minimum(b / (slope * top), 1) ** (n - 1),
                           value)
    assert abs(bid - float(auction.first_price_bid(n, Fraction(value)))) <= 2 * step


@pytest.mark.parametrize("n, top, value", [(2, 10, 7), (3, 5, 2), (4, 30, 21)])
def test_all_pay_bid_is_a_best_reply(n, top, value):
    def win(b):  # P(every other bid is below b) when others bid all_pay_bid(their value)
        others_value = np.minimum((b * n * top ** (n - 1) / (n - 1)) ** (1 / n), top)
        return (others_value / top) ** (n - 1)

    bid, step = best_reply(lambda b: value * win(b) - b, value)
    assert abs(bid - float(auction.all_pay_bid(n, top, Fraction(value)))) <= 2 * step


def monte_carlo(n, top, draws=400_000):
    """``draws`` samples of n values iid U[0, top], each sorted ascending."""
    return np.sort(np.random.default_rng(0).uniform(0, top, (draws, n)), axis=1)


@pytest.mark.parametrize("n, top", [(2, 1), (3, 12), (6, 40)])
def test_revenues_by_monte_carlo(n, top):
    values = monte_carlo(n, top)
    highest, second, want = values[:, -1], values[:, -2], float(auction.standard_revenue(n, top))
    assert abs(second.mean() - want) < 0.01 * top  # second price: the second-highest value
    assert abs(((n - 1) / n * highest).mean() - want) < 0.01 * top  # first price: b(highest)


@pytest.mark.parametrize("n, top, reserve", [(2, 1, 0), (2, 2, 1), (3, 10, 4), (4, 40, 31)])
def test_reserve_revenue_by_monte_carlo(n, top, reserve):
    values = monte_carlo(n, top)
    revenue = np.where(values[:, -1] >= reserve, np.maximum(values[:, -2], reserve), 0).mean()
    assert abs(revenue - float(auction.reserve_revenue(n, top, reserve))) < 0.01 * top
    assert auction.reserve_revenue(2, 2, 1) == 2 * Fraction(5, 12)  # r = 1/2 on [0, 1], scaled


@pytest.mark.parametrize("n, top, value", [(2, 10, 7), (4, 30, 21), (5, 8, 8)])
def test_first_price_payment_by_monte_carlo(n, top, value):
    payment = np.where(monte_carlo(n - 1, top)[:, -1] < value, (n - 1) / n * value, 0).mean()
    assert abs(payment - float(auction.first_price_payment(n, top, Fraction(value)))) < 0.01 * top


def test_second_price_payment():
    for _, instance in instances("auction", 300, (1,)):
        if instance.data[0] == "second_price":
            bids = instance.data[1]
            assert Fraction(instance.answer) == sorted(bids, reverse=True)[1]


# --------------------------------------------------------------------------- bayesian


def test_bayesian_equilibria_match_nashpy_on_the_ex_ante_game():
    """A pure Bayesian equilibrium is a pure equilibrium of the ex-ante game, where Player 2's
    strategies are plans (type 1's column, type 2's column) and payoffs are expectations over
    the prior (here times its denominator, to stay in integers)."""
    plans = list(itertools.product(range(2), repeat=2))
    for _, instance in instances("bayesian", 300):
        (num, den), ((first_1, second_1), (first_2, second_2)) = instance.data
        ex_ante = [[[num * one[r][a] + (den - num) * two[r][b] for a, b in plans]
                    for r in range(len(one))] for one, two in ((first_1, first_2),
                                                               (second_1, second_2))]
        want = sorted([matrix.ROWS[r], *(matrix.COLUMNS[c] for c in plans[j])]
                      for r, j in nashpy_pure(*ex_ante))
        assert sorted(instance.answer) == want


def test_bayesian_textbook_game():
    # type 1 wants to meet Player 1 (W under A, X under B), type 2 to avoid; Player 1 gets 1
    # for meeting. With prior 3/4 on type 1, A meets 3/4 of the time against (W, X).
    meet, avoid = ((1, 0), (0, 1)), ((0, 1), (1, 0))
    games = ((meet, meet), (meet, avoid))
    assert bayesian.pure_bayesian_equilibria(Fraction(3, 4), games) == [(0, 0, 1), (1, 1, 0)]


# --------------------------------------------------------------------------- verifier


def problem(category, answer):
    return tasks.Problem("GameTheory-v1", f"{category}/d1/test", "", answer, category, 1)


PAIRS = problem("normal_form_3x3", [["A", "W"], ["C", "Y"]])
NO_PAIRS = problem("normal_form_2x2", [])
MIXED = problem("mixed_2x2", {"p": "1/2", "q": "2/3"})
VALUE = problem("zero_sum", "1/2")
BID = problem("auction", "-7/3")
PATH = problem("sequential", ["B", "X", "L"])
SHAPLEY = problem("cooperative", ["29/6", "16/3", "17/6"])
TYPED = problem("bayesian", [["A", "W", "X"], ["B", "X", "X"]])

ACCEPTED = [
    (PAIRS, ["(A, W), (C, Y)", "(C, Y), (A, W)", "(a,w),(c,y)", " ( C , Y ) ; ( A , W ) ",
             "\\{(A, W), (C, Y)\\}", "{(A,W), (C,Y)}", "[(A, W), (C, Y)]", "(A, W) and (C, Y)",
             "$(A, W), (C, Y)$", "(A, W), (C, Y), (A, W)"]),
    (NO_PAIRS, ["none", "None", "\\text{none}", "NONE.", "\\emptyset", "\\varnothing", "{}"]),
    (MIXED, ["p = 1/2, q = 2/3", "q = 2/3, p = 1/2", "1/2, 2/3", "(0.5, 0.6667)",
             "p=\\frac{1}{2}, q=\\frac{2}{3}", "p = 0.5, q = 0.667", "P = 2/4; Q = 4/6",
             "\\left(\\dfrac{1}{2}, \\dfrac{2}{3}\\right)"]),
    (VALUE, ["1/2", "0.5", "\\frac{1}{2}", "\\tfrac{1}{2}", "2/4", " 1 / 2 ", "v = 1/2", "0.50",
             "$\\frac{1}{2}$", "+1/2"]),
    (BID, ["-7/3", "-\\frac{7}{3}", "\\frac{-7}{3}", "- 7/3", "-14/6"]),
    (PATH, ["B, X, L", "b, x, l", "B X L", "B -> X -> L", "B \\to X \\to L", "(B, X, L)",
            "B → X → L", "[B; X; L]"]),
    (SHAPLEY, ["(29/6, 16/3, 17/6)", "29/6, 16/3, 17/6", "[29/6, 16/3, 17/6]",
               "\\left(\\frac{29}{6}, \\frac{16}{3}, \\frac{17}{6}\\right)",
               "\\phi_1 = 29/6, \\phi_2 = 16/3, \\phi_3 = 17/6", "(58/12, 32/6, 17/6)"]),
    (TYPED, ["(A, W, X), (B, X, X)", "(b,x,x), (a,w,x)", "\\{(A, W, X); (B, X, X)\\}"]),
]

REJECTED = [  # (problem, answer, formatted)
    (PAIRS, "(A, W)", True), (PAIRS, "(A, W), (C, Y), (B, X)", True), (PAIRS, "none", True),
    (PAIRS, "(W, A), (Y, C)", True), (PAIRS, "A W, C Y", False), (PAIRS, "(A, W), (C, Y", False),
    (NO_PAIRS, "(A, W)", True), (NO_PAIRS, "nothing here", False),
    (MIXED, "p = 0.51, q = 2/3", True), (MIXED, "2/3, 1/2", True),
    (MIXED, "p = 2/3, q = 1/2", True), (MIXED, "1/2", False), (MIXED, "1/2, 2/3, 1", False),
    (VALUE, "0.51", True), (VALUE, "0.4999", True), (VALUE, "-1/2", True), (VALUE, "2", True),
    (VALUE, "1/2, 1/2", False), (VALUE, "about 1/2", False), (VALUE, "1/0", False),
    (BID, "7/3", True), (BID, "-2.333", True), (BID, "-2.33333333", True),
    (PATH, "B, X", True), (PATH, "L, X, B", True), (PATH, "B, Y, L", True),
    (PATH, "BXL", False), (PATH, "B, X, L2", False),
    (SHAPLEY, "(16/3, 29/6, 17/6)", True), (SHAPLEY, "(29/6, 16/3, 2.8333)", True),
    (SHAPLEY, "(29/6, 16/3)", False), (SHAPLEY, "(29/6, 16/3, 17/6, 0)", False),
    (TYPED, "(A, W, X)", True), (TYPED, "(A, X, W), (B, X, X)", True),
    (TYPED, "(A, W), (B, X)", False),
]


@pytest.mark.parametrize("case, texts", ACCEPTED, ids=lambda x: getattr(x, "category", ""))
def test_verifier_accepts_equivalent_forms(case, texts):
    for text in texts:
        boxed = f"\\boxed{{{text}}}"
        for response in (boxed, f"I think \\boxed{{0}} first... no: {boxed}."):
            score = TASK.verify(case, response)
            assert score == tasks.Score(1.0, True, True), (text, score)


@pytest.mark.parametrize("case, text, formatted", REJECTED)
def test_verifier_rejects_near_misses(case, text, formatted):
    assert TASK.verify(case, f"\\boxed{{{text}}}") == tasks.Score(0.0, False, formatted)


def test_last_box_wins_and_no_box_is_unformatted():
    right = TASK.answer_text(VALUE)
    assert TASK.verify(VALUE, f"{right} ... on reflection \\boxed{{1/3}}").correct is False
    assert TASK.verify(VALUE, "The value is 1/2.") == tasks.Score(0.0, False, False)


# --------------------------------------------------------------------------- generation


def test_generation_is_pinned():
    """Seeds name the same problems on every machine and in every process."""
    problem = TASK.generate(0, "train", "zero_sum", 2)
    assert problem == tasks.make("GameTheory-v1").generate(0, "train", "zero_sum", 2)
    assert problem.key == "zero_sum/d2/a504a013f4b4aec0"
    # rows A = (1, 5, -5), B = (-5, 1, -4): x = P(A) = 1/7 equalises W and Y at -29/7
    assert "A    1   5   -5\nB   -5   1   -4" in problem.prompt
    assert problem.answer == "-29/7"
