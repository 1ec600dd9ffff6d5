"""The restricted unpickler refuses code and reads every official-format file."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from emoca.assets.py2pickle import PickleAs, dumps_py2
from emoca.io.safe_pickle import UnsafePickleError, load_npy, load_pickle, load_torch


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w')",))


class _Popen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.marker)],))


@pytest.mark.parametrize("payload, refused", [
    (_System, "system"), (_Eval, "builtins.eval"), (_Popen, "subprocess.Popen")])
def test_pickle_payloads_are_refused_and_never_run(tmp_path, payload, refused):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": np.zeros(3), "x": payload(marker)}, protocol=2))
    with pytest.raises(UnsafePickleError) as e:
        load_pickle(path)
    assert str(path) in str(e.value) and refused in str(e.value)
    assert not marker.exists()


def test_torch_checkpoint_with_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hp": _System(marker)}, path)
    with pytest.raises(UnsafePickleError, match="model.ckpt.*refused global"):
        load_torch(path)
    assert not marker.exists()
    # torch's own default loader would have run it: the payload is real
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_npy_object_array_with_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, np.array({"a": _System(marker)}, dtype=object), allow_pickle=True)
    with pytest.raises(UnsafePickleError, match="landmark_embedding.npy"):
        load_npy(path)
    assert not marker.exists()


def test_legacy_torch_file_with_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "deca_model.tar"
    torch.save({"x": _System(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafePickleError, match="deca_model.tar"):
        load_torch(path)
    assert not marker.exists()


def test_py2_chumpy_and_old_scipy_pickle_reads_without_chumpy(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.standard_normal((4, 3, 5))
    jreg = sp.random(5, 7, density=0.5, format="csc", random_state=1)
    data = {"shapedirs": PickleAs("chumpy.ch", "Ch", {"x": arr, "_dirty_vars": set()}),
            "J_regressor": jreg, "f": np.arange(6, dtype=np.uint32).reshape(2, 3),
            "bs_style": "lbs"}
    raw = dumps_py2(data)
    assert b"chumpy.ch\nCh" in raw and b"scipy.sparse.csc\ncsc_matrix" in raw
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    out = load_pickle(io.BytesIO(raw))
    np.testing.assert_array_equal(out["shapedirs"], arr)
    assert sp.issparse(out["J_regressor"])
    np.testing.assert_array_equal(out["J_regressor"].toarray(), jreg.toarray())
    assert out["f"].dtype == np.uint32 and out["bs_style"] == "lbs"
    import sys
    assert "chumpy" not in sys.modules


def test_lightning_style_checkpoint_with_omegaconf_reads_as_plain_dicts(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"n_exp": 50, "layers": [1, 2]}, "name": "EMOCA"})
    sd = {"deca.E_flame.layers.0.weight": torch.randn(4, 3)}
    view = sd["deca.E_flame.layers.0.weight"][1:]
    path = tmp_path / "x.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": cfg, "view": view, "epoch": 3}, path)
    out = load_torch(path)
    assert out["hyper_parameters"] == {"model": {"n_exp": 50, "layers": [1, 2]}, "name": "EMOCA"}
    assert type(out["hyper_parameters"]) is dict
    torch.testing.assert_close(out["state_dict"]["deca.E_flame.layers.0.weight"],
                               sd["deca.E_flame.layers.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(out["view"], view, rtol=0, atol=0)
    assert out["epoch"] == 3


def test_lookalike_official_files_load(fake_assets):
    g = fake_assets / "FLAME" / "geometry"
    model = load_pickle(g / "generic_model.pkl")
    assert model["shapedirs"].shape == (5023, 3, 400)
    assert model["f"].shape == (9976, 3) and model["f"].dtype == np.uint32
    assert model["kintree_table"][0, 0] == 2**32 - 1
    emb = load_npy(g / "landmark_embedding.npy")
    assert isinstance(emb["dynamic_lmk_faces_idx"], torch.Tensor)
    assert emb["dynamic_lmk_faces_idx"].shape == (79, 17)
    assert emb["full_lmk_faces_idx"].shape == (1, 68)


def test_not_a_pickle_names_the_file(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"\x80\x02}q\x00(U")  # truncated
    with pytest.raises(UnsafePickleError, match="broken.pkl"):
        load_pickle(path)

