"""Evaluation as in the EMOCA paper's Table 1: emotion read from images and from 3D codes.

For each *route* (a network and its input: the image emotion network on crops, EmoMLP on
FLAME codes) the predictions over a labelled set give the Table-1 columns

    V-PCC  V-CCC  V-RMSE  V-SAGR  A-PCC  A-CCC  A-RMSE  A-SAGR  E-ACC

(valence/arousal metrics over items with V/A labels, expression accuracy over items with
a class; definitions in :mod:`emoca.metrics`) plus ``N-VA``, ``N-EXP`` (item counts) and
a per-class confusion matrix. :class:`EvaluationReport` holds the routes side by side and
writes Markdown, CSV, JSON and one confusion-matrix PNG per route (drawn with Pillow).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from emoca import metrics
from emoca.data.records import EXPRESSION_NAMES

__all__ = [
    "TABLE1_COLUMNS",
    "EmotionPredictions",
    "EvaluationReport",
    "confusion_png",
    "predict_emotion",
    "table1_metrics",
]

TABLE1_COLUMNS: tuple[str, ...] = ("V-PCC", "V-CCC", "V-RMSE", "V-SAGR",
                                   "A-PCC", "A-CCC", "A-RMSE", "A-SAGR", "E-ACC")
COUNT_COLUMNS: tuple[str, ...] = ("N-VA", "N-EXP")


@dataclass(frozen=True)
class EmotionPredictions:
    """Predictions and labels of one route over a dataset (numpy, N items).

    Attributes:
        keys: item keys.
        logits: (N, C) expression scores.
        valence, arousal: (N,) predictions.
        gt_expression: (N,) int, -1 = unlabelled.
        gt_valence, gt_arousal: (N,) float, nan = unlabelled.
    """

    keys: list[str]
    logits: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    gt_expression: np.ndarray
    gt_valence: np.ndarray
    gt_arousal: np.ndarray

    @property
    def expression(self) -> np.ndarray:
        """(N,) predicted class."""
        return self.logits.argmax(axis=1)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """One row per item: key, predicted and true expression / valence / arousal."""
        path = Path(path)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["key", "expression", "valence", "arousal", "gt_expression",
                        "gt_valence", "gt_arousal"])
            for i, key in enumerate(self.keys):
                w.writerow([key, int(self.expression[i]), f"{self.valence[i]:.6g}",
                            f"{self.arousal[i]:.6g}", int(self.gt_expression[i]),
                            f"{self.gt_valence[i]:.6g}", f"{self.gt_arousal[i]:.6g}"])
        return path


@torch.no_grad()
def predict_emotion(net: Callable[[torch.Tensor], Any], dataset: Dataset, input_key: str,
                    batch_size: int = 32, device: torch.device | str = "cpu",
                    num_workers: int = 0, progress: bool = False) -> EmotionPredictions:
    """Run an emotion network over a labelled dataset.

    Args:
        net: ``inputs -> EmotionOutput`` (EmotionNet on crops, EmoMLP on codes), in eval
            mode.
        dataset: items with ``input_key``, ``expression``, ``va`` and optionally ``key``
            (:class:`emoca.data.FaceCropDataset`, :class:`emoca.train.data.CodesDataset`).
        input_key: ``image`` or ``codes``.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "v", "a", "e", "gv", "ga")}
    keys: list[str] = []
    for batch in tqdm(loader, desc="predict", disable=not progress):
        out = net(batch[input_key].to(device))
        parts["logits"].append(out.expression_logits.float().cpu().numpy())
        parts["v"].append(out.valence.float().cpu().numpy())
        parts["a"].append(out.arousal.float().cpu().numpy())
        parts["e"].append(batch["expression"].numpy())
        parts["gv"].append(batch["va"][:, 0].numpy())
        parts["ga"].append(batch["va"][:, 1].numpy())
        if "key" in batch:
            keys += [str(k) for k in batch["key"]]
        else:
            keys += [str(int(i)) for i in batch["index"]]
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    return EmotionPredictions(keys=keys, logits=cat["logits"].reshape(len(keys), -1),
                              valence=cat["v"], arousal=cat["a"],
                              gt_expression=cat["e"].astype(np.int64),
                              gt_valence=cat["gv"], gt_arousal=cat["ga"])


