"""Auctions with closed-form answers (independent private values, risk-neutral bidders).

Rules. One object is sold to n bidders. In the distribution questions each bidder's value is
drawn independently and uniformly from [0, V] and bidders play the symmetric Bayesian Nash
equilibrium, whose closed forms are (b: bid, v: own value):

- first-price: b(v) = (n-1)/n * v; a bidder's expected payment is (v/V)^(n-1) * b(v);
- all-pay (everyone pays their bid): b(v) = (n-1)/n * v^n / V^(n-1);
- expected revenue of the first-price and the second-price auction: (n-1)/(n+1) * V
  (revenue equivalence);
- second-price with reserve price r (bidders bid their values; the object is sold only if
  the highest bid is at least r, at max(r, second-highest bid)):
  revenue = 2n/(n+1) * (V - r^(n+1)/V^n) - (V - r^n/V^(n-1)) (Myerson: E[virtual value]).

With listed bids, a second-price auction's winner pays the second-highest bid.
Difficulty 1: listed bids, first-price with 2 bidders; 2: first-price with more bidders,
expected revenue; 3: all-pay bids, expected payments, revenue with a reserve price (few
bidders and V <= 20, so that answers stay fractions one can work out by hand).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

from tasks.gametheory.base import Category, Instance, exact
from tasks.gametheory.formats import Number

SETTING = ("{n} risk-neutral bidders compete for one object. Each bidder's value is drawn "
           "independently and uniformly from [0, {V}] and is known only to that bidder. ")


def first_price_bid(n: int, value: Fraction) -> Fraction:
    return Fraction(n - 1, n) * value


def all_pay_bid(n: int, top: int, value: Fraction) -> Fraction:
    return Fraction(n - 1, n) * Fraction(value) ** n / Fraction(top) ** (n - 1)


def first_price_payment(n: int, top: int, value: Fraction) -> Fraction:
    return (Fraction(value) / top) ** (n - 1) * first_price_bid(n, value)


def standard_revenue(n: int, top: int) -> Fraction:
    return Fraction(n - 1, n + 1) * top


def reserve_revenue(n: int, top: int, reserve: int) -> Fraction:
    top, reserve = Fraction(top), Fraction(reserve)
    return (Fraction(2 * n, n + 1) * (top - reserve ** (n + 1) / top ** n)
            - (top - reserve ** n / top ** (n - 1)))


def second_price_payment(bids: tuple[int, ...]) -> int:
    return sorted(bids)[-2]


# --------------------------------------------------------------------------- questions


def _listed_bids(rng: random.Random) -> Instance:
    bids = tuple(rng.sample(range(1, 100), rng.randint(3, 6)))
    listed = ", ".join(f"bidder {i + 1} bids {bid}" for i, bid in enumerate(bids))
    question = (f"A second-price sealed-bid auction for one object: {listed}. The highest "
                "bidder wins. How much does the winner pay?")
    return Instance(("second_price", bids), question, exact(second_price_payment(bids)))


def _bid_question(n: int, top: int, value: int, kind: str) -> str:
    rules = {"first-price": "the highest bid wins and the winner pays their own bid",
             "all-pay": "the highest bid wins, and every bidder pays their own bid, win or lose"}
    return (SETTING.format(n=n, V=top) + f"In a {kind} sealed-bid auction ({rules[kind]}), "
            "bidders play the symmetric Bayesian Nash equilibrium. How much does a bidder "
            f"whose value is {value} bid?")


def _first_price(rng: random.Random, low: int, high: int) -> Instance:
    n, top = rng.randint(low, high), rng.randint(2, 100)
    value = rng.randint(1, top)
    return Instance(("first_price_bid", n, top, value), _bid_question(n, top, value,
                    "first-price"), exact(first_price_bid(n, value)))


def _all_pay(rng: random.Random) -> Instance:
    n, top = rng.randint(2, 4), rng.randint(2, 20)
    value = rng.randint(1, top)
    return Instance(("all_pay_bid", n, top, value), _bid_question(n, top, value, "all-pay"),
                    exact(all_pay_bid(n, top, value)))


def _revenue(rng: random.Random) -> Instance:
    n, top = rng.randint(2, 10), rng.randint(1, 200)
    kind = rng.choice(("first-price", "second-price"))
    question = (SETTING.format(n=n, V=top) + f"In a {kind} sealed-bid auction, bidders play "
                "the symmetric Bayesian Nash equilibrium (in a second-price auction: bidding "
                "their values). What is the seller's expected revenue?")
    return Instance(("revenue", kind, n, top), question, exact(standard_revenue(n, top)))


def _payment(rng: random.Random) -> Instance:
    n, top = rng.randint(2, 4), rng.randint(2, 20)
    value = rng.randint(1, top)
    question = (SETTING.format(n=n, V=top) + "In a first-price sealed-bid auction (the highest "
                "bid wins and pays its bid), bidders play the symmetric Bayesian Nash "
                f"equilibrium. What is the expected payment of a bidder whose value is {value} "
                "(zero when they lose)?")
    return Instance(("payment", n, top, value), question,
                    exact(first_price_payment(n, top, value)))


def _reserve(rng: random.Random) -> Instance:
    n, top = rng.randint(2, 3), rng.randint(2, 20)
    reserve = rng.randint(1, top - 1)
    question = (SETTING.format(n=n, V=top) + "The seller runs a second-price sealed-bid auction "
                f"with a reserve price of {reserve}: the object is sold only if the highest bid "
                f"is at least {reserve}, and then at the larger of {reserve} and the "
                "second-highest bid. Bidders bid their values. What is the seller's expected "
                "revenue?")
    return Instance(("reserve", n, top, reserve), question,
                    exact(reserve_revenue(n, top, reserve)))


QUESTIONS: dict[int, tuple[Callable[[random.Random], Instance], ...]] = {
    1: (_listed_bids, lambda rng: _first_price(rng, 2, 2)),
    2: (lambda rng: _first_price(rng, 3, 8), _revenue),
    3: (_all_pay, _payment, _reserve),
}


def _draw(rng: random.Random, difficulty: int) -> Instance:
    return rng.choice(QUESTIONS[difficulty])(rng)


CATEGORIES = (Category("auction", _draw, Number()),)
