"""Data modules for training: face crops from the crop cache, or FLAME codes from an ``.npz``.

Sampling is deterministic given ``(seed, epoch)``: every sampler here draws its order from
a generator seeded with both, so a run resumed from a checkpoint sees the same batches
as an uninterrupted one. When Lightning restores a checkpoint written in the middle of an
epoch, the data module skips the batches of that epoch that were already trained on
(read from the restored loop progress), instead of starting the epoch again.

Samplers:

* ``random``: a fresh permutation per epoch.
* ``balanced_expr``: draws with replacement, every expression class equally likely
  (EMOCA's ``sampler: balanced_expr``; weights from
  :func:`emoca.data.class_balanced_weights`).
* ``group``: K images of one identity after another (DECA's ``train_K``), groups in a
  fresh order per epoch; what the detail-code exchange needs. Multi-GPU runs shard the
  indices of this sampler across processes, which breaks the groups: use it on one device.

Codes file (``.npz``, written by :func:`save_codes`): ``shape`` (N, 100), ``exp`` (N, 50),
``pose`` (N, 6: global 3, jaw 3), ``expression`` (N,) int (-1 = none), ``valence``,
``arousal`` (N,) float (nan = none), ``key`` (N,) str.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm import tqdm

from emoca.data.crop_cache import FaceCropDataset
from emoca.data.records import FaceRecord
from emoca.data.sampling import class_balanced_weights

__all__ = [
    "CODE_INPUTS",
    "CodesDataModule",
    "CodesDataset",
    "CropDataModule",
    "EpochSampler",
    "GroupSampler",
    "ResumableDataLoader",
    "extract_codes",
    "load_codes",
    "save_codes",
    "split_indices",
]

SAMPLERS = ("random", "balanced_expr", "group")

# EmoMLP input pieces: name -> (source array, columns)
CODE_INPUTS: Mapping[str, tuple[str, slice]] = {
    "shape": ("shape", slice(None)),
    "exp": ("exp", slice(None)),
    "global_pose": ("pose", slice(0, 3)),
    "jaw_pose": ("pose", slice(3, 6)),
}


def _generator(seed: int, epoch: int) -> torch.Generator:
    # Distinct, reproducible streams per (seed, epoch).
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


class _ResumableSampler(Sampler[int]):
    """Base: ``set_epoch`` (called by Lightning each epoch) and a one-off skip on resume."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, number of indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_once(self, epoch: int, n_indices: int) -> None:
        """Drop the first ``n_indices`` of epoch ``epoch``'s order (already trained on)."""
        self._skip = (int(epoch), int(n_indices))

    def _order(self) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self._skip is not None and self._skip[0] == self.epoch:
            order = order[self._skip[1]:]
            self._skip = None
        return iter(order)


