"""``emoca assets check`` opens each file with the safe loaders (issue 15, item 9): look-alike
official files pass, tampered copies are BAD with a line naming the file and the problem and
exit status 1; ``--quick`` only looks for the files."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emoca.model.asset_check import FLAME_LAYOUT, LANDMARK_LAYOUT, deep_check


def _check(root: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "emoca.cli.main", "assets", "check", str(root), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _linked_copy(src: Path, dest: Path) -> Path:
    """``src`` as a tree of symbolic links (cheap to copy; tamper by replacing a link)."""
    for dirpath, _, files in os.walk(src):
        out = dest / Path(dirpath).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            (out / f).symlink_to(Path(dirpath) / f)
    return dest


@pytest.fixture(scope="module")
def flame_deca(fake_assets: Path, tmp_path_factory) -> Path:
    from emoca.assets.synthetic_tree import write_synthetic_tree

    root = _linked_copy(fake_assets, tmp_path_factory.mktemp("deep") / "assets")
    write_synthetic_tree(root, ["deca"])
    return root


def test_layouts_follow_the_design_notes(flame):
    # independent truth: the FLAME module's own buffers (loaded from the same look-alike)
    assert FLAME_LAYOUT["v_template"] == tuple(flame.v_template.shape)
    assert FLAME_LAYOUT["f"] == tuple(flame.faces.shape)
    assert LANDMARK_LAYOUT["dynamic_lmk_faces_idx"] == tuple(flame.dynamic_lmk_faces_idx.shape)


def test_lookalike_files_are_ok_and_tampered_ones_bad(flame_deca: Path, tmp_path: Path):
    good = _check(flame_deca)
    assert good.returncode == 0, good.stdout + good.stderr
    for key in ("flame_model", "landmark_embedding", "deca_model", "albedo"):
        line = next(ln for ln in good.stdout.splitlines() if ln.startswith(key))
        assert line.split()[1] == "ok", line

    bad = _linked_copy(flame_deca, tmp_path / "bad")
    g = bad / "FLAME" / "geometry"
    # 1: FLAME pickle with a wrong-sized template (a plain pickle: keys right, shape wrong)
    model = {k: np.zeros((s[0], s[1] if len(s) > 1 else 1) + tuple(n or 400 for n in s[2:]))
             for k, s in FLAME_LAYOUT.items()}
    model["v_template"] = np.zeros((100, 3))
    (g / "generic_model.pkl").unlink()
    (g / "generic_model.pkl").write_bytes(pickle.dumps(model, protocol=2))
    # 2: landmark embedding whose pickle names a command
    (g / "landmark_embedding.npy").unlink()
    np.save(g / "landmark_embedding.npy", np.array({"a": _System()}, dtype=object),
            allow_pickle=True)
    # 3: deca_model.tar with one storage cut short (a damaged download that unzips)
    tar = bad / "DECA" / "data" / "deca_model.tar"
    src = tar.resolve()
    tar.unlink()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tar, "w") as zout:
        cut = [n for n in zin.namelist() if "/data/" in n][0]
        for n in zin.namelist():
            raw = zin.read(n)
            zout.writestr(n, raw[: len(raw) // 2] if n == cut else raw)

    proc = _check(bad)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = out.splitlines()

    def status_and_detail(key: str) -> tuple[str, str]:
        i = next(i for i, ln in enumerate(lines) if ln.startswith(key))
        return lines[i].split()[1], lines[i + 1].strip()

    st, detail = status_and_detail("flame_model")
    assert st == "BAD" and "generic_model.pkl" in detail
    assert "'v_template' has shape (100, 3), expected (5023, 3)" in detail
    st, detail = status_and_detail("landmark_embedding")
    assert st == "BAD" and "landmark_embedding.npy" in detail and "refused global" in detail
    st, detail = status_and_detail("deca_model")
    assert st == "BAD" and "deca_model.tar: tensor '" in detail and "truncated" in detail
    assert st == status_and_detail("deca_model")[0]
    assert status_and_detail("albedo")[0] == "ok"  # an untouched file stays ok
    assert "3 file(s) unusable: flame_model, landmark_embedding, deca_model" in out

    quick = _check(bad, "--quick")
    assert quick.returncode == 0, quick.stdout
    assert "BAD" not in quick.stdout and "found" in quick.stdout


class _System:
    def __reduce__(self):
        return (os.system, ("true",))


def test_deep_check_never_raises_for_a_file_of_the_wrong_kind(tmp_path: Path):
    path = tmp_path / "deca_model.tar"
    path.write_text("<html>login required</html>")  # what a failed download often is
    result = deep_check("deca_model", path, tmp_path)
    assert not result.ok and str(path) in result.detail and "\n" not in result.detail
