"""GameTheory-v1: generated game-theory problems with exact answers (see ``task``)."""

from tasks.gametheory.task import GameTheory

__all__ = ["GameTheory"]
