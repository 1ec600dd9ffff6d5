"""Damaged or hostile official files reach the user as one line naming the file, never a
traceback, never advice to switch the unpickler's guard off, and never run code."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

MODEL = "EMOCA_v2_lr_mse_20"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Look-alike assets (EMOCA model only), a saved model folder and a photo."""
    from PIL import Image

    from emoca.assets.synthetic_tree import write_synthetic_tree
    from emoca.model.emoca_model import Emoca

    root = tmp_path_factory.mktemp("errs")
    write_synthetic_tree(root / "assets", models=[MODEL])
    Emoca.from_pretrained(MODEL, assets=root / "assets").save_pretrained(root / "saved")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "a.png")
    return root


def _copy(tree: Path, name: str) -> Path:
    dest = tree / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(tree / "assets", dest)
    return dest


def _checkpoints(assets: Path) -> list[Path]:
    found = sorted((assets / "EMOCA" / "models" / MODEL).rglob("*.ckpt"))
    assert found
    return found


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Popen:
    def __reduce__(self):
        return (subprocess.Popen, (["true"],))


def _run(tree: Path, *argv: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "emoca.cli.main", "reconstruct", str(tree / "a.png"),
           "--mode", "coarse", "--no-progress", "--detector", "file", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tree, timeout=300)


def _one_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("emoca")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "weights_only" not in err and "add_safe_globals" not in err and "\x1b[" not in err
    return lines[0]


@pytest.fixture(scope="module")
def faces_file(tree: Path) -> Path:
    """A box file for the file detector, so no detector backend is needed."""
    import json

    path = tree / "faces.json"
    path.write_text(json.dumps({"a.png": [{"box": [8, 8, 56, 56]}]}))
    return path


def _assets_case(tree: Path, faces_file: Path, assets: Path) -> subprocess.CompletedProcess:
    return _run(tree, "-o", str(tree / f"out_{assets.name}"), "--assets", str(assets),
                "--faces", str(faces_file))


def test_invalid_yaml_names_file_and_line(tree: Path, faces_file: Path) -> None:
    assets = _copy(tree, "bad_yaml")
    cfg = assets / "EMOCA" / "models" / MODEL / "cfg.yaml"
    cfg.write_text("a: [1, 2\n  b: }\n")
    _one_line(_assets_case(tree, faces_file, assets), 1, str(cfg.relative_to(tree)),
              "not valid YAML at line 2")


def test_code_in_a_zip_checkpoint_is_refused_and_not_run(tree: Path, faces_file: Path) -> None:
    assets = _copy(tree, "evil_zip")
    marker = tree / "PWNED"
    for ckpt in _checkpoints(assets):
        with zipfile.ZipFile(ckpt, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps(_System(marker), protocol=2))
    _one_line(_assets_case(tree, faces_file, assets), 1, ".ckpt", "refused global")
    assert not marker.exists()


def test_truncated_checkpoint_storage_is_refused_naming_file_and_tensor(
        tree: Path, faces_file: Path) -> None:
    # the checkpoint still unzips, but one tensor's bytes are cut short (issue 15, item 1:
    # this used to load, with leftover memory as weights, and exit 0)
    assets = _copy(tree, "truncated")
    for ckpt in _checkpoints(assets):
        with zipfile.ZipFile(ckpt) as z:
            members = {n: z.read(n) for n in z.namelist()}
        cut = sorted((n for n in members if "/data/" in n), key=lambda n: -len(members[n]))[0]
        members[cut] = members[cut][: len(members[cut]) // 2]
        with zipfile.ZipFile(ckpt, "w") as z:
            for n, raw in members.items():
                z.writestr(n, raw)
    line = _one_line(_assets_case(tree, faces_file, assets), 1, ".ckpt", "tensor 'state_dict/",
                     "truncated or tampered")
    assert "holds" in line and "bytes" in line


def test_legacy_checkpoint_with_popen_is_refused_without_torch_advice(
        tree: Path, faces_file: Path) -> None:
    assets = _copy(tree, "evil_legacy")
    for ckpt in _checkpoints(assets):
        ckpt.write_bytes(pickle.dumps(_Popen(), protocol=2))
    _one_line(_assets_case(tree, faces_file, assets), 1, ".ckpt", "refused global",
              "Popen")


def test_broken_saved_model_files(tree: Path, faces_file: Path) -> None:
    bad_json = tree / "bad_json"
    shutil.copytree(tree / "saved", bad_json, dirs_exist_ok=True)
    (bad_json / "config.json").write_text('{"kind": "emoca",')
    proc = _run(tree, "-o", str(tree / "o1"), "--model", str(bad_json), "--assets",
                str(tree / "assets"), "--faces", str(faces_file))
    _one_line(proc, 1, "config.json", "not valid JSON")

    bad_st = tree / "bad_st"
    shutil.copytree(tree / "saved", bad_st, dirs_exist_ok=True)
    st = bad_st / "model.safetensors"
    st.write_bytes(st.read_bytes()[:1000])
    proc = _run(tree, "-o", str(tree / "o2"), "--model", str(bad_st), "--assets",
                str(tree / "assets"), "--faces", str(faces_file))
    _one_line(proc, 1, "model.safetensors", "not a readable safetensors file")


def test_output_below_a_file(tree: Path, faces_file: Path) -> None:
    (tree / "plain_file").write_text("x")
    proc = _run(tree, "-o", str(tree / "plain_file" / "sub"), "--assets", str(tree / "assets"),
                "--faces", str(faces_file))
    _one_line(proc, 2, "plain_file")


def test_user_message_covers_memory_and_os_errors() -> None:
    from emoca.cli.main import user_message

    assert "out of memory" in user_message(MemoryError())
    assert user_message(PermissionError(13, "Permission denied", "/x/y")) == \
        "/x/y: Permission denied"
    assert user_message(KeyError("emoca")) is None  # a bug: shown with its traceback
