"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class MMKerasError(Exception):
    """A mistake in the user's recipe, data or environment (not a bug in mmkeras)."""


class RecipeError(MMKerasError):
    """One or more problems in a recipe; ``problems`` holds each as one line."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        if len(self.problems) == 1:  # each problem already names its file and line
            super().__init__(self.problems[0])
        else:
            head = f"{source}: " if source else ""
            lines = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{head}{len(self.problems)} problems\n{lines}")


class ComponentError(MMKerasError):
    """A component could not be found or loaded."""


class DataError(MMKerasError):
    """A data file or row that cannot be used."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
