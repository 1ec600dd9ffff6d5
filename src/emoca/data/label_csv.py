"""A plain image folder with a CSV of labels (the user's own data).

CSV columns (header row required, names case-insensitive, any order, unknown columns
ignored): ``path`` (required; relative to the CSV's folder or ``image_root``, or
absolute), ``expression`` (class index 0..7 or a name such as ``Happy`` / ``angry``),
``valence``, ``arousal`` (floats in [-1, 1]), optionally ``group`` (identity / video).
Every column but ``path`` may be absent, and any cell may be empty: missing labels become
``expression = -1`` and ``nan`` valence/arousal.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from emoca.data.records import FaceRecord, parse_expression

__all__ = ["read_label_csv"]


def _float_or_nan(text: str | None) -> float:
    if text is None or not text.strip():
        return float("nan")
    return float(text)


def read_label_csv(
    csv_path: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> list[FaceRecord]:
    """Read a folder-of-images label file.

    Args:
        csv_path: the CSV file.
        image_root: folder the relative paths refer to (default: the CSV's folder). The
            records' ``path`` is made absolute against it; ``key`` keeps the path as
            written.

    Raises:
        ValueError: no ``path`` column, or a bad value (the message names the line).
    """
    csv_path = Path(csv_path)
    root = Path(image_root) if image_root is not None else csv_path.parent
    records: list[FaceRecord] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "path" not in fields:
            raise ValueError(f"{csv_path}: a 'path' column is required, got {list(fields)}")

        def cell(row: dict[str, str], name: str) -> str | None:
            col = fields.get(name)
            return None if col is None else row.get(col)

        for row in reader:
            rel = (cell(row, "path") or "").strip()
            if not rel:
                raise ValueError(f"{csv_path}, line {reader.line_num}: empty path")
            try:
                expression = parse_expression(cell(row, "expression"))
                valence = _float_or_nan(cell(row, "valence"))
                arousal = _float_or_nan(cell(row, "arousal"))
            except ValueError as exc:
                raise ValueError(f"{csv_path}, line {reader.line_num}: {exc}") from exc
            records.append(
                FaceRecord(
                    path=str(root / rel) if not Path(rel).is_absolute() else rel,
                    key=rel,
                    expression=expression,
                    valence=valence,
                    arousal=arousal,
                    group=(cell(row, "group") or "").strip(),
                )
            )
    return records
