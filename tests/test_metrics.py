from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from hessketch.metrics import (
    aposteriori_tail_bounds,
    chance_overlap,
    curvature_concentration,
    frobenius_sq_estimate,
    grassmann_distances,
    magnitude_order,
    mask_iou,
    mask_overlap_curve,
    mask_principal_angles,
    principal_angles,
    subspace_overlap,
)


def _orthonormal(d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    return q


def _eye_cols(d: int, idx: torch.Tensor) -> torch.Tensor:
    return torch.eye(d, dtype=torch.float64)[:, idx]


# --- magnitude_order -------------------------------------------------------------------------


def test_magnitude_order_descending_with_stable_ties():
    theta = torch.tensor([[0.5, -2.0], [2.0, 0.0], [-0.5, 1.0]])
    assert magnitude_order(theta).tolist() == [1, 2, 5, 0, 4, 3]


def test_magnitude_order_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        magnitude_order(torch.tensor([1.0, float("nan")]))


# --- mask_overlap_curve ----------------------------------------------------------------------


def test_mask_overlap_curve_matches_naive():
    d, k = 50, 20
    w = _orthonormal(d, k, seed=0)
    order = torch.randperm(d, generator=torch.Generator().manual_seed(1))
    curve = mask_overlap_curve(w, order)
    naive = torch.stack([w[order[:j], :j].pow(2).sum() / j for j in range(1, k + 1)])
    assert curve.dtype == torch.float64 and curve.shape == (k,)
    torch.testing.assert_close(curve, naive, rtol=0, atol=1e-12)
    short = mask_overlap_curve(w, order, kmax=7)
    torch.testing.assert_close(short, naive[:7], rtol=0, atol=1e-12)


def test_mask_overlap_curve_float32_input_is_computed_in_float64():
    w = _orthonormal(30, 5, seed=2)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(3))
    curve = mask_overlap_curve(w.float(), order)
    naive = torch.stack([w.float()[order[:j], :j].double().pow(2).sum() / j for j in range(1, 6)])
    assert curve.dtype == torch.float64
    torch.testing.assert_close(curve, naive, rtol=0, atol=1e-12)


def test_mask_overlap_equals_one_minus_mean_sin_sq_of_mask_angles():
    d, k = 50, 20
    w = _orthonormal(d, k, seed=4)
    order = torch.randperm(d, generator=torch.Generator().manual_seed(5))
    curve = mask_overlap_curve(w, order)
    for j in (1, 5, 13, 20):
        theta = mask_principal_angles(w[:, :j], order[:j])
        assert curve[j - 1].item() == pytest.approx(
            1 - torch.sin(theta).pow(2).sum().item() / j, abs=1e-12
        )


