"""Reading YAML files with errors that name the file and the place (PyYAML's own messages
say ``in "<unicode string>"`` and span several lines)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from emoca.errors import InputError, file_problem

__all__ = ["read_yaml"]


def read_yaml(path: str | os.PathLike) -> Any:
    """``yaml.safe_load`` of a file (plain data only: no Python tags are ever constructed).

    Raises:
        FileNotFoundError: no such file.
        InputError: not UTF-8 text or not valid YAML; one line ``<path>: <problem>`` with
            the line and column where the parser stopped.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(file_problem(path, f"not a UTF-8 text file (byte {e.start})")) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise InputError(file_problem(path, f"not valid YAML{where}: {problem}")) from None
