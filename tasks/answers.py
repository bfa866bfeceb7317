"""Reading answers out of model text: the boxed content, exact numbers, vectors, sets of
profiles and action sequences. Every function here returns ``None`` on text it cannot read;
none raises.

Numbers are read exactly (``fractions.Fraction``): integers, decimals without exponents
(``0.5``), fractions (``3/4``, ``\\frac{3}{4}``, ``-\\dfrac{3}{4}``); at most ``MAX_DIGITS``
digits each, so that no answer can make the reader slow.
"""

from __future__ import annotations

import re
from fractions import Fraction

from envs.core import last_boxed

MAX_DIGITS = 30
MAX_CONTENT = 2000  # longer boxed contents are not answers

_UNWRAP = re.compile(r"\\(?:text|mathrm|textbf|mathbf|operatorname)\s*\{([^{}]*)\}")
_DROP = re.compile(r"\\left|\\right|\\[,;:! ]|\$|~|\\displaystyle")
_INT = rf"\d{{1,{MAX_DIGITS}}}"
_DEC = rf"{_INT}(?:\.{_INT})?"
_NUMBER = re.compile(
    rf"(?P<sign>[+-]?)\s*(?:"
    rf"\\[dt]?frac\s*\{{\s*(?P<fn>[+-]?\s*{_INT})\s*\}}\s*\{{\s*(?P<fd>{_INT})\s*\}}"
    rf"|(?P<num>{_DEC})(?:\s*/\s*(?P<den>{_DEC}))?)"
)
_LABEL = re.compile(r"^\s*(?P<label>\\?[A-Za-z][\w\\{}^]*)\s*=\s*")
_NONE = {"none", "no", "empty", "∅", "\\emptyset", "\\varnothing", "{}", "\\{\\}", "[]", "()",
         "no equilibrium", "no pure equilibrium", "no pure nash equilibrium"}
_ARROWS = re.compile(r"\\to|\\rightarrow|->|→|=>")


def boxed(response: object) -> str | None:
    """The normalised content of the last ``\\boxed{...}`` in ``response``, or None."""
    if not isinstance(response, str):
        return None
    content = last_boxed(response)
    if content is None or len(content) > MAX_CONTENT:
        return None
    return normalize(content)


def normalize(content: str) -> str:
    """Drop LaTeX decoration (``$``, ``\\left``, spacing commands, ``\\text{...}`` wrappers)."""
    for _ in range(3):
        content = _UNWRAP.sub(r"\1", content)
    return _DROP.sub(" ", content).strip().rstrip(".").strip()


def _strip_brackets(text: str, openers: str = "([{<") -> str:
    """``text`` without one pair of brackets (``openers``) around all of it (``(A, X), (B, Y)``
    keeps its own)."""
    text = text.strip()
    if text.startswith("\\{") and text.endswith("\\}"):
        return text[2:-2].strip()
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    if len(text) < 2 or text[0] not in openers or pairs[text[0]] != text[-1]:
        return text
    depth = 0
    for i, char in enumerate(text):
        depth += (char == text[0]) - (char == text[-1])
        if depth == 0 and i < len(text) - 1:
            return text
    return text[1:-1].strip()


def parse_number(text: str) -> Fraction | None:
    """``text`` as one exact number, or None (a stray word or a second number: None)."""
    match = _NUMBER.fullmatch(text.strip())
    if match is None:
        return None
    if match["fn"] is not None:
        numerator, denominator = int(match["fn"].replace(" ", "")), int(match["fd"])
        return _signed(match["sign"], Fraction(numerator, denominator)) if denominator else None
    num = Fraction(match["num"])
    den = Fraction(match["den"]) if match["den"] is not None else Fraction(1)
    return _signed(match["sign"], num / den) if den else None


def _signed(sign: str, value: Fraction) -> Fraction:
    return -value if sign == "-" else value


def parse_vector(text: str, names: tuple[str, ...] = ()) -> list[Fraction] | None:
    """A comma/semicolon-separated list of numbers, optionally bracketed and labelled
    (``p = 1/2, q = 1/3``). If every element is labelled and the labels are exactly ``names``
    (any order, any case), the values come back in the order of ``names``."""
    parts = [part for part in re.split(r"[,;]|\\quad", _strip_brackets(text)) if part.strip()]
    labels, values = [], []
    for part in parts:
        label = _LABEL.match(part)
        value = parse_number(part[label.end():] if label else part)
        if value is None:
            return None
        labels.append(label["label"].lower() if label else None)
        values.append(value)
    if names and sorted(map(str, labels)) == sorted(name.lower() for name in names):
        order = {label: value for label, value in zip(labels, values)}
        return [order[name.lower()] for name in names]
    return values or None


def parse_single(text: str) -> Fraction | None:
    """One number, optionally labelled (``v = 7/3``)."""
    label = _LABEL.match(text)
    return parse_number(text[label.end():] if label else text)


def parse_profiles(text: str, size: int) -> set[tuple[str, ...]] | None:
    """A set of letter tuples of length ``size`` such as ``(A, X), (B, Y)`` (upper-cased),
    ``none`` for the empty set, or None if anything else is in the text."""
    if text.strip().lower() in _NONE:
        return set()
    inner = _strip_brackets(text, "[{")
    if inner.strip().lower() in _NONE:
        return set()
    pattern = re.compile(r"\(\s*([A-Za-z])" + r"\s*,\s*([A-Za-z])" * (size - 1) + r"\s*\)")
    profiles = {tuple(letter.upper() for letter in found) for found in pattern.findall(inner)}
    rest = re.sub(r"[\s,;]|\band\b", "", pattern.sub("", inner))
    return profiles if profiles and not rest else None


def parse_sequence(text: str) -> list[str] | None:
    """A sequence of one-letter labels separated by commas, spaces or arrows (upper-cased)."""
    tokens = re.split(r"[\s,;]+", _ARROWS.sub(" ", _strip_brackets(text)))
    tokens = [token for token in tokens if token]
    if not tokens or not all(len(token) == 1 and token.isascii() and token.isalpha()
                             for token in tokens):
        return None
    return [token.upper() for token in tokens]

