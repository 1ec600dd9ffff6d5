"""One error hierarchy for problems a user can fix.

Every error the library raises on purpose derives from :class:`EmocaError`; its message is
one line that names the file (or option) and the problem, so the command line prints it
as it is, with no traceback: exit status 2 for :class:`UsageError`, 1 for everything else.
Subclasses also derive from the builtin a caller would naturally catch (``ValueError``,
``FileNotFoundError``...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import os

__all__ = [
    "AssetError",
    "EmocaError",
    "InputError",
    "UnsafeFileError",
    "UsageError",
    "file_problem",
]


class EmocaError(Exception):
    """Base class: a one-line, user-facing message."""


class UsageError(EmocaError, ValueError):
    """A bad option or argument (the command line exits with status 2)."""


class InputError(EmocaError, ValueError):
    """An input file or array that cannot be used (unreadable, wrong layout, wrong values)."""


class UnsafeFileError(InputError):
    """A file refused before anything in it is executed or allocated (code, bombs, truncation)."""


class AssetError(EmocaError, FileNotFoundError):
    """A model file that is missing or unusable; the message says which command fixes it."""


def file_problem(path: str | os.PathLike | None, problem: str) -> str:
    """``"<path>: <problem>"`` on one line (newlines folded), the format every error uses."""
    text = " ".join(str(problem).split())
    return f"{os.fspath(path)}: {text}" if path is not None else text
