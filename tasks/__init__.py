"""spiral's tasks: single-turn verifiable problem families behind one protocol and one registry.

>>> import tasks
>>> task = tasks.make("GameTheory-v1")
>>> problem = task.generate(seed=0, split="train")
>>> task.verify(problem, task.answer_text(problem)).correct
True
"""

from tasks.core import Problem, Score, Task, TaskSpec, list_tasks, make, register, spec

__all__ = [
    "Problem",
    "Score",
    "Task",
    "TaskCheckError",
    "TaskSpec",
    "check_task",
    "list_tasks",
    "make",
    "register",
    "spec",
]


def __getattr__(name: str):
    """``check_task`` and ``TaskCheckError`` load on first use, so that ``python -m
    tasks.check`` runs its module once."""
    if name in ("check_task", "TaskCheckError"):
        from tasks import check

        return getattr(check, name)
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")


# Built-in tasks: each is one module (or package) and one line here.
register("GameTheory-v1", "tasks.gametheory:GameTheory")
register("Deduction-v1", "tasks.deduction:Deduction")
register("Math-v1", "tasks.mathgen:Math")
