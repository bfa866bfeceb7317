"""spiral: a language model teaches itself to reason by self-play on zero-sum text games."""

__version__ = "0.1.0"