class EpochSampler(_ResumableSampler):
    """Shuffled (or weighted, with replacement) indices, deterministic per (seed, epoch).

    Args:
        n: dataset size.
        weights: optional (n,) sampling weights: draws ``num_samples`` with replacement.
        shuffle: permute (ignored with weights); False gives ``0..n-1``.
        num_samples: draws per epoch with weights (default n).
        seed: base seed.
    """

    def __init__(self, n: int, weights: Sequence[float] | np.ndarray | None = None,
                 shuffle: bool = True, num_samples: int | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        self.n = int(n)
        self.weights = None if weights is None else torch.as_tensor(
            np.asarray(weights, dtype=np.float64))
        if self.weights is not None and (self.weights.numel() != self.n
                                         or not bool((self.weights > 0).any())):
            raise ValueError("weights must have one positive entry at least and length n")
        self.shuffle = shuffle
        self.num_samples = int(num_samples) if num_samples is not None else self.n

    def _order(self) -> list[int]:
        g = _generator(self.seed, self.epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples, replacement=True,
                                     generator=g).tolist()
        if self.shuffle:
            return torch.randperm(self.n, generator=g).tolist()
        return list(range(self.n))

    def __len__(self) -> int:
        return self.num_samples if self.weights is not None else self.n


class GroupSampler(_ResumableSampler):
    """Runs of ``k`` indices of one group each (groups shuffled per epoch).

    Groups with fewer than ``k`` members repeat members (drawn with replacement); every
    group appears once per epoch. Use a batch size that is a multiple of ``k``.
    """

    def __init__(self, groups: Sequence[str], k: int, seed: int = 0) -> None:
        super().__init__(seed)
        if k < 1:
            raise ValueError("k must be >= 1")
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(str(g), []).append(i)
        self.groups = [members[g] for g in sorted(members)]
        self.k = int(k)

    def _order(self) -> list[int]:
        g = _generator(self.seed, self.epoch)
        order: list[int] = []
        for gi in torch.randperm(len(self.groups), generator=g).tolist():
            m = self.groups[gi]
            if len(m) >= self.k:
                pick = torch.randperm(len(m), generator=g)[: self.k].tolist()
            else:
                pick = torch.randint(len(m), (self.k,), generator=g).tolist()
            order += [m[j] for j in pick]
        return order

    def __len__(self) -> int:
        return len(self.groups) * self.k


def split_indices(n: int, val_fraction: float, seed: int = 0,
                  groups: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split of ``range(n)``.

    With ``groups`` (identity / video per item) whole groups go to one side, so no person
    is in both. At least one item (group) goes to validation when ``val_fraction > 0``
    and ``n >= 2``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0 or n < 2:
        return list(range(n)), []
    g = np.random.default_rng(seed)
    if groups is not None and any(groups):
        names = sorted({str(x) for x in groups})
        n_val = max(1, int(round(len(names) * val_fraction)))
        if n_val >= len(names):
            raise ValueError("too few groups for a validation split")
        val_names = set(g.permutation(names)[:n_val].tolist())
        val = [i for i in range(n) if str(groups[i]) in val_names]
        train = [i for i in range(n) if str(groups[i]) not in val_names]
        return train, val
    perm = g.permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def _labels_to_records(labels: Sequence[int]) -> list[FaceRecord]:
    return [FaceRecord(path="", key=str(i), expression=int(v)) for i, v in enumerate(labels)]


class ResumableDataLoader(DataLoader):
    """A DataLoader whose sampler resumes itself (see :class:`_ResumeMixin`).

    Having ``state_dict`` / ``load_state_dict`` tells Lightning that the loader handles
    mid-epoch resumption, which it does through the sampler's skip; nothing else needs
    saving because the order follows from ``(seed, epoch)``.
    """

    def state_dict(self) -> dict[str, Any]:
        return {"sampler_epoch": int(getattr(self.sampler, "epoch", 0))}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


class _ResumeMixin:
    """Skips the already-trained part of the epoch when Lightning resumes mid-epoch."""

    trainer: Any

    def _arm_resume(self, sampler: Sampler, batch_size: int) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is None or not isinstance(sampler, _ResumableSampler):
            return
        if getattr(trainer, "ckpt_path", None) is None:
            return
        # Lightning's in-epoch batch counter is not final when a checkpoint is written from a
        # batch-end hook; the optimiser step count is. Batches trained in the current epoch:
        n_batches = len(sampler) // batch_size
        done = (int(trainer.global_step) * int(trainer.accumulate_grad_batches)
                - int(trainer.current_epoch) * n_batches)
        if 0 < done < n_batches:
            sampler.skip_once(trainer.current_epoch, done * batch_size)


def _make_sampler(kind: str, n: int, seed: int, labels: Sequence[int] | None = None,
                  groups: Sequence[str] | None = None, k: int = 1) -> _ResumableSampler:
    if kind == "random":
        return EpochSampler(n, shuffle=True, seed=seed)
    if kind == "balanced_expr":
        if labels is None:
            raise ValueError("balanced_expr sampling needs expression labels")
        weights = class_balanced_weights(_labels_to_records(labels))
        if not (weights > 0).any():
            raise ValueError("balanced_expr sampling: no item has an expression label")
        return EpochSampler(n, weights=weights, seed=seed)
    if kind == "group":
        if groups is None or not any(groups):
            raise ValueError("group sampling needs a 'group' (identity) for every item")
        return GroupSampler(groups, k, seed=seed)
    raise ValueError(f"unknown sampler {kind!r}; use one of {', '.join(SAMPLERS)}")


class CropDataModule(_ResumeMixin, L.LightningDataModule):
    """Face crops from crop caches written by ``emoca prepare``.

    Args:
        cache: training cache folder.
        val_cache: validation cache; default: ``val_fraction`` of ``cache`` (split by group
            when the entries have one).
        batch_size, val_batch_size: images per step (per device).
        sampler: ``random``, ``balanced_expr`` or ``group``.
        images_per_identity: K for the ``group`` sampler.
        require: labels every training item must have (``expression``, ``va``,
            ``landmarks``), see :class:`emoca.data.FaceCropDataset`.
        num_workers: DataLoader worker processes.
        seed: sampling and split seed.
    """

    def __init__(self, cache: str | os.PathLike, val_cache: str | os.PathLike | None = None,
                 val_fraction: float = 0.05, batch_size: int = 32,
                 val_batch_size: int | None = None, sampler: str = "random",
                 images_per_identity: int = 1, require: Sequence[str] = (),
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
        if sampler == "group" and batch_size % images_per_identity:
            raise ValueError(f"batch_size {batch_size} is not a multiple of "
                             f"images_per_identity {images_per_identity}")
        self.cache = Path(cache)
        self.val_cache = Path(val_cache) if val_cache else None
        self.val_fraction = float(val_fraction)
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.sampler_kind = sampler
        self.k = int(images_per_identity)
        self.require = tuple(require)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full = FaceCropDataset(self.cache, require=self.require)
        if len(full) == 0:
            raise ValueError(f"{self.cache}: no usable crops (required labels: "
                             f"{list(self.require) or 'none'})")
        if self.val_cache is not None:
            self.train_set, self.val_set = full, FaceCropDataset(self.val_cache,
                                                                 require=self.require)
            return
        groups = [e.get("group", "") for e in full.entries]
        train, val = split_indices(len(full), self.val_fraction, self.seed,
                                   groups if all(groups) else None)
        self.train_set, self.val_set = Subset(full, train), Subset(full, val)

    def _entries(self, ds: Dataset) -> list[dict[str, Any]]:
        if isinstance(ds, Subset):
            base = ds.dataset.entries  # type: ignore[attr-defined]
            return [base[i] for i in ds.indices]
        return ds.entries  # type: ignore[attr-defined]

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        entries = self._entries(self.train_set)
        sampler = _make_sampler(self.sampler_kind, len(entries), self.seed,
                                labels=[int(e.get("expression", -1)) for e in entries],
                                groups=[str(e.get("group", "")) for e in entries], k=self.k)
        self._arm_resume(sampler, self.batch_size)
        return ResumableDataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                                   num_workers=self.num_workers, drop_last=True,
                                   persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=self.val_batch_size, shuffle=False,
                          num_workers=self.num_workers, drop_last=False)


# ----------------------------------------------------------------------------- codes


def save_codes(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write a codes file (see module doc); missing label arrays are filled as unlabelled."""
    n = len(arrays["shape"])
    out = {k: np.asarray(v) for k, v in arrays.items()}
    out.setdefault("expression", np.full(n, -1, dtype=np.int64))
    out.setdefault("valence", np.full(n, np.nan, dtype=np.float32))
    out.setdefault("arousal", np.full(n, np.nan, dtype=np.float32))
    out.setdefault("key", np.array([str(i) for i in range(n)]))
    for k, v in out.items():
        if len(v) != n:
            raise ValueError(f"codes array {k!r} has {len(v)} rows, expected {n}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return path


def load_codes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a codes file; raises ValueError naming missing arrays."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    missing = [k for k in ("shape", "exp", "pose") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: codes file lacks {missing}")
    return arrays


@torch.no_grad()
def extract_codes(encode: Callable[[torch.Tensor], Any], dataset: Dataset,
                  batch_size: int = 32, device: torch.device | str = "cpu",
                  num_workers: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """Run an encoder over a crop dataset and collect codes with the labels.

    Args:
        encode: ``images (B, 3, 224, 224) -> object`` with ``shape``, ``exp`` and ``pose``
            tensors, e.g. ``lambda x: emoca.encode(x, detail=False)``.
        dataset: items as :class:`emoca.data.FaceCropDataset` gives them.
    Returns:
        Arrays for :func:`save_codes`.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("shape", "exp", "pose", "expression", "valence",
                                           "arousal")}
    keys: list[str] = []
    for batch in tqdm(loader, desc="encode", disable=not progress):
        codes = encode(batch["image"].to(device))
        for name in ("shape", "exp", "pose"):
            parts[name].append(getattr(codes, name).float().cpu().numpy())
        parts["expression"].append(batch["expression"].numpy())
        parts["valence"].append(batch["va"][:, 0].numpy())
        parts["arousal"].append(batch["va"][:, 1].numpy())
        keys += list(batch["key"])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["key"] = np.array(keys)
    return out


class CodesDataset(Dataset):
    """Items ``{"codes": (D,), "expression": (), "va": (2,), "index": int}`` from a codes file.

    Args:
        arrays: the codes file's arrays (:func:`load_codes`).
        inputs: pieces of the MLP input, in order (names of :data:`CODE_INPUTS`); EmoDECA
            uses ``shape, exp, jaw_pose`` (153 values).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray],
                 inputs: Sequence[str] = ("shape", "exp", "jaw_pose")) -> None:
        unknown = [i for i in inputs if i not in CODE_INPUTS]
        if unknown:
            raise ValueError(f"unknown code inputs {unknown}; use {list(CODE_INPUTS)}")
        cols = [np.asarray(arrays[CODE_INPUTS[i][0]], dtype=np.float32)[:, CODE_INPUTS[i][1]]
                for i in inputs]
        self.features = torch.from_numpy(np.concatenate(cols, axis=1))
        n = len(self.features)
        self.expression = torch.as_tensor(np.asarray(arrays.get(
            "expression", np.full(n, -1)), dtype=np.int64))
        va = np.stack([np.asarray(arrays.get("valence", np.full(n, np.nan)), np.float32),
                       np.asarray(arrays.get("arousal", np.full(n, np.nan)), np.float32)], 1)
        self.va = torch.from_numpy(va)
        self.keys = [str(k) for k in arrays.get("key", np.arange(n))]

    @property
    def in_dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"codes": self.features[i], "expression": self.expression[i], "va": self.va[i],
                "index": i}


class CodesDataModule(_ResumeMixin, L.LightningDataModule):
    """EmoMLP training data: a codes dataset (and optional validation codes).

    Args:
        train: training :class:`CodesDataset`.
        val: validation set; default ``val_fraction`` of ``train`` (random split).
        sampler: ``random`` or ``balanced_expr``.
    """

    def __init__(self, train: CodesDataset, val: CodesDataset | None = None,
                 val_fraction: float = 0.05, batch_size: int = 64,
                 val_batch_size: int | None = None, sampler: str = "balanced_expr",
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if sampler not in ("random", "balanced_expr"):
            raise ValueError(f"codes sampler must be 'random' or 'balanced_expr', got {sampler!r}")
        self.full_train, self.full_val = train, val
        self.val_fraction = float(val_fraction)
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.sampler_kind = sampler
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.full_val is not None:
            self.train_set, self.val_set = self.full_train, self.full_val
            return
        tr, va = split_indices(len(self.full_train), self.val_fraction, self.seed)
        self.train_set, self.val_set = Subset(self.full_train, tr), Subset(self.full_train, va)

    def _labels(self, ds: Dataset) -> list[int]:
        if isinstance(ds, Subset):
            base: CodesDataset = ds.dataset  # type: ignore[assignment]
            return base.expression[list(ds.indices)].tolist()
        return ds.expression.tolist()  # type: ignore[attr-defined]

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        labels = self._labels(self.train_set)
        sampler = _make_sampler(self.sampler_kind, len(labels), self.seed, labels=labels)
        self._arm_resume(sampler, self.batch_size)
        # BatchNorm needs two items per batch: drop a last batch of one
        drop_last = len(labels) % self.batch_size == 1 or len(labels) >= self.batch_size
        return ResumableDataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                                   num_workers=self.num_workers, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=self.val_batch_size, shuffle=False,
                          num_workers=self.num_workers)


def steps_per_epoch(n_items: int, batch_size: int) -> int:
    """Batches per epoch with ``drop_last``."""
    return max(1, math.floor(n_items / batch_size))
