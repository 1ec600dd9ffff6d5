"""Tests for emoca.metrics against scipy, direct formulas and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from emoca import metrics as M


@pytest.fixture
def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = rng.uniform(-1, 1, 200)
    pred = 0.7 * gt + 0.2 + 0.3 * rng.normal(size=200)
    return pred, gt


def test_pcc_matches_scipy(xy):
    pred, gt = xy
    assert M.pcc(pred, gt) == pytest.approx(stats.pearsonr(gt, pred)[0], abs=1e-12)


def test_torch_and_list_inputs_match_numpy(xy):
    pred, gt = xy
    tp, tg = torch.tensor(pred, dtype=torch.float64), torch.tensor(gt, dtype=torch.float64)
    for fn in (M.pcc, M.ccc, M.icc, M.rmse, M.sagr):
        assert fn(tp, tg) == pytest.approx(fn(pred, gt), abs=1e-12)
        assert fn(list(pred), list(gt)) == pytest.approx(fn(pred, gt), abs=1e-12)
    # (N, 1) columns are accepted as 1-D
    assert M.pcc(tp[:, None], tg[:, None]) == pytest.approx(M.pcc(pred, gt), abs=1e-12)


def test_ccc_matches_covariance_matrix_formula(xy):
    pred, gt = xy
    c = np.cov(np.stack([gt, pred]), bias=True)  # population moments
    ref = 2 * c[0, 1] / (c[0, 0] + c[1, 1] + (gt.mean() - pred.mean()) ** 2)
    assert M.ccc(pred, gt) == pytest.approx(ref, abs=1e-12)
    # and through Pearson r: ccc = r * 2 sx sy / (sx^2 + sy^2 + dmu^2)
    r = stats.pearsonr(gt, pred)[0]
    sx, sy = gt.std(), pred.std()
    ref2 = r * 2 * sx * sy / (sx**2 + sy**2 + (gt.mean() - pred.mean()) ** 2)
    assert M.ccc(pred, gt) == pytest.approx(ref2, abs=1e-12)


def test_ccc_analytic_offset_case():
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    var = x.var()
    c = 0.5
    # identical -> 1; offset c -> 2 var / (2 var + c^2); negation -> -1 for zero-mean data
    assert M.ccc(x, x) == pytest.approx(1.0)
    assert M.ccc(x + c, x) == pytest.approx(2 * var / (2 * var + c**2))
    z = x - x.mean()
    assert M.ccc(-z, z) == pytest.approx(-1.0)
    # PCC ignores the offset, CCC does not
    assert M.pcc(x + c, x) == pytest.approx(1.0)


def _icc31_anova(gt: np.ndarray, pred: np.ndarray) -> float:
    """Independent two-way ANOVA decomposition with explicit loops."""
    y = np.stack([gt, pred], axis=1)
    n, k = y.shape
    grand = sum(y[i, j] for i in range(n) for j in range(k)) / (n * k)
    ss_total = sum((y[i, j] - grand) ** 2 for i in range(n) for j in range(k))
    ss_rows = sum(k * (y[i].mean() - grand) ** 2 for i in range(n))
    ss_cols = sum(n * (y[:, j].mean() - grand) ** 2 for j in range(k))
    ss_err = ss_total - ss_rows - ss_cols
    bms = ss_rows / (n - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    return (bms - ems) / (bms + (k - 1) * ems)


def _icc_emonet(gt: np.ndarray, pred: np.ndarray) -> float:
    """The emonet/EMOCA numpy formulation (WSS - RSS), re-typed from its definition."""
    dat = np.stack([gt, pred], axis=1)
    n = dat.shape[0]
    mpt = dat.mean(axis=1, keepdims=True)
    mpr = dat.mean(axis=0, keepdims=True)
    tm = mpt.mean()
    bms = np.sum((mpt - tm) ** 2) * 2 / (n - 1)
    rss = np.sum((mpr - tm) ** 2) * n
    wss = np.sum((dat - mpt) ** 2)
    ems = (wss - rss) / (n - 1)
    return (bms - ems) / (bms + ems)


def test_icc_hand_computed_example():
    # gt = [1, 2, 3, 4], pred = [2, 2, 4, 5] (by hand): grand mean 23/8,
    # SS_rows = 2 * 5.6875 = 11.375, SS_cols = 4 * 2 * 0.140625 = 1.125,
    # SS_total = 12.875, SS_err = 0.375; BMS = 11.375/3, EMS = 0.375/3
    # ICC(3,1) = (11.375 - 0.375) / (11.375 + 0.375) = 44/47
    gt = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([2.0, 2.0, 4.0, 5.0])
    assert M.icc(pred, gt) == pytest.approx(44 / 47, abs=1e-12)


def test_icc_matches_anova_and_emonet_form(xy):
    pred, gt = xy
    assert M.icc(pred, gt) == pytest.approx(_icc31_anova(gt, pred), abs=1e-10)
    assert M.icc(pred, gt) == pytest.approx(_icc_emonet(gt, pred), abs=1e-10)


def test_icc_is_consistency_not_absolute_agreement():
    x = np.linspace(-1, 1, 11)
    assert M.icc(x + 3.0, x) == pytest.approx(1.0)
    assert M.ccc(x + 3.0, x) < 0.2


def test_rmse_and_sagr_hand_values():
    gt = np.array([0.5, -0.5, 0.0, 1.0])
    pred = np.array([0.5, 0.5, 0.0, -1.0])
    assert M.rmse(pred, gt) == pytest.approx(math.sqrt((0 + 1 + 0 + 4) / 4))
    # signs: agree, disagree, 0==0 agrees, disagree
    assert M.sagr(pred, gt) == pytest.approx(0.5)
    # a zero only agrees with a zero
    assert M.sagr(np.array([0.0, 0.1]), np.array([0.2, 0.1])) == pytest.approx(0.5)


def test_accuracy_and_confusion_vs_naive_loop():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 8, 300)
    pred = np.where(rng.random(300) < 0.6, gt, rng.integers(0, 8, 300))
    conf = M.confusion_matrix(pred, gt, num_classes=8)
    ref = np.zeros((8, 8), dtype=int)
    for g, p in zip(gt, pred, strict=True):
        ref[g, p] += 1
    np.testing.assert_array_equal(conf, ref)
    assert M.accuracy(pred, gt) == pytest.approx(np.trace(ref) / 300)
    rec = M.confusion_matrix(pred, gt, num_classes=8, normalize="true")
    np.testing.assert_allclose(rec.sum(axis=1), 1.0)
    np.testing.assert_allclose(M.confusion_matrix(pred, gt, 8, "all").sum(), 1.0)
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 9], [0, 1], num_classes=8)


def test_expression_metrics_from_logits_and_labels():
    gt = torch.tensor([0, 1, 2, 2, 3])
    logits = torch.full((5, 8), -1.0)
    for i, c in enumerate([0, 1, 2, 1, 5]):
        logits[i, c] = 2.0
    out = M.expression_metrics(logits, gt)
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["confusion"].shape == (8, 8)
    assert out["confusion"][2, 1] == 1 and out["confusion"][3, 5] == 1
    # per-class: class 0: 1/1, 1: 1/1, 2: 1/2, 3: 0/1, others absent (nan)
    np.testing.assert_allclose(out["per_class_accuracy"][:4], [1, 1, 0.5, 0])
    assert np.isnan(out["per_class_accuracy"][4:]).all()
    assert out["balanced_accuracy"] == pytest.approx(2.5 / 4)
    same = M.expression_metrics(logits.argmax(1).numpy(), gt.numpy())
    assert same["accuracy"] == out["accuracy"]


def test_va_metrics_dict(xy):
    pred, gt = xy
    out = M.va_metrics(pred, -pred, gt, -gt)
    for p in ("v", "a"):
        assert set(k for k in out if k.startswith(p + "_")) == {
            f"{p}_{m}" for m in ("pcc", "ccc", "rmse", "sagr", "icc")
        }
    assert out["v_pcc"] == pytest.approx(M.pcc(pred, gt))
    assert out["a_ccc"] == pytest.approx(M.ccc(-pred, -gt))
    assert out["a_rmse"] == pytest.approx(M.rmse(pred, gt))


def test_degenerate_inputs():
    c = np.full(5, 0.3)
    x = np.arange(5.0)
    assert math.isnan(M.pcc(c, x))  # constant prediction: undefined correlation
    assert M.ccc(c, x) == 0.0  # no covariance, finite denominator
    assert math.isnan(M.ccc(c, c))  # 0 / 0
    assert math.isnan(M.icc(c, c))
    assert math.isnan(M.pcc([1.0], [2.0]))  # N < 2
    assert math.isnan(M.rmse([], []))
    assert math.isnan(M.accuracy([], []))
    with pytest.raises(ValueError):
        M.rmse([1.0, 2.0], [1.0])
