"""Write an ``.npz`` whose arrays arrive in pieces, without holding any array whole.

``np.savez`` needs every array in memory, and the usual atomic path (save into a
``BytesIO``, then write it out) holds the whole file twice more. :func:`write_npz_pieces`
writes the same file member by member: each member's ``.npy`` header is written from the
declared shape and dtype, then its rows piece by piece, so memory is one piece. The
members are byte for byte what ``np.savez`` writes (an uncompressed zip of ``NAME.npy``
entries, version 1.0 headers, C order); only the zip's time stamps differ, as between any
two ``np.savez`` calls.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable

import numpy as np

from emoca.io.atomic import atomic_write

__all__ = ["write_npz_pieces"]


def write_npz_pieces(path: str | os.PathLike,
                     columns: dict[str, tuple[tuple[int, ...], np.dtype]],
                     pieces: Callable[[str], Iterable[np.ndarray]]) -> None:
    """Atomically write ``path`` as ``np.savez`` would write the concatenated pieces.

    Args:
        path: the ``.npz`` file (replaced atomically; see :func:`emoca.io.atomic.atomic_write`).
        columns: name -> (full shape, dtype) of each array, in file order.
        pieces: ``pieces(name)`` yields the array's consecutive row blocks (leading axis
            split anywhere; 0-d arrays come as one piece); their rows must add up to the
            declared shape.
    Raises:
        ValueError: a piece's dtype or trailing shape differs from the declared one, or the
            rows do not add up (the target is then left as it was).
    """
    with atomic_write(path, "wb") as f, \
            zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED,
                            allowZip64=True) as zf:
        for name, (shape, dtype) in columns.items():
            dtype = np.dtype(dtype)
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                      "shape": tuple(int(s) for s in shape)}
            rows = 0
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for piece in pieces(name):
                    piece = np.asarray(piece)
                    if piece.dtype != dtype or piece.shape[1:] != tuple(shape[1:]):
                        raise ValueError(f"{name}: piece {piece.dtype}{list(piece.shape)} "
                                         f"does not fit {dtype}{list(shape)}")
                    member.write(np.ascontiguousarray(piece).tobytes())
                    rows += len(piece) if piece.ndim else 1
            if rows != (shape[0] if shape else 1):
                raise ValueError(f"{name}: pieces hold {rows} rows, declared {list(shape)}")
