"""Damaged model files give one line naming the file and what was expected (issue 15, item 6):
ICT-FaceKit npz with object arrays or broken JSON, npz zip bombs, chumpy arrays without data,
deeply nested pickles; through the command line, with no traceback."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emoca.errors import InputError
from emoca.io.arrays import read_npz
from emoca.io.safe_pickle import UnsafePickleError, load_pickle


def _ict_copy(ict_dir: Path, dest: Path) -> Path:
    shutil.copytree(ict_dir, dest)
    return dest


def _fit(tmp: Path, ict: Path) -> subprocess.CompletedProcess:
    from PIL import Image

    photo = tmp / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    cmd = [sys.executable, "-m", "emoca.cli.main", "fit", str(photo), "-o", str(tmp / "out"),
           "--ict-dir", str(ict), "--no-emotion", "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 1, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("emoca")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _npz_flavour(ict_dir: Path, dest: Path) -> dict[str, np.ndarray]:
    """The ICT folder as the npz flavour (the packaged copy ships a packed format)."""
    from emoca.assets.ict_facekit import PACKED_NAME, unpack_modes

    dest.mkdir()
    for f in ("generic_neutral_mesh.obj.gz", "vertex_indices.json"):
        shutil.copy(ict_dir / f, dest / f)
    if (ict_dir / "ict_facekit_modes.npz").exists():
        with np.load(ict_dir / "ict_facekit_modes.npz") as z:
            return {k: z[k] for k in z.files}
    return dict(unpack_modes(ict_dir / PACKED_NAME))


def test_ict_npz_with_object_array_names_file_and_array(tmp_path, ict_dir):
    ict = tmp_path / "ict"
    arrays = _npz_flavour(ict_dir, ict)
    npz = ict / "ict_facekit_modes.npz"
    arrays["identity_names"] = np.array(list(arrays["identity_names"]), dtype=object)
    np.savez(npz, **arrays)
    assert not (ict / "ict_facekit_modes.f32planes.xz").exists()
    # what np.load says on its own: no file, no array
    with np.load(npz) as z, pytest.raises(ValueError, match="Object arrays") as e:
        z["identity_names"]
    assert "npz" not in str(e.value)
    _one_line(_fit(tmp_path, ict), str(npz), "'identity_names'", "Python objects")


def test_ict_vertex_indices_json_error_names_file(tmp_path, ict_dir):
    ict = _ict_copy(ict_dir, tmp_path / "ict")
    bad = ict / "vertex_indices.json"
    bad.write_text('{"expressions": [')
    _one_line(_fit(tmp_path, ict), str(bad), "not valid JSON")


def test_npz_member_inflating_a_thousand_times_is_refused(tmp_path):
    path = tmp_path / "mediapipe_landmark_embedding.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros(8 << 20, np.float32))  # 32 MiB of zeros deflate to ~32 KB
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("lmk_face_idx.npy", buf.getvalue())
    with pytest.raises(InputError, match=r"mediapipe_landmark_embedding.npz: member "
                                         r"lmk_face_idx.npy would inflate .* zip bomb"):
        read_npz(path)


def test_chumpy_without_data_and_deep_nesting_name_the_file(tmp_path):
    from hostile_corpus import CORPUS

    for name, needles in [("chumpy_without_x.pkl", ["'shapedirs'", "chumpy.ch.Ch", "'x'"]),
                          ("deep_nesting.pkl", ["nested deeper than"])]:
        case = next(c for c in CORPUS if c.name == name)
        path = tmp_path / name
        case.build(path)
        with pytest.raises(UnsafePickleError) as e:
            load_pickle(path)
        text = str(e.value)
        assert text.startswith(str(path)) and "\n" not in text
        assert all(n in text for n in needles), text
        assert isinstance(e.value, InputError)  # the CLI prints it as one line


def test_truncated_npy_names_the_file(tmp_path):
    from emoca.io.arrays import read_npy
    from emoca.io.safe_pickle import load_npy

    path = tmp_path / "fixed_displacement_256.npy"
    np.save(path, np.zeros((256, 256), np.float32))
    path.write_bytes(path.read_bytes()[:5000])  # a download cut short
    with pytest.raises(InputError, match="fixed_displacement_256.npy: not a readable .npy"):
        read_npy(path)
    with pytest.raises(UnsafePickleError, match=r"fixed_displacement_256.npy: header declares "
                                                r"\(256, 256\) float32 \(262144 bytes\)"):
        load_npy(path)
