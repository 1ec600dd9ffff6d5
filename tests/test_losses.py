"""Tests for emoca.losses: zero at the optimum, numpy references, official forms, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage, stats

from emoca import losses as L
from emoca import metrics


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# ----------------------------------------------------------------------------- photometric


def test_photometric_l1_matches_numpy_and_is_zero_at_target():
    rng = _rng()
    pred, target = rng.random((2, 3, 6, 5)), rng.random((2, 3, 6, 5))
    mask = (rng.random((2, 1, 6, 5)) > 0.4).astype(float)
    ref_mean = (mask * np.abs(pred - target)).mean()
    ref_mask = (mask * np.abs(pred - target)).sum() / (3 * mask.sum())
    assert L.photometric_l1(_t(pred), _t(target), _t(mask)).item() == pytest.approx(ref_mean)
    got = L.photometric_l1(_t(pred), _t(target), _t(mask), normalize="mask")
    assert got.item() == pytest.approx(ref_mask)
    # (B, H, W) mask accepted; no mask = plain L1
    assert L.photometric_l1(_t(pred), _t(target), _t(mask[:, 0])).item() == pytest.approx(ref_mean)
    assert L.photometric_l1(_t(pred), _t(target)).item() == pytest.approx(
        np.abs(pred - target).mean()
    )
    assert L.photometric_l1(_t(pred), _t(pred), _t(mask)).item() == 0.0
    assert L.detail_photometric(_t(pred), _t(target), _t(mask)).item() == pytest.approx(ref_mean)


# ----------------------------------------------------------------------------- landmarks


def _deca_weights_reference() -> np.ndarray:
    # DECA weighted_landmark_loss, written out point by point
    w = np.ones(68)
    for i in (5, 6, 10, 11):
        w[i] = 2
    for i in range(27, 36):
        w[i] = 1.5
    for i in range(48, 68):
        w[i] = 1.5
    for i in (30, 31, 35, 48, 54):
        w[i] = 3
    return w


def test_landmark_l1_and_weighted_match_numpy():
    rng = _rng(1)
    pred, gt = rng.normal(size=(3, 68, 2)), rng.normal(size=(3, 68, 2))
    vis = (rng.random((3, 68)) > 0.2).astype(float)
    err = np.abs(pred - gt).sum(-1)
    assert L.landmark_l1(_t(pred), _t(gt)).item() == pytest.approx(err.sum() / (2 * err.size))
    gt3 = np.concatenate([gt, vis[..., None]], -1)
    ref_vis = (err * vis).sum() / (2 * vis.sum())
    assert L.landmark_l1(_t(pred), _t(gt3)).item() == pytest.approx(ref_vis)
    w = _deca_weights_reference()
    np.testing.assert_array_equal(L.deca_landmark_weights().numpy(), w)
    ref_w = (err * w).sum() / (2 * w.sum() * 3)
    assert L.weighted_landmark_loss(_t(pred), _t(gt)).item() == pytest.approx(ref_w)
    gt3_copy = gt3.copy()
    L.weighted_landmark_loss(_t(pred), _t(gt3))
    np.testing.assert_array_equal(gt3, gt3_copy)  # no in-place write into the target
    ref_l2 = np.linalg.norm(pred - gt, axis=-1).mean()
    assert L.landmark_l2(_t(pred), _t(gt)).item() == pytest.approx(ref_l2)
    for fn in (L.landmark_l1, L.weighted_landmark_loss, L.landmark_l2):
        assert fn(_t(gt), _t(gt)).item() == 0.0


def test_normalize_landmarks():
    px = torch.tensor([[[0.0, 224.0], [112.0, 56.0]]])
    np.testing.assert_allclose(L.normalize_landmarks(px, 224).numpy(), [[[-1, 1], [0, -0.5]]])


def _rel_reference(pred: np.ndarray, gt: np.ndarray, pairs) -> float:
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for i, j in pairs:
            dp = np.hypot(*(pred[b, i] - pred[b, j]))
            dg = np.hypot(*(gt[b, i] - gt[b, j]))
            total += abs(dp - dg)
            count += 1
    return total / count


def test_relative_keypoint_losses_match_reference_and_official_pairs():
    rng = _rng(2)
    pred, gt = rng.normal(size=(2, 68, 2)), rng.normal(size=(2, 68, 2))
    cases = [
        (L.eye_closure_loss, [(37, 41), (38, 40), (43, 47), (44, 46)]),
        (L.lip_closure_loss, [(61, 67), (62, 66), (63, 65)]),
        (L.mouth_corner_loss, [(48, 54), (60, 64)]),
    ]
    for fn, pairs in cases:
        assert fn(_t(pred), _t(gt)).item() == pytest.approx(_rel_reference(pred, gt, pairs))
        assert fn(_t(gt), _t(gt)).item() == 0.0
    # vector form (paper notation)
    pairs = [(37, 41), (38, 40)]
    ref = np.mean(
        [
            np.abs((pred[b, i] - pred[b, j]) - (gt[b, i] - gt[b, j])).sum()
            for b in range(2)
            for i, j in pairs
        ]
    )
    got = L.relative_keypoint_loss(_t(pred), _t(gt), pairs, mode="vector")
    assert got.item() == pytest.approx(ref)


def test_relative_losses_see_only_their_points():
    gt = torch.tensor(_rng(3).normal(size=(1, 68, 2)))
    moved = gt.clone()
    moved[0, 37] += 0.3  # upper eyelid
    assert L.eye_closure_loss(moved, gt) > 0
    assert L.lip_closure_loss(moved, gt) == 0 and L.mouth_corner_loss(moved, gt) == 0
    moved = gt.clone()
    moved[0, 48, 0] -= 0.3  # mouth corner
    assert L.mouth_corner_loss(moved, gt) > 0
    assert L.eye_closure_loss(moved, gt) == 0 and L.lip_closure_loss(moved, gt) == 0


def test_distance_mode_is_invariant_to_rigid_motion():
    gt = torch.tensor(_rng(4).normal(size=(2, 68, 2)))
    a = 0.7
    rot = torch.tensor([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = gt @ rot.T + torch.tensor([0.5, -2.0], dtype=torch.float64)
    assert L.eye_closure_loss(moved, gt).item() == pytest.approx(0.0, abs=1e-12)
    assert L.relative_keypoint_loss(moved, gt, L.EYE_CLOSURE_PAIRS, mode="vector") > 0.01


def test_relative_loss_gradients_finite_for_closed_eyes():
    pred = torch.zeros(1, 68, 2, dtype=torch.float64, requires_grad=True)  # all points coincide
    gt = torch.tensor(_rng(5).normal(size=(1, 68, 2)))
    L.eye_closure_loss(pred, gt).backward()
    assert torch.isfinite(pred.grad).all()


def test_gradcheck_relative_and_landmark_losses():
    rng = _rng(6)
    pred = _t(rng.normal(size=(2, 68, 2)), grad=True)
    gt = _t(rng.normal(size=(2, 68, 2)))
    assert torch.autograd.gradcheck(lambda p: L.lip_closure_loss(p, gt), (pred,))
    assert torch.autograd.gradcheck(lambda p: L.landmark_l2(p, gt), (pred,))


# ----------------------------------------------------------------------------- emotion


def test_emotion_consistency_forms():
    rng = _rng(7)
    a, b = rng.normal(size=(4, 16)), rng.normal(size=(4, 16))
    assert L.emotion_consistency(_t(a), _t(b)).item() == pytest.approx(((a - b) ** 2).mean())
    l1 = L.emotion_consistency(_t(a), _t(b), metric="l1").item()
    assert l1 == pytest.approx(np.abs(a - b).mean())
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert L.emotion_consistency_cosine(_t(a), _t(b)).item() == pytest.approx((1 - cos).mean())
    # cosine ignores the feature scale, normalised MSE too
    assert L.emotion_consistency_cosine(_t(a), _t(3 * a)).item() == pytest.approx(0, abs=1e-12)
    got = L.emotion_consistency(_t(a), _t(3 * a), normalize_features=True)
    assert got.item() == pytest.approx(0, abs=1e-12)
    for m in ("mse", "l1", "cosine"):
        assert L.emotion_consistency(_t(a), _t(a), metric=m).item() == pytest.approx(0, abs=1e-12)


def test_emotion_consistency_gradient_goes_to_render_only():
    rng = _rng(8)
    photo = _t(rng.normal(size=(2, 8)), grad=True)
    render = _t(rng.normal(size=(2, 8)), grad=True)
    L.emotion_consistency(photo, render).backward()
    assert photo.grad is None
    # d/d render of mean((p - r)^2) = 2 (r - p) / (B D)
    expected = 2 * (render - photo).detach() / 16
    torch.testing.assert_close(render.grad, expected)


def test_expression_losses_match_numpy():
    rng = _rng(9)
    logits = rng.normal(size=(6, 8))
    y = rng.integers(0, 8, 6)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -logp[np.arange(6), y]
    got = L.expression_cross_entropy(_t(logits), torch.tensor(y))
    assert got.item() == pytest.approx(nll.mean())
    got_nll = L.expression_nll(torch.log_softmax(_t(logits), 1), torch.tensor(y)[:, None])
    assert got_nll.item() == pytest.approx(nll.mean())
    w = rng.random(8) + 0.1
    ref = (w[y] * nll).sum() / w[y].sum()
    got_w = L.expression_cross_entropy(_t(logits), torch.tensor(y), class_weight=_t(w))
    assert got_w.item() == pytest.approx(ref)
    assert L.va_mse(_t(logits), _t(logits)).item() == 0.0


def test_correlations_match_metrics_and_scipy():
    rng = _rng(10)
    x, y = rng.normal(size=50), rng.normal(size=50) + 0.5
    assert L.pearson_corr(_t(x), _t(y)).item() == pytest.approx(stats.pearsonr(x, y)[0])
    assert L.concordance_corr(_t(x), _t(y)).item() == pytest.approx(metrics.ccc(x, y))
    # ddof=1: the official training form with Bessel-corrected standard deviations
    sx, sy = x.std(ddof=1), y.std(ddof=1)
    r = stats.pearsonr(x, y)[0]
    ref = 2 * r * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2)
    assert L.concordance_corr(_t(x), _t(y), ddof=1).item() == pytest.approx(ref)
    assert L.ccc_loss(_t(x), _t(y)).item() == pytest.approx(1 - ref)
    assert L.pcc_loss(_t(x), _t(y)).item() == pytest.approx(1 - r)
    assert L.pcc_loss(_t(x), _t(2 * x + 1)).item() == pytest.approx(0, abs=1e-12)
    assert L.ccc_loss(_t(x), _t(x)).item() == pytest.approx(0, abs=1e-12)
    assert L.ccc_loss(_t(x), _t(x + 1)).item() > 0.1


def test_va_correlation_loss_and_gradcheck():
    rng = _rng(11)
    pred, gt = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    ccc_v = L.concordance_corr(_t(pred[:, 0]), _t(gt[:, 0]), ddof=1)
    ccc_a = L.concordance_corr(_t(pred[:, 1]), _t(gt[:, 1]), ddof=1)
    got = L.va_correlation_loss(_t(pred), _t(gt))
    assert got.item() == pytest.approx(1 - 0.5 * (ccc_v + ccc_a).item())
    pcc_v, pcc_a = stats.pearsonr(pred[:, 0], gt[:, 0])[0], stats.pearsonr(pred[:, 1], gt[:, 1])[0]
    got_p = L.va_correlation_loss(_t(pred), _t(gt), kind="pcc")
    assert got_p.item() == pytest.approx(1 - 0.5 * (pcc_v + pcc_a))
    assert L.va_correlation_loss(_t(gt), _t(gt)).item() == pytest.approx(0, abs=1e-12)
    p = _t(pred, grad=True)
    assert torch.autograd.gradcheck(lambda q: L.va_correlation_loss(q, _t(gt)), (p,))


def test_shake_weights():
    g = torch.Generator().manual_seed(0)
    w1 = L.shake_weights(3, g)
    w2 = L.shake_weights(3, g)
    assert w1.sum().item() == pytest.approx(1.0) and (w1 >= 0).all()
    assert not torch.allclose(w1, w2)  # redrawn every step
    w3 = L.shake_weights(3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w1, w3)  # reproducible
    assert L.shake_weights(4, g, total=4.0).sum().item() == pytest.approx(4.0)
    cfg = {"v_mse": 1.0, "a_mse": 1.0, "va_lccc": 2.0}
    assert L.va_loss_term_weights(cfg, "shake", training=False) == cfg
    shaken = L.va_loss_term_weights(cfg, "shake", training=True, generator=g)
    assert set(shaken) == set(cfg) and sum(shaken.values()) == pytest.approx(1.0)
    normed = L.va_loss_term_weights(cfg, "norm")
    assert normed == pytest.approx({"v_mse": 0.25, "a_mse": 0.25, "va_lccc": 0.5})
    assert L.va_loss_term_weights(cfg) == cfg


# ----------------------------------------------------------------------------- priors


def test_priors_match_official_sums():
    rng = _rng(12)
    exp, shape = rng.normal(size=(3, 50)), rng.normal(size=(3, 100))
    assert L.expression_prior(_t(exp)).item() == pytest.approx((exp**2).sum() / 2)
    assert L.shape_prior(_t(shape)).item() == pytest.approx((shape**2).sum() / 2)
    got = L.expression_prior(_t(exp), reduction="mean")
    assert got.item() == pytest.approx((exp**2).sum() / 6)
    assert L.texture_prior(torch.zeros(2, 50)).item() == 0.0
    light = rng.normal(size=(2, 9, 3))
    ref = ((light - light.mean(2, keepdims=True)) ** 2).mean()
    assert L.light_white_prior(_t(light)).item() == pytest.approx(ref)
    grey = np.repeat(rng.normal(size=(2, 9, 1)), 3, axis=2)
    assert L.light_white_prior(_t(grey)).item() == pytest.approx(0, abs=1e-15)


# ----------------------------------------------------------------------------- detail


def test_shading_smooth_loss_matches_numpy_and_mask():
    rng = _rng(13)
    s = rng.random((2, 3, 7, 6))
    dx = s[:, :, 1:-1, 1:] - s[:, :, 1:-1, :-1]
    dy = s[:, :, 1:, 1:-1] - s[:, :, :-1, 1:-1]
    ref = (dx**2).mean() + (dy**2).mean()
    assert L.shading_smooth_loss(_t(s)).item() == pytest.approx(ref)
    assert L.z_diff_loss(_t(s)).item() == pytest.approx(ref)
    ones = torch.ones(2, 1, 7, 6, dtype=torch.float64)
    assert L.shading_smooth_loss(_t(s), ones).item() == pytest.approx(ref)
    assert L.shading_smooth_loss(torch.full((1, 3, 5, 5), 0.4)).item() == 0.0
    # masked: a discontinuity outside the mask does not count
    img = np.zeros((1, 1, 6, 6))
    img[..., 4:] = 1.0
    mask = np.zeros((1, 1, 6, 6))
    mask[..., :3] = 1.0
    assert L.shading_smooth_loss(_t(img), _t(mask)).item() == 0.0
    assert L.shading_smooth_loss(_t(img)).item() > 0
    m = _t(rng.random((1, 1, 5, 5)))
    x = _t(rng.random((1, 2, 5, 5)), grad=True)
    assert torch.autograd.gradcheck(lambda t: L.shading_smooth_loss(t, m), (x,))


def test_binary_erosion_matches_scipy():
    rng = _rng(14)
    masks = (rng.random((3, 1, 20, 17)) > 0.25).astype(np.float32)
    masks[0, 0, 3:15, 2:14] = 1.0  # a solid block that survives erosion
    got = L.binary_erosion(torch.tensor(masks), 5).numpy()
    for b in range(3):
        ref = ndimage.binary_erosion(masks[b, 0] > 0, structure=np.ones((5, 5)))
        np.testing.assert_array_equal(got[b, 0], ref.astype(np.float32))
    assert got[0, 0].sum() > 0


def test_z_losses_match_official_form():
    rng = _rng(15)
    uv_z = rng.normal(size=(2, 1, 12, 12)) * 0.01
    vis = np.zeros((2, 1, 12, 12))
    vis[..., 1:11, 1:8] = 1.0
    assert L.z_reg_loss(_t(uv_z)).item() == pytest.approx(np.abs(uv_z).mean())
    nonvis = np.stack(
        [1 - ndimage.binary_erosion(vis[b, 0] > 0, np.ones((5, 5))) for b in range(2)]
    )[:, None]
    ref = (nonvis * np.abs(uv_z - uv_z[..., ::-1])).sum()
    assert L.z_sym_loss(_t(uv_z), _t(vis)).item() == pytest.approx(ref)
    sym = uv_z + uv_z[..., ::-1]
    assert L.z_sym_loss(_t(sym), _t(vis)).item() == pytest.approx(0, abs=1e-15)
    # the flipped copy is detached: gradient is sign(z - flip z) on non-visible texels only
    z = _t(uv_z, grad=True)
    L.z_sym_loss(z, _t(vis)).backward()
    np.testing.assert_allclose(z.grad.numpy(), nonvis * np.sign(uv_z - uv_z[..., ::-1]))


def test_uv_detail_l1_region_and_zero():
    rng = _rng(16)
    tex, gt = rng.random((1, 3, 8, 8)), rng.random((1, 3, 8, 8))
    vis = (rng.random((1, 1, 8, 8)) > 0.5).astype(float)
    ref = np.abs(tex * vis - gt * vis).mean()
    assert L.uv_detail_l1(_t(tex), _t(gt), _t(vis)).item() == pytest.approx(ref)
    sub = np.abs(tex * vis - gt * vis)[:, :, 2:6, 1:5].mean()
    assert L.uv_detail_l1(_t(tex), _t(gt), _t(vis), region=(1, 5, 2, 6)).item() == pytest.approx(
        sub
    )
    assert L.uv_detail_l1(_t(gt), _t(gt), _t(vis), out_size=16).item() == 0.0


def test_detail_code_exchange_stays_within_identity():
    g = torch.Generator().manual_seed(3)
    order = L.within_group_permutation(4, 3, g)
    for k in range(4):
        assert sorted(order[3 * k : 3 * k + 3].tolist()) == [3 * k, 3 * k + 1, 3 * k + 2]
    codes = torch.arange(12, dtype=torch.float32)[:, None].repeat(1, 5)
    out, order = L.exchange_detail_codes(codes, 3, torch.Generator().manual_seed(3))
    assert out.shape == (24, 5)
    torch.testing.assert_close(out[:12], codes)
    torch.testing.assert_close(out[12:], codes[order])
    assert (order // 3 == torch.arange(12) // 3).all()
    # over many draws every in-group position is reached (it really shuffles)
    seen = torch.stack([L.within_group_permutation(1, 3, g) for _ in range(50)])
    assert len({tuple(r) for r in seen.tolist()}) > 1
    with pytest.raises(ValueError):
        L.exchange_detail_codes(codes[:10], 3)


def test_losses_positive_off_target():
    rng = _rng(17)
    a, b = _t(rng.random((2, 3, 4, 4))), _t(rng.random((2, 3, 4, 4)))
    assert L.photometric_l1(a, b) > 0
    assert F.mse_loss(a, b) > 0  # sanity of the random inputs
    lm_a, lm_b = _t(rng.normal(size=(2, 68, 2))), _t(rng.normal(size=(2, 68, 2)))
    for fn in (
        L.landmark_l1,
        L.weighted_landmark_loss,
        L.landmark_l2,
        L.eye_closure_loss,
        L.lip_closure_loss,
        L.mouth_corner_loss,
    ):
        assert fn(lm_a, lm_b) > 0
