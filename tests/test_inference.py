"""Encoder precision and memory format (:mod:`emoca.model.inference`) against fp32.

The reference is the plain fp32 NCHW forward of the same look-alike weights on the same
crops (2 crops of the astronaut: with 4, the bf16 and fp16 cases took 2 of `make test`'s
minutes). Measured on this CPU (torch 2.13, 4 crops): channels-last differs by ~2e-8
(float reordering); bf16 autocast by ~4e-4 on codes of magnitude ~0.1 (0.2-0.7 % of the
largest value) and 0.004 px in the 2D landmarks; fp16 by ~5e-5. The bounds below
are a few times those figures, and the lower bounds show the 16-bit path really ran.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from emoca.assets.synthetic import write_official_assets
from emoca.assets.synthetic_checkpoints import write_emoca_model
from emoca.detect.crop import crop_transform_from_box, warp_crop
from emoca.model.emoca_model import Emoca
from emoca.model.inference import to_device
from emoca.pipeline.reconstructor import Reconstructor

MODEL = "EMOCA_v2_lr_mse_20"
FIELDS = ("shape", "exp", "pose", "cam", "light", "detail")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_official_assets(tmp_path_factory.mktemp("prec_assets"), seed=0)
    write_emoca_model(root, MODEL, seed=1, deca_seed=0)
    return root


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    img = skimage.data.astronaut()
    ts = [crop_transform_from_box(np.array([175.0 + 8 * k, 55.0 + 5 * k, 305.0 + 8 * k,
                                            205.0 + 5 * k])) for k in range(2)]
    return torch.as_tensor(np.asarray(warp_crop(img, ts)))


@pytest.fixture(scope="module")
def reference(root: Path, crops: torch.Tensor):
    model = Emoca.from_pretrained(MODEL, assets=root)
    codes = Reconstructor(model, None).encode(crops, detail=True)
    return model, codes


def _rel_diff(a, b) -> dict[str, float]:
    return {k: float((getattr(a, k) - getattr(b, k)).abs().max() / getattr(a, k).abs().max())
            for k in FIELDS}


@pytest.mark.parametrize("precision, channels_last, low, high", [
    ("fp32", True, 0.0, 1e-5),
    ("bf16", False, 1e-4, 2e-2),
    ("bf16", True, 1e-4, 2e-2),
    ("fp16", False, 1e-6, 3e-3),
])
def test_encoder_settings_against_fp32(root: Path, crops: torch.Tensor, reference,
                                       precision: str, channels_last: bool, low: float,
                                       high: float) -> None:
    model, ref = reference
    rec = Reconstructor(Emoca.from_pretrained(MODEL, assets=root), None,
                        precision=precision, channels_last=channels_last)
    codes = rec.encode(crops, detail=True)
    assert all(getattr(codes, k).dtype == torch.float32 for k in FIELDS)
    rel = _rel_diff(ref, codes)
    assert max(rel.values()) <= high and max(rel.values()) >= low, rel
    lmk = [model.decode(c, render=False, detail=False).landmarks2d for c in (ref, codes)]
    assert float((lmk[0] - lmk[1]).abs().max()) < 0.05  # crop pixels
    assert rec.settings().get("precision") == (None if precision == "fp32" else precision)


def test_bad_precision_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        Reconstructor(Emoca.from_pretrained(MODEL, assets=root), None, precision="int8")


def test_to_device_keeps_values_and_sets_the_memory_format() -> None:
    x = torch.rand(2, 3, 8, 8)
    y = to_device(x, torch.device("cpu"), channels_last=True)
    assert torch.equal(x, y) and y.is_contiguous(memory_format=torch.channels_last)
