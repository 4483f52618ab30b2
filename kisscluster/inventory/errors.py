"""Bad input, reported all at once: every problem names its file and its field."""

from collections.abc import Callable
from typing import NamedTuple

#: Reports a problem of one file: (field, message).
Report = Callable[[str, str], None]


class Problem(NamedTuple):
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


class InventoryError(Exception):
    """Bad input: every problem found, each naming its file and field. Nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"the inventory found {len(problems)} problem(s); nothing was written:\n{lines}"
        )


class Problems:
    """The problems found so far; `check()` raises them together."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    def add(self, file: str, field_name: str, message: str) -> None:
        self.found.append(Problem(file, field_name, message))

    def check(self) -> None:
        if self.found:
            raise InventoryError(self.found)

    def report(self, file: str, prefix: str = "") -> Report:
        """Reports problems of `file`, each field named `prefix + field`."""
        return lambda field_name, message: self.add(file, prefix + field_name, message)
