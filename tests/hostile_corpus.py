"""Hostile files for the safe loaders, written from scratch, and a way to measure each load.

Each :class:`Hostile` is a small file built here (never downloaded): memory bombs, truncated
or size-patched torch archives, malformed pickles. :func:`measure` loads one in a fresh
Python process and reports the outcome, the time and the peak memory the load added (the
process's peak RSS after the load minus before it), so one bomb cannot hide another.
Used by tests/test_hostile.py and benchmarks/hostile.py.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["CORPUS", "Hostile", "measure", "write_torch_zip"]


@dataclass(frozen=True)
class Hostile:
    """One hostile file: ``build(path)`` writes it; ``loader`` is a name in ``_LOADERS``;
    ``expect`` is a phrase the refusal must contain."""

    name: str
    loader: str
    build: Callable[[Path], None]
    expect: str
    what: str


# ------------------------------------------------------------------------- torch writer


def write_torch_zip(path: Path, obj: object, *, numel: dict[str, int] | None = None,
                    data: dict[str, bytes] | None = None, deflate: bool = False) -> None:
    """``torch.save``'s zip layout written by hand, with storage records/bytes overridable.

    Storage keys are "0", "1"... in pickling order; ``numel[key]`` replaces the element
    count in the record, ``data[key]`` the member's bytes.
    """
    keys: dict[int, str] = {}
    blobs: dict[str, bytes] = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):  # noqa: ANN001 - pickle hook
            if isinstance(o, torch.storage.TypedStorage):
                ptr = o._untyped_storage.data_ptr()
                if ptr not in keys:
                    key = keys[ptr] = str(len(keys))
                    u = o._untyped_storage.cpu()
                    blobs[key] = torch.empty(0, dtype=torch.uint8).set_(u).numpy().tobytes()
                key = keys[ptr]
                n = (numel or {}).get(key, o._size())
                return ("storage", getattr(torch, o.pickle_storage_type()), key, "cpu", n)
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, raw in blobs.items():
            zf.writestr(f"archive/data/{key}", (data or {}).get(key, raw), compress_type=method)
        zf.writestr("archive/version", "3\n")


def _small_deca_state() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"E_flame": {"layers.0.weight": torch.randn(8, 4, generator=g),
                        "layers.0.bias": torch.randn(8, generator=g)},
            "E_detail": {"layers.0.weight": torch.randn(4, 4, generator=g)}}


def _truncated_tar(path: Path) -> None:
    sd = _small_deca_state()
    raw = sd["E_flame"]["layers.0.weight"].numpy().tobytes()
    write_torch_zip(path, sd, data={"0": raw[: len(raw) // 2]})


def _oversized_record(path: Path) -> None:
    # a 1 KB file whose record asks for 2**30 float32 = 4 GiB
    write_torch_zip(path, {"state_dict": {"w": torch.ones(4)}}, numel={"0": 1 << 30})


def _view_overrun(path: Path) -> None:
    # record and member agree (4 floats), the tensor view wants 1000 elements
    write_torch_zip(path, {"state_dict": {"w": torch.ones(1000)}},
                    numel={"0": 4}, data={"0": np.ones(4, np.float32).tobytes()})


def _zip_bomb(path: Path) -> None:
    # a 256 MiB tensor of zeros deflates to ~250 KB; torch itself never compresses
    n = 64 << 20
    write_torch_zip(path, {"state_dict": {"w": torch.zeros(4)}}, numel={"0": n},
                    data={"0": bytes(4 * n)}, deflate=True)


def _claims_more_than_archive(path: Path) -> None:
    # a stored member whose directory entries claim 2 GiB in a file of a few hundred bytes
    write_torch_zip(path, {"state_dict": {"w": torch.ones(4)}}, numel={"0": 1 << 29})
    raw = bytearray(path.read_bytes())
    name = b"archive/data/0"
    big = struct.pack("<I", 1 << 31)
    at = 0
    while (at := raw.find(b"PK\x01\x02", at)) >= 0:  # central directory headers
        n = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46: at + 46 + n] == name:
            raw[at + 20: at + 24] = big  # compressed size
            raw[at + 24: at + 28] = big  # uncompressed size
        at += 4
    path.write_bytes(bytes(raw))


def _cut_download(path: Path) -> None:
    tmp = path.with_suffix(".full")
    torch.save(_small_deca_state(), tmp)
    raw = tmp.read_bytes()
    tmp.unlink()
    path.write_bytes(raw[: len(raw) * 6 // 10])


def _legacy_oversized(path: Path) -> None:
    # legacy (pre-zip) torch format: the last storage's int64 element count says 2**30
    torch.save({"w": torch.ones(4)}, path, _use_new_zipfile_serialization=False)
    raw = bytearray(path.read_bytes())
    assert struct.unpack_from("<q", raw, len(raw) - 24)[0] == 4, "unexpected legacy layout"
    struct.pack_into("<q", raw, len(raw) - 24, 1 << 30)
    path.write_bytes(bytes(raw))


# ------------------------------------------------------------------------- pickle bombs


def _bytearray_bomb(path: Path) -> None:
    # GLOBAL builtins.bytearray; BININT 2**30; TUPLE1; REDUCE; STOP
    path.write_bytes(b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00@\x85R.")


def _laughs() -> list:
    a: list = ["lol"]
    for _ in range(9):
        a = [a] * 10
    return a


def _billion_laughs(path: Path) -> None:
    path.write_bytes(pickle.dumps(_laughs(), protocol=2))


def _str_of_laughs(path: Path) -> None:
    # str() of the nested list: its repr has 10**9 items
    body = pickle.dumps(_laughs(), protocol=2)[2:-1]
    path.write_bytes(b"\x80\x02c__builtin__\nstr\n" + body + b"\x85R.")


def _memo_bomb(path: Path) -> None:
    # EMPTY_LIST; LONG_BINPUT 2**28 (the unpickler grows its memo table to 2**29 slots)
    path.write_bytes(b"\x80\x02]r" + struct.pack("<I", 1 << 28) + b".")


def _array_header_bomb(path: Path) -> None:
    # numpy _reconstruct(ndarray, (2**27,), 'O'): 1 GiB of object pointers, all filled
    path.write_bytes(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                     b"J\x00\x00\x00\x08\x85U\x01O\x87R.")


def _short_object_array(path: Path) -> None:
    # landmark_embedding.npy whose object array says 3 items but carries 1: numpy 1.26's
    # __setstate__ reads past the list (segmentation fault)
    np.save(path, np.array([{"a": 1}, 2, 3], dtype=object), allow_pickle=True)
    raw = path.read_bytes()
    # the pickled state's data list: MARK item item item APPENDS -> keep one item
    good = pickle.dumps([{"a": 1}, 2, 3], protocol=3)
    assert raw.count(b"K\x02K\x03e") == 1, "unexpected npy pickle layout"
    path.write_bytes(raw.replace(b"K\x02K\x03e", b"e"))
    del good


def _deep_nesting(path: Path) -> None:
    n = 20_000  # EMPTY_LIST x n, then APPEND x (n-1): a list nested n deep (limit: 1000)
    path.write_bytes(b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b".")


def _chumpy_without_x(path: Path) -> None:
    from emoca.assets.py2pickle import PickleAs, dumps_py2

    data = {"shapedirs": PickleAs("chumpy.ch", "Ch", {"_dirty_vars": set()}),
            "v_template": np.zeros((3, 3))}
    path.write_bytes(dumps_py2(data))


CORPUS: tuple[Hostile, ...] = (
    Hostile("truncated_deca_model.tar", "torch", _truncated_tar,
            "E_flame/layers.0.weight", "storage half as long as its tensor"),
    Hostile("oversized_record.ckpt", "torch", _oversized_record,
            "state_dict/w", "1 KB file whose storage record asks for 4 GiB"),
    Hostile("view_overrun.ckpt", "torch", _view_overrun,
            "needs 1000 elements", "tensor view larger than its (consistent) storage"),
    Hostile("zip_bomb.ckpt", "torch", _zip_bomb,
            "zip bomb", "deflated member inflating ~1000x to 256 MiB"),
    Hostile("claims_2gib_member.ckpt", "torch", _claims_more_than_archive,
            "state_dict/w", "stored member whose directory claims 2 GiB"),
    Hostile("cut_download.tar", "torch", _cut_download,
            "cut short", "first 60% of a deca_model.tar"),
    Hostile("legacy_oversized.tar", "torch", _legacy_oversized,
            "recorded size does not match", "legacy torch file whose storage says 2**30 floats"),
    Hostile("bytearray_1gib.pkl", "pickle", _bytearray_bomb,
            "bytearray(int)", "bytearray(2**30) via REDUCE"),
    Hostile("billion_laughs.pkl", "pickle", _billion_laughs,
            "billion laughs", "list of 10 refs to a list of 10 refs... 9 levels"),
    Hostile("str_of_laughs.pkl", "pickle", _str_of_laughs,
            "str(list)", "str() of the nested list (10**9-item repr)"),
    Hostile("memo_bomb.pkl", "pickle", _memo_bomb,
            "memo index", "LONG_BINPUT 2**28"),
    Hostile("array_header_bomb.pkl", "pickle", _array_header_bomb,
            "array header", "numpy _reconstruct of 2**27 objects"),
    Hostile("short_object_array.npy", "npy", _short_object_array,
            "object array of shape (3,) with 1 items", "object array data shorter than shape"),
    Hostile("deep_nesting.pkl", "pickle", _deep_nesting,
            "nested deeper", "list nested 20000 deep"),
    Hostile("chumpy_without_x.pkl", "pickle", _chumpy_without_x,
            "shapedirs", "FLAME pickle whose chumpy array has no 'x'"),
)

_SCRIPT = r"""
import json, resource, sys, time
from emoca.io.safe_pickle import load_npy, load_pickle, load_torch
import torch, numpy, scipy.sparse
loader = {"torch": load_torch, "pickle": load_pickle, "npy": load_npy}[sys.argv[1]]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    loader(sys.argv[2])
    outcome, message = "loaded", ""
except Exception as e:
    outcome, message = type(e).__name__, " ".join(str(e).split())
dt = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "message": message, "seconds": dt,
                  "peak_mb": (after - before) / 1024}))
"""


def measure(loader: str, path: Path, timeout: float = 120, src: str | None = None,
            max_gb: float | None = None) -> dict:
    """Load ``path`` in a fresh process: outcome (exception class or "loaded"), message,
    seconds, peak_mb (peak RSS the load added); a crash gives outcome "crash (exit N)".

    ``src`` puts another source tree first on ``PYTHONPATH`` (to measure an older version);
    ``max_gb`` caps the process's address space (so measuring an unguarded loader stays
    polite on a shared machine).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])

    def cap() -> None:
        if max_gb is not None:
            import resource

            limit = int(max_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, loader, str(path)], env=env,
                              capture_output=True, text=True, timeout=timeout, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return {"outcome": f"timeout ({timeout:.0f} s)", "message": "", "seconds": None,
                "peak_mb": None}
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [""]
        return {"outcome": f"crash (exit {proc.returncode})", "message": last[0],
                "seconds": None, "peak_mb": None}
    return json.loads(proc.stdout.strip().splitlines()[-1])
