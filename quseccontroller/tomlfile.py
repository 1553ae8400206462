"""The TOML files QuSeC is given (policy, inventory): read them, and refuse them with every problem."""
from __future__ import annotations

import difflib
import tomllib
from pathlib import Path


class FileProblems(ValueError):
    """A file that cannot be used; ``problems`` lists "FILE: ENTRY: field: problem", all at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read(path: str | Path, error: type[FileProblems]) -> dict:
    """The parsed TOML of ``path``; ``error`` naming the file when it cannot be read or parsed."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise error([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise error([f"{path}: TOML syntax: {exc}"]) from exc


def closest(word: object, known) -> str | None:
    """The known name closest to ``word`` (a typo's likely meaning), or None."""
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, list(known), n=1)
    return close[0] if close else None