def table1_metrics(pred: EmotionPredictions) -> tuple[dict[str, float], np.ndarray]:
    """Table-1 columns (and counts) of one route, and its (C, C) confusion matrix.

    Columns without any labelled item are ``nan``.
    """
    row: dict[str, float] = {}
    has_va = np.isfinite(pred.gt_valence) & np.isfinite(pred.gt_arousal)
    for prefix, p, g in (("V", pred.valence, pred.gt_valence),
                         ("A", pred.arousal, pred.gt_arousal)):
        p, g = p[has_va], g[has_va]
        row[f"{prefix}-PCC"] = metrics.pcc(p, g)
        row[f"{prefix}-CCC"] = metrics.ccc(p, g)
        row[f"{prefix}-RMSE"] = metrics.rmse(p, g)
        row[f"{prefix}-SAGR"] = metrics.sagr(p, g)
    has_e = pred.gt_expression >= 0
    n_classes = pred.logits.shape[1] if pred.logits.ndim == 2 else len(EXPRESSION_NAMES)
    if has_e.any():
        em = metrics.expression_metrics(pred.logits[has_e], pred.gt_expression[has_e],
                                        num_classes=n_classes)
        row["E-ACC"], conf = em["accuracy"], em["confusion"]
    else:
        row["E-ACC"], conf = float("nan"), np.zeros((n_classes, n_classes), dtype=np.int64)
    row["N-VA"] = float(has_va.sum())
    row["N-EXP"] = float(has_e.sum())
    return row, conf


def _fmt(value: float, count: bool = False) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{int(value)}" if count else f"{value:.3f}"


def confusion_png(confusion: np.ndarray, path: str | os.PathLike,
                  class_names: Sequence[str] = EXPRESSION_NAMES, title: str = "") -> Path:
    """Draw a confusion matrix (rows = truth, columns = prediction) as a PNG with Pillow.

    Cells are shaded by the row-normalised value (recall per true class) and show the
    count.
    """
    from PIL import Image, ImageDraw, ImageFont

    c = np.asarray(confusion)
    n = c.shape[0]
    names = list(class_names)[:n] + [str(i) for i in range(len(class_names), n)]
    cell, left, top = 56, 90, 40 + (16 if title else 0)
    img = Image.new("RGB", (left + n * cell + 10, top + n * cell + 30), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((left, 4), title, fill="black", font=font)
    rows = c.sum(axis=1, keepdims=True)
    frac = np.divide(c, rows, out=np.zeros(c.shape), where=rows > 0)
    for i in range(n):
        draw.text((4, top + i * cell + cell // 2 - 6), names[i][:12], fill="black", font=font)
        draw.text((left + i * cell + 2, top - 16), names[i][:8], fill="black", font=font)
        for j in range(n):
            shade = int(round(255 * (1.0 - frac[i, j])))
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255),
                           outline="grey")
            draw.text((x0 + 6, y0 + cell // 2 - 6), str(int(c[i, j])),
                      fill="white" if frac[i, j] > 0.5 else "black", font=font)
    draw.text((left, top + n * cell + 8), "rows: true class, columns: predicted",
              fill="black", font=font)
    path = Path(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path


@dataclass
class EvaluationReport:
    """Table-1 rows of several routes on one dataset.

    Attributes:
        dataset: a name for the data (shown in the Markdown title).
        rows: route name -> {column: value} (:data:`TABLE1_COLUMNS` + counts).
        confusion: route name -> (C, C) counts.
    """

    dataset: str = ""
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_predictions(cls, predictions: Mapping[str, EmotionPredictions],
                         dataset: str = "") -> EvaluationReport:
        report = cls(dataset=dataset)
        for route, pred in predictions.items():
            report.rows[route], report.confusion[route] = table1_metrics(pred)
        return report

    @property
    def columns(self) -> tuple[str, ...]:
        return TABLE1_COLUMNS + COUNT_COLUMNS

    def to_markdown(self) -> str:
        cols = self.columns
        lines = [f"# Emotion recognition ({self.dataset})" if self.dataset else
                 "# Emotion recognition", "",
                 "| route | " + " | ".join(cols) + " |",
                 "|---|" + "---:|" * len(cols)]
        for route, row in self.rows.items():
            cells = [_fmt(row.get(c, float("nan")), count=c.startswith("N-")) for c in cols]
            lines.append(f"| {route} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("V/A: PCC, CCC (Lin), RMSE, SAGR (sign agreement); E-ACC: expression "
                     "accuracy over the 8 AffectNet classes.")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["route", *self.columns])
        for route, row in self.rows.items():
            w.writerow([route, *[repr(float(row.get(c, float("nan")))) for c in self.columns]])
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if isinstance(v, float) and math.isnan(v) else float(v)

        return {
            "dataset": self.dataset,
            "columns": list(self.columns),
            "routes": {r: {c: clean(row.get(c, float("nan"))) for c in self.columns}
                       for r, row in self.rows.items()},
            "confusion": {r: m.tolist() for r, m in self.confusion.items()},
            "classes": list(EXPRESSION_NAMES),
        }

    def write(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``report.md``, ``metrics.csv``, ``metrics.json`` and
        ``confusion_<route>.png``; returns the paths by name."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out / "report.md", "csv": out / "metrics.csv",
                 "json": out / "metrics.json"}
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        paths["csv"].write_text(self.to_csv(), encoding="utf-8")
        paths["json"].write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        for route, conf in self.confusion.items():
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in route)
            paths[f"confusion_{route}"] = confusion_png(conf, out / f"confusion_{safe}.png",
                                                        title=route)
        return paths
