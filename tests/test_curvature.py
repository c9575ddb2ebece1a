"""Curvatures as a registry: the GGN and the empirical Fisher against dense float64 references
(J^T H_loss J and G^T G / n from torch.func), positive semi-definiteness, the registry's errors,
and a new curvature reaching the decomposition with no other change."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

import hessketch
from hessketch.curvature import (
    _REGISTRY,
    CURVATURES,
    CurvatureOperator,
    curvature_problems,
    make_curvature,
    register_curvature,
)
from hessketch.errors import NonDeterminismError, SketchStoreError
from hessketch.hessian import EmpiricalFisherOperator, GGNOperator, HessianOperator, dense_matrix
from hessketch.models import build_model, flatten_params, unflatten_params
from hessketch.pipeline.hessian_at_step import check_same_hessian

F64 = torch.float64


def tiny_problem(n: int = 23, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model({"name": "mlp", "widths": [5, 4, 3]}).double()
    theta = flatten_params(model)
    x = torch.randn(n, 5, dtype=F64)
    y = torch.randint(0, 3, (n,))
    return model, theta, x, y


def reference_ggn(model, theta, x, y) -> torch.Tensor:
    """``1/n Σᵢ Jᵢᵀ (diag pᵢ − pᵢpᵢᵀ) Jᵢ`` from the dense Jacobian of the logits."""

    def logits(flat):
        return functional_call(model, unflatten_params(model, flat), (x,))

    jac = jacrev(logits)(theta)  # (n, C, D)
    p = torch.softmax(logits(theta), dim=-1)
    h_loss = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (n, C, C)
    return torch.einsum("ncd,nce,nef->df", jac, h_loss, jac) / x.shape[0]


def reference_fisher(model, theta, x, y) -> torch.Tensor:
    """``1/n Σᵢ gᵢgᵢᵀ`` from the dense per-point gradients."""

    def losses(flat):
        logits = functional_call(model, unflatten_params(model, flat), (x,))
        return nn.functional.cross_entropy(logits, y, reduction="none")

    g = jacrev(losses)(theta)  # (n, D)
    return g.T @ g / x.shape[0]


def ggn_eigenpairs(model, theta, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact eigenpairs of the GGN (descending) from its factor: ``G = AᵀA`` with rows
    ``Aᵢ = (diag pᵢ − pᵢpᵢᵀ)^½ Jᵢ / √n``, so the SVD of the small ``(nC, D)`` matrix ``A`` gives
    them without forming the ``D × D`` matrix."""

    def logits(flat):
        return functional_call(model, unflatten_params(model, flat), (x,))

    jac = jacrev(logits)(theta)  # (n, C, D)
    p = torch.softmax(logits(theta), dim=-1)
    w, u = torch.linalg.eigh(torch.diag_embed(p) - p[:, :, None] * p[:, None, :])
    root = u @ torch.diag_embed(w.clamp_min(0).sqrt()) @ u.transpose(1, 2)
    factor = torch.einsum("nce,ned->ncd", root, jac).reshape(-1, theta.numel())
    _, sigma, vh = torch.linalg.svd(factor / x.shape[0] ** 0.5, full_matrices=False)
    return sigma**2, vh.T


REFERENCES = {"ggn": reference_ggn, "empirical-fisher": reference_fisher}


def test_the_registry_holds_the_three_curvatures() -> None:
    assert CURVATURES["hessian"] is HessianOperator
    assert CURVATURES["ggn"] is GGNOperator
    assert CURVATURES["empirical-fisher"] is EmpiricalFisherOperator
    assert GGNOperator.psd and EmpiricalFisherOperator.psd and not HessianOperator.psd


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("batch_size", [23, 10, 7])  # 10 and 7 leave a smaller last batch
def test_products_match_the_dense_reference(name: str, batch_size: int) -> None:
    model, theta, x, y = tiny_problem()
    dense = REFERENCES[name](model, theta, x, y)
    op = make_curvature(name, model, theta, x, y, batch_size=batch_size, dtype=F64, max_block=4)
    v = torch.randn(theta.numel(), 6, dtype=F64)
    # the same tolerances as the Hessian's products against torch.func.hessian
    torch.testing.assert_close(op @ v, dense @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dense_matrix(op, block=5), dense, rtol=1e-10, atol=1e-12)
    assert op.num_products == 6 + theta.numel()


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_ggn_and_fisher_are_positive_semi_definite(name: str) -> None:
    model, theta, x, y = tiny_problem(n=40, seed=3)
    op = make_curvature(name, model, theta, x, y, dtype=F64)
    values = torch.linalg.eigvalsh(dense_matrix(op))
    assert float(values.min()) >= -1e-13 * float(values.abs().max())
    # the Hessian of the same network is indefinite: the two differ
    hessian = torch.linalg.eigvalsh(dense_matrix(HessianOperator(model, theta, x, y, dtype=F64)))
    assert float(hessian.min()) < -1e-6 * float(hessian.abs().max())


