"""The certificate: residual bounds, the verdict, and the product-free consistency checks."""

from __future__ import annotations

import math

import pytest
import torch
from test_seigh import matrix, spectrum

from hessketch.certificate import _energy_factor, certify, probe_checks
from hessketch.metrics import aposteriori_tail_bounds

F64 = torch.float64


def test_residuals_and_rayleigh_quotients_are_exact_for_perturbed_pairs() -> None:
    lam = spectrum("exponential")
    a, q = matrix(lam)
    gen = torch.Generator().manual_seed(0)
    w = q[:, :5] + 1e-3 * torch.randn(300, 5, generator=gen, dtype=F64)
    values = lam[:5] + torch.tensor([0, 1e-3, -2e-3, 0, 5e-2], dtype=F64)
    c = certify(a.__matmul__, values, w, block_size=2)
    unit = w / w.norm(dim=0)
    torch.testing.assert_close(
        c.residual_norms, (a @ unit - unit * values).norm(dim=0), atol=1e-14, rtol=0
    )
    torch.testing.assert_close(c.rayleigh, ((a @ unit) * unit).sum(0), atol=1e-14, rtol=0)
    assert c.hvps == 5 and c.norm_estimate == pytest.approx(float(c.rayleigh.abs().max()))
    # the bound: some eigenvalue within the residual of every reported value
    dist = (values[:, None] - lam[None, :]).abs().min(1).values
    assert torch.all(dist <= c.residual_norms)


def test_trusted_k_is_the_certified_prefix() -> None:
    lam = spectrum("polynomial")
    a, q = matrix(lam)
    values = lam[:4].clone()
    values[2] += 0.2  # pair 3 wrong by 20 % of ‖H‖₂ = 1
    c = certify(a.__matmul__, values, q[:, :4], tolerance=0.05)
    assert c.trusted_k == 2
    assert "pair 3" in c.verdict
    rows = c.rows()
    assert [r["certified"] for r in rows] == [1, 1, 0, 0]
    assert rows[2]["backward_error"] == pytest.approx(0.2, rel=1e-10)
    assert c.to_dict()["trusted_k"] == 2


def test_energy_factor_keeps_false_alarms_below_one_in_a_thousand() -> None:
    for probes in (3, 10, 40):
        factor = _energy_factor(probes)
        assert aposteriori_tail_bounds(probes, factor)[0] <= 1e-3
        assert aposteriori_tail_bounds(probes, factor * 0.99)[0] > 1e-3 * 0.9


def test_probe_checks() -> None:
    values = torch.tensor([3.0, 2.0], dtype=F64)  # Σλ² = 13
    ok = probe_checks(values, frobenius_sq_probes=20.0, residual_sq=5.0, probes=10)
    assert ok["eigenvalue_energy"]["passed"] and ok["residual_energy"]["passed"]
    assert ok["residual_energy"]["relative_error"] == pytest.approx(math.sqrt(0.25))
    factor = _energy_factor(10)
    bad = probe_checks(values, frobenius_sq_probes=13.0 / factor * 0.9, residual_sq=5.0, probes=10)
    assert not bad["eigenvalue_energy"]["passed"]
    worse = probe_checks(values, frobenius_sq_probes=20.0, residual_sq=25.0, probes=10)
    assert not worse["residual_energy"]["passed"]
    a, q = matrix(spectrum("exponential"))
    c = certify(a.__matmul__, values, q[:, :2], checks=worse)
    assert c.trusted_k == 0 and c.verdict.startswith("UNTRUSTWORTHY")