def test_mask_overlap_curve_bad_arguments():
    w = _orthonormal(10, 4, seed=6)
    with pytest.raises(ValueError, match="kmax"):
        mask_overlap_curve(w, torch.arange(10), kmax=5)
    with pytest.raises(ValueError, match="at least 4"):
        mask_overlap_curve(w, torch.arange(3))
    with pytest.raises(ValueError, match="distinct"):
        mask_overlap_curve(w, torch.tensor([0, 1, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        mask_overlap_curve(w, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="2-D"):
        mask_overlap_curve(w[:, 0], torch.arange(10))


def test_random_masks_average_to_chance():
    # Mean over n uniformly random orders; E[overlap(k)] = k/D for every k. Tolerance: 5
    # standard errors of the mean, with the per-k sample standard deviation.
    d, k, n = 40, 8, 1000
    w = _orthonormal(d, k, seed=7)
    g = torch.Generator().manual_seed(8)
    curves = torch.stack([mask_overlap_curve(w, torch.randperm(d, generator=g)) for _ in range(n)])
    mean, se = curves.mean(0), curves.std(0) / math.sqrt(n)
    expected = chance_overlap(torch.arange(1, k + 1), d)
    assert torch.all((mean - expected).abs() <= 5 * se)


# --- chance_overlap --------------------------------------------------------------------------


def test_chance_overlap_values_and_errors():
    assert chance_overlap(3, 12) == 0.25
    torch.testing.assert_close(
        chance_overlap(torch.tensor([0, 6, 12]), 12),
        torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="dim"):
        chance_overlap(1, 0)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        chance_overlap(6, 5)


# --- subspace overlap and principal angles ---------------------------------------------------


def test_subspace_overlap_self_and_complement():
    q = _orthonormal(20, 20, seed=9)
    a, comp = q[:, :6], q[:, 6:12]
    assert subspace_overlap(a, a) == pytest.approx(1.0, abs=1e-12)
    assert subspace_overlap(a, comp) == pytest.approx(0.0, abs=1e-12)
    rot = a @ _orthonormal(6, 6, seed=10)  # same span, different basis
    assert subspace_overlap(a, rot) == pytest.approx(1.0, abs=1e-12)


def test_subspace_overlap_equals_one_minus_mean_sin_sq():
    a, b = _orthonormal(30, 7, seed=11), _orthonormal(30, 7, seed=12)
    theta = principal_angles(a, b)
    assert subspace_overlap(a, b) == pytest.approx(
        1 - torch.sin(theta).pow(2).sum().item() / 7, abs=1e-12
    )


def test_subspace_overlap_shape_mismatch():
    with pytest.raises(ValueError, match="equal shapes"):
        subspace_overlap(_orthonormal(10, 3, 0), _orthonormal(10, 4, 0))


def test_iou_of_equal_size_masks_from_overlap():
    d, k = 30, 10
    g = torch.Generator().manual_seed(13)
    for _ in range(20):
        ia = torch.randperm(d, generator=g)[:k]
        ib = torch.randperm(d, generator=g)[:k]
        ov = subspace_overlap(_eye_cols(d, ia), _eye_cols(d, ib))
        m = len(set(ia.tolist()) & set(ib.tolist()))
        # Unit-vector bases: overlap = m/k exactly (sums of 0s and 1s), and the identity
        # IoU = m/(2k - m) = ov/(2 - ov) holds exactly; the tolerance is float rounding only.
        assert ov == m / k
        assert mask_iou(ia, ib) == m / (2 * k - m)
        assert mask_iou(ia, ib) == pytest.approx(ov / (2 - ov), rel=1e-15, abs=0)


def test_mask_iou_values_and_errors():
    assert mask_iou(torch.tensor([0, 1, 2]), torch.tensor([2, 3])) == 0.25
    assert mask_iou(torch.tensor([4, 4]), torch.tensor([4])) == 1.0
    with pytest.raises(ValueError, match="empty"):
        mask_iou(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        mask_iou(torch.tensor([1.0]), torch.tensor([1]))


def test_principal_angles_symmetric_sorted_and_known():
    a, b = _orthonormal(25, 5, seed=14), _orthonormal(25, 5, seed=15)
    ab, ba = principal_angles(a, b), principal_angles(b, a)
    torch.testing.assert_close(ab, ba, rtol=0, atol=1e-12)
    assert torch.all(ab[1:] >= ab[:-1])
    # Plane spanned by e0 and (cos t e1 + sin t e2) against span{e0, e1}: angles 0 and t.
    t = 0.3
    e = torch.eye(3, dtype=torch.float64)
    p = torch.stack([e[0], math.cos(t) * e[1] + math.sin(t) * e[2]], dim=1)
    torch.testing.assert_close(
        principal_angles(p, e[:, :2]),
        torch.tensor([0.0, t], dtype=torch.float64),
        rtol=0,
        atol=1e-7,  # arccos near 1 loses half the digits
    )


def test_mask_principal_angles_match_explicit_identity():
    w = _orthonormal(40, 6, seed=16)
    idx = torch.randperm(40, generator=torch.Generator().manual_seed(17))[:9]
    torch.testing.assert_close(
        mask_principal_angles(w, idx),
        principal_angles(w, _eye_cols(40, idx)),
        rtol=0,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="distinct"):
        mask_principal_angles(w, torch.tensor([1, 1]))


# --- grassmann_distances ---------------------------------------------------------------------


def test_grassmann_distances_hand_computed():
    d = grassmann_distances(torch.tensor([0.0, math.pi / 2], dtype=torch.float64))
    expected = {
        "geodesic": math.pi / 2,
        "chordal_max": math.sqrt(2),
        "chordal_2": math.sqrt(2),
        "projection_max": 1.0,
        "projection_2": 1.0,
        "fubini_study": math.pi / 2,
    }
    assert d.keys() == expected.keys()
    for key, val in expected.items():
        assert d[key] == pytest.approx(val, abs=1e-12), key

    d = grassmann_distances(torch.tensor([math.pi / 3], dtype=torch.float64))
    expected = {
        "geodesic": math.pi / 3,
        "chordal_max": 1.0,
        "chordal_2": 1.0,
        "projection_max": math.sqrt(3) / 2,
        "projection_2": math.sqrt(3) / 2,
        "fubini_study": math.pi / 3,
    }
    for key, val in expected.items():
        assert d[key] == pytest.approx(val, abs=1e-12), key


def test_grassmann_distances_zero_and_errors():
    assert all(v == 0.0 for v in grassmann_distances(torch.zeros(4)).values())
    with pytest.raises(ValueError, match="non-empty"):
        grassmann_distances(torch.tensor([]))
    with pytest.raises(ValueError, match="π/2"):
        grassmann_distances(torch.tensor([2.0]))


# --- curvature concentration -----------------------------------------------------------------


def test_curvature_concentration_ends_at_one():
    lam = torch.tensor([3.0, -2.0, 1.0, 0.5], dtype=torch.float64)
    conc = curvature_concentration(lam, float(lam.pow(2).sum()))
    torch.testing.assert_close(
        conc, torch.tensor([9.0, 13.0, 14.0, 14.25], dtype=torch.float64) / 14.25
    )
    assert conc[-1].item() == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="frobenius_sq"):
        curvature_concentration(lam, 0.0)


# --- a-posteriori error estimate -------------------------------------------------------------


def test_frobenius_sq_estimate_unbiased():
    # q probes: Var ||E w||^2 = 2 sum sigma^4, so the mean has std sqrt(2 sum sigma^4 / q);
    # tolerance is 5 of those standard deviations.
    g = torch.Generator().manual_seed(18)
    e = torch.randn(30, 30, generator=g, dtype=torch.float64) / torch.arange(
        1, 31, dtype=torch.float64
    )
    q = 20000
    omega = torch.randn(30, q, generator=g, dtype=torch.float64)
    est = frobenius_sq_estimate((e @ omega).pow(2).sum(0))
    fro_sq = e.pow(2).sum().item()
    sd = math.sqrt(2 * torch.linalg.svdvals(e).pow(4).sum().item() / q)
    assert abs(est - fro_sq) <= 5 * sd


def test_frobenius_sq_estimate_errors():
    with pytest.raises(ValueError, match=">= 0"):
        frobenius_sq_estimate(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="non-empty"):
        frobenius_sq_estimate(torch.tensor([]))


@pytest.mark.parametrize("factor", [1.5, 2.0, 4.0])
def test_aposteriori_tail_bounds_dominate_chi2_and_decrease(factor):
    prev = (1.0, 1.0)
    for q in (1, 2, 5, 10, 20, 50):
        under, over = aposteriori_tail_bounds(q, factor)
        assert under >= stats.chi2.cdf(q / factor, q)
        assert over >= stats.chi2.sf(q * factor, q)
        assert under < prev[0] and over < prev[1]
        prev = (under, over)


def test_aposteriori_tail_bounds_closed_form_and_errors():
    under, over = aposteriori_tail_bounds(4, 2.0)
    assert under == pytest.approx(0.25 * math.e, rel=1e-14)
    assert over == pytest.approx(4 * math.exp(-2.0), rel=1e-14)
    with pytest.raises(ValueError, match="factor"):
        aposteriori_tail_bounds(4, 1.0)
    with pytest.raises(ValueError, match="q"):
        aposteriori_tail_bounds(0, 2.0)