def test_ggn_is_the_hessian_of_a_linear_model() -> None:
    """Logits linear in θ have no second derivative: the Hessian is exactly the GGN."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 4)).double()
    theta = flatten_params(model)
    x, y = torch.randn(30, 6, dtype=F64), torch.randint(0, 4, (30,))
    ggn = dense_matrix(GGNOperator(model, theta, x, y, batch_size=8, dtype=F64))
    hessian = dense_matrix(HessianOperator(model, theta, x, y, batch_size=8, dtype=F64))
    torch.testing.assert_close(ggn, hessian, rtol=1e-10, atol=1e-13)


def test_the_factored_reference_is_the_dense_ggn() -> None:
    model, theta, x, y = tiny_problem()
    values, vectors = ggn_eigenpairs(model, theta, x, y)
    torch.testing.assert_close(
        (vectors * values) @ vectors.T, reference_ggn(model, theta, x, y), rtol=0, atol=1e-12
    )


def test_float32_products_agree_with_the_float64_reference() -> None:
    model, theta, x, y = tiny_problem()
    dense = reference_ggn(model, theta, x, y)
    op32 = make_curvature("ggn", model, theta, x, y, batch_size=10)
    assert op32.dtype == torch.float32
    assert float((dense_matrix(op32).double() - dense).norm() / dense.norm()) < 1e-5


def test_a_sketch_of_the_ggn_is_certified_against_its_dense_matrix() -> None:
    """The decomposition sees only products: the adaptive Krylov method on float32 GGN
    products of the paper's MLP (7,030 parameters, 60 random points) certifies its top-10 space
    and its certificate holds against the dense float64 GGN."""
    torch.manual_seed(0)
    model = build_model({"name": "mlp16"})
    theta = flatten_params(model)
    x, y = torch.rand(60, 1, 16, 16), torch.arange(60) % 10
    values, vectors = ggn_eigenpairs(model.double(), theta.double(), x.double(), y)
    op = make_curvature("ggn", model, theta, x, y, batch_size=60)
    d = hessketch.decompose(op, op.dim, 20, 40, seed=1, target=10, max_hvps=400, width=20)
    c = d.certificate
    assert c.space_k >= 10
    top = d.eigenvalues[:10].double()
    # the same tolerance as the Hessian's (max relative error of the top 10 ≤ 1e-4)
    assert float(((top - values[:10]).abs() / values[:10].abs()).max()) <= 1e-4
    q, _ = torch.linalg.qr(d.eigenvectors[:, :10].double())
    truth = (q - vectors[:, :10] @ (vectors[:, :10].T @ q)).norm()
    assert float(truth) <= float(c.space_bounds[9]) <= 0.1


class NoisyLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * (1 + 0.1 * torch.rand(1, dtype=x.dtype))


@pytest.mark.parametrize(("name", "words"), [("ggn", "GGN-vector"), ("empirical-fisher", "Fisher")])
def test_every_curvature_gets_the_determinism_check(name: str, words: str) -> None:
    model = nn.Sequential(NoisyLinear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    theta = flatten_params(model)
    x, y = torch.randn(11, 5, dtype=F64), torch.randint(0, 3, (11,))
    with pytest.raises(NonDeterminismError, match=f"two {words}.* not deterministic"):
        make_curvature(name, model, theta, x, y, dtype=F64)


def test_registry_errors_name_the_key_and_the_choices() -> None:
    model, theta, x, y = tiny_problem()
    with pytest.raises(ValueError, match=r"hessian.curvature: unknown curvature 'hvp'.*'ggn'"):
        make_curvature("hvp", model, theta, x, y)
    (problem,) = curvature_problems("ggn", "reverse-over-reverse")
    assert problem.startswith("hessian.method: 'reverse-over-reverse'")
    assert "forward-over-reverse" in problem
    assert curvature_problems("hessian", "reverse-over-reverse") == []
    with pytest.raises(ValueError, match="already registered"):
        register_curvature("ggn")(GGNOperator)
    with pytest.raises(ValueError, match="CurvatureOperator subclasses"):
        register_curvature("not-a-curvature")(dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty str"):
        register_curvature("")


def test_a_new_curvature_is_one_registered_class() -> None:
    """A damped GGN, registered in a few lines, is reachable by name and decomposes."""

    @register_curvature("damped-ggn-test")
    class DampedGGN(GGNOperator):
        def _batch_product(self, x, y, v):
            return super()._batch_product(x, y, v) + 0.5 * v

    try:
        model, theta, x, y = tiny_problem()
        op = make_curvature("damped-ggn-test", model, theta, x, y, dtype=F64)
        assert isinstance(op, DampedGGN) and op.name == "damped-ggn-test"
        dense = reference_ggn(model, theta, x, y) + 0.5 * torch.eye(theta.numel(), dtype=F64)
        torch.testing.assert_close(dense_matrix(op), dense, rtol=1e-10, atol=1e-12)
        assert curvature_problems("damped-ggn-test", "forward-over-reverse") == []
    finally:
        _REGISTRY.pop("damped-ggn-test")


def test_a_store_of_one_curvature_is_not_measured_with_another() -> None:
    store = {
        "param_hash": "p",
        "buffers_hash": None,
        "hessian_set": {"points_sha256": "s"},
        "hessian": {"dtype": "float32", "method": "forward-over-reverse"},  # before curvatures
    }
    now = {**store, "hessian": {"curvature": "hessian", **store["hessian"]}}
    check_same_hessian(store, now, "sketch.zarr", "step 0")  # a Hessian store stays valid
    ggn = {**store, "hessian": {**now["hessian"], "curvature": "ggn"}}
    with pytest.raises(SketchStoreError, match=r"sketch\.zarr was made for the products.*'ggn'"):
        check_same_hessian(store, ggn, "sketch.zarr", "step 0")


def test_the_base_class_is_abstract() -> None:
    model, theta, x, y = tiny_problem()
    with pytest.raises(NotImplementedError):
        CurvatureOperator(model, theta, x, y)
