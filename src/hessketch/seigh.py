"""SEIGH: sketched symmetric eigendecomposition (Fernandez et al., TMLR 2025, §3; DESIGN §1.3).

The reduction streams over row blocks of ``Y`` and never holds a ``D×k`` matrix:

1. pass 1: tall-skinny QR of ``Y`` (sequential Householder TSQR in float64; in memory,
   Cholesky QR, once or twice, when ``Y`` is well enough conditioned) gives ``R``; from its SVD
   ``R = U Σ Vᵀ`` the orthonormal basis is ``Q = Y M`` with ``M = V Σ⁻¹`` (``k×k``);
2. ``ΨQ = Z[:, :k] M`` and ``ΦQ = PhiY M`` (no transform of ``Q`` is needed);
3. core ``C = (ΨQ)⁺ Z ((ΦQ)⁺)ᵀ`` by two least-squares solves, symmetrized, ``eigh``;
4. eigenpairs sorted by descending ``|λ|``; eigenvectors ``W = Y (M U)``, written per row block
   in pass 2, which also forms the a-posteriori residuals ``HΩ − W Λ Wᵀ Ω``.

Memory: a row block times ``k + q`` plus ``s×s`` (the probes are regenerated per row block);
everything small is float64.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from hessketch.adaptive import Target, krylov_decomposition
from hessketch.certificate import (
    DEFAULT_SPACE_TOLERANCE,
    DEFAULT_TOLERANCE,
    FLOAT32_ROUNDING,
    Certificate,
    probe_checks,
    ritz_certificate,
)
from hessketch.certificate import certify as certify_pairs
from hessketch.errors import NumericalError
from hessketch.sketch import SketchSpec, measure_block

__all__ = [
    "Decomposition",
    "InMemorySketch",
    "Reduction",
    "SketchSource",
    "decompose",
    "measure_sketch",
    "reduce_sketch",
    "seigh",
]

log = logging.getLogger(__name__)

# Singular values of R below this fraction of the largest are treated as zero: beyond it,
# Q = Y V Σ⁻¹ would lose orthonormality in float64 (error ≈ 1e-16 · σ_max/σ_min).
RANK_RTOL = 1e-10


class SketchSource(Protocol):
    """Read access to a measured sketch (an in-memory one or a Zarr store)."""

    spec: SketchSpec
    row_block: int

    def read(self, name: str, rows: slice | None = None) -> torch.Tensor:
        """Array ``name`` (``Y``, ``Z``, ``PhiY``, ``HOmega``), optionally a row range, float64."""
        ...


@dataclass
class Reduction:
    """Result of the reduction: eigenvalues and the map from ``Y`` to the eigenvectors.

    Attributes:
        eigenvalues: ``(k,)`` float64, sorted by descending ``|λ|``.
        basis_map: ``(k, k)`` float64 ``B`` with eigenvectors ``W = Y B``.
        frobenius_sq: estimate of ``‖H‖_F²``: ``Σλ² + residual_sq`` (Pythagoras for the
            projection ``Ĥ = QQᵀHQQᵀ``, which the sketched core approximates). Far less noisy
            than the plain probe estimate ``mean ‖Hω‖²`` when ``Ĥ`` captures most of ``H``.
            ``None`` without probes.
        frobenius_sq_probes: the plain probe estimate ``mean ‖Hω‖²`` (``None`` without probes).
        residual_sq: estimate of ``‖H − W Λ Wᵀ‖_F²`` from the probes (``None`` without).
        probes: number of probes behind the two estimates.
    """

    eigenvalues: torch.Tensor
    basis_map: torch.Tensor
    frobenius_sq: float | None = None
    frobenius_sq_probes: float | None = None
    residual_sq: float | None = None
    probes: int = 0


class InMemorySketch:
    """A sketch held in memory (``measure_sketch`` fills it); a :class:`SketchSource`."""

    def __init__(self, spec: SketchSpec, dtype: torch.dtype = torch.float32) -> None:
        self.spec = spec
        self.row_block = 1 << 16
        self.in_memory = True  # rereading costs nothing (the reduction may pass over Y twice)
        shapes = {
            "Y": (spec.dim, spec.k),
            "Z": (spec.s, spec.s),
            "PhiY": (spec.s, spec.k),
            "HOmega": (spec.dim, spec.probes),
        }
        self.arrays = {
            n: torch.full(shape, float("nan"), dtype=dtype) for n, shape in shapes.items()
        }

    def write(self, name: str, start: int, values: torch.Tensor) -> None:
        """Store ``values`` as columns ``start, start+1, …`` of array ``name``."""
        self.arrays[name][:, start : start + values.shape[1]] = values

    def read(self, name: str, rows: slice | None = None) -> torch.Tensor:
        """See :class:`SketchSource`."""
        a = self.arrays[name]
        return (a if rows is None else a[rows]).to(torch.float64)


def measure_sketch(
    spec: SketchSpec,
    op: Callable[[torch.Tensor], torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> InMemorySketch:
    """Measure every block of ``spec`` with ``op`` into an in-memory sketch."""
    sketch = InMemorySketch(spec, dtype)
    for block in spec.blocks():
        for name, (start, values) in measure_block(
            spec, op, block, dtype=dtype, device=device
        ).items():
            sketch.write(name, start, values)
    return sketch


def _row_blocks(dim: int, size: int) -> Iterator[slice]:
    for start in range(0, dim, size):
        yield slice(start, min(start + size, dim))


def _tsqr_step(r_factor: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``R`` of ``[R_before; y]``: QR of the block alone, then of the two triangles."""
    r_block = torch.linalg.qr(y, mode="r").R
    return torch.linalg.qr(torch.cat([r_factor, r_block]), mode="r").R


# Cholesky QR loses orthogonality as u·κ(Y)²: one pass is kept up to κ = 1e3 (Q orthonormal
# to ~1e-10), CholeskyQR2 up to κ = 1e6 (orthonormal to round-off, Yamamoto et al. 2015, safe
# to κ ≈ u^(-1/2) ≈ 1e8); beyond, the Householder TSQR.
_CHOLESKY_ONE_PASS_MAX_CONDITION = 1e3
_CHOLESKY_MAX_CONDITION = 1e6


def _cholesky_qr(source: SketchSource, blocks: list[slice], gram: torch.Tensor) -> torch.Tensor:
    """``R`` of ``Y`` from ``gram = YᵀY`` (see the thresholds above).

    Cholesky QR, repeated once if ``κ(Y) > 1e3``; the Householder TSQR if ``κ(Y) > 1e6``.
    """
    eigenvalues = torch.linalg.eigvalsh(gram)
    top = float(eigenvalues[-1])
    if top > 0 and float(eigenvalues[0]) > top / _CHOLESKY_ONE_PASS_MAX_CONDITION**2:
        chol, info = torch.linalg.cholesky_ex(gram)
        if int(info) == 0:
            return chol.T
    if top > 0 and float(eigenvalues[0]) > top / _CHOLESKY_MAX_CONDITION**2:
        r1 = torch.linalg.cholesky(gram).T
        # Y R1⁻¹ by a GEMM with the inverse (error ~u·κ(R1), far below what CholeskyQR2 fixes)
        r1_inv = torch.linalg.solve_triangular(r1, torch.eye(len(r1), dtype=r1.dtype), upper=True)
        gram2 = torch.zeros_like(gram)
        for rows in blocks:
            q1 = source.read("Y", rows) @ r1_inv
            gram2 += q1.T @ q1
        chol, info = torch.linalg.cholesky_ex(gram2)
        if int(info) == 0:
            return chol.T @ r1
    log.info("Y is ill-conditioned for CholeskyQR2: Householder TSQR")
    r_factor = torch.zeros(0, gram.shape[0], dtype=torch.float64)
    for rows in blocks:
        r_factor = _tsqr_step(r_factor, source.read("Y", rows))
    return r_factor


def _lstsq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Least-squares solution of ``a x = b`` for a tall, full-column-rank ``a``, via QR.

    Not ``torch.linalg.lstsq``: its CPU driver is not bitwise reproducible from run to run,
    and a rerun of the reduction must give the same bits.
    """
    q, r = torch.linalg.qr(a)
    return torch.linalg.solve_triangular(r, q.T @ b, upper=True)


def _core(spec: SketchSpec, r_factor: torch.Tensor, z: torch.Tensor, phiy: torch.Tensor):
    """Eigenvalues and basis map from ``R``, ``Z`` and ``PhiY`` (steps 2–4 of the module doc)."""
    _, sigma, vh = torch.linalg.svd(r_factor)
    rank = int((sigma > RANK_RTOL * sigma[0]).sum()) if sigma[0] > 0 else 0
    if rank < spec.k:
        raise NumericalError(
            f"the outer sketch Y has numerical rank {rank} < k={spec.k}: the operator has "
            f"fewer than k significant eigenvalues (or Y is corrupt); use a smaller k"
        )
    m = vh.T / sigma  # Q = Y M has orthonormal columns
    psi_q = z[:, : spec.k] @ m
    phi_q = phiy @ m
    left = _lstsq(psi_q, z)  # (ΨQ)⁺ Z
    core = _lstsq(phi_q, left.T).T  # … ((ΦQ)⁺)ᵀ
    eigenvalues, u = torch.linalg.eigh((core + core.T) / 2)
    order = torch.argsort(eigenvalues.abs(), descending=True, stable=True)
    return eigenvalues[order], m @ u[:, order]


def reduce_sketch(
    source: SketchSource,
    *,
    on_y_rows: Callable[[slice, torch.Tensor, torch.Tensor | None], None] | None = None,
    after_pass1: Callable[[], None] | None = None,
    on_eigenvector_rows: Callable[[slice, torch.Tensor], None] | None = None,
) -> Reduction:
    """Eigenpairs from a measured sketch, out of core (see the module docstring).

    Args:
        source: the measured sketch.
        on_y_rows: called in pass 1 with each row block of ``Y`` and ``HOmega`` (float64), e.g. to
            verify checksums while reading; before the finiteness check, so that it may raise a
            more specific error.
        after_pass1: called once pass 1 has read all of ``Y`` (e.g. to compare checksums).
        on_eigenvector_rows: called in pass 2 with each row block of the eigenvectors (float64);
            pass 2 runs only if this is given or the sketch has probes.
    """
    spec = source.spec
    q = spec.probes
    # In memory, rereading Y is free: Cholesky QR (one or two Gram passes, GEMM speed) replaces
    # the Householder TSQR unless Y is too ill-conditioned for it. Out of core, one pass: TSQR.
    cholesky = bool(getattr(source, "in_memory", False))
    r_factor = torch.zeros(0, spec.k, dtype=torch.float64)
    gram = torch.zeros(spec.k, spec.k, dtype=torch.float64)
    y_t_omega = torch.zeros(spec.k, q, dtype=torch.float64)
    h_omega_sq = torch.zeros(q, dtype=torch.float64)
    blocks = list(_row_blocks(spec.dim, source.row_block))
    for i, rows in enumerate(blocks):
        y = source.read("Y", rows)
        h_omega = source.read("HOmega", rows) if q else None
        if on_y_rows is not None:  # first: it may know better what a bad value means
            on_y_rows(rows, y, h_omega)
        if cholesky:
            # a non-finite entry makes its column's squared norm non-finite (no overflow: the
            # float64 square of a float32 value is finite): the Gram is the finiteness check
            block_gram = y.T @ y
            finite = bool(torch.isfinite(block_gram.diagonal()).all())
        else:
            finite = bool(torch.isfinite(y).all())
        if not finite:
            raise NumericalError(f"Y has non-finite values in rows [{rows.start}, {rows.stop})")
        if q and h_omega is not None:
            # probes regenerated per row block: nothing of size D×q is ever held
            y_t_omega += y.T @ spec.probe_vectors(0, q, dtype=torch.float64, coords=rows)
            h_omega_sq += h_omega.square().sum(0)
        if cholesky:
            gram += block_gram
        else:
            r_factor = _tsqr_step(r_factor, y)
        del y, h_omega
        log.info("reduce pass 1: row block %d / %d", i + 1, len(blocks))
    if after_pass1 is not None:
        after_pass1()
    if cholesky:
        r_factor = _cholesky_qr(source, blocks, gram)
    eigenvalues, basis_map = _core(spec, r_factor, source.read("Z"), source.read("PhiY"))
    result = Reduction(eigenvalues, basis_map, probes=q)
    if on_eigenvector_rows is None and not q:
        return result
    # Ĥω = W Λ Wᵀ ω with Wᵀ Ω = Bᵀ (Yᵀ Ω)
    g = eigenvalues[:, None] * (basis_map.T @ y_t_omega)
    residual_sq = torch.zeros(q, dtype=torch.float64)
    for i, rows in enumerate(blocks):
        w = source.read("Y", rows) @ basis_map
        if on_eigenvector_rows is not None:
            on_eigenvector_rows(rows, w)
        if q:
            residual_sq += (source.read("HOmega", rows) - w @ g).square().sum(0)
        del w
        log.info("reduce pass 2 (eigenvectors): row block %d / %d", i + 1, len(blocks))
    if q:
        result.frobenius_sq_probes = float(h_omega_sq.mean())
        result.residual_sq = float(residual_sq.mean())
        result.frobenius_sq = float(eigenvalues.square().sum()) + result.residual_sq
    return result


@dataclass
class Decomposition:
    """Eigenpairs with the evidence of their accuracy.

    Attributes:
        eigenvalues: ``(k,)`` sorted by descending ``|λ|``.
        eigenvectors: ``(dim, k)``, the same order.
        certificate: residuals, Rayleigh quotients and the verdict (``None`` if not asked for).
        hvps: products spent, by purpose (``"measurement"``, ``"certificate"``).
        passes: waves of products behind the eigenpairs.
        stopped: why an adaptive run stopped (``"target met"``, ``"budget spent"``,
            ``"invariant space"``); ``None`` for a fixed number of passes.
        history: an adaptive run's decision after every wave
            (:class:`hessketch.adaptive.Decision` as dicts).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    certificate: Certificate | None
    hvps: dict[str, int]
    passes: int
    stopped: str | None = None
    history: list[dict] | None = None


def _as_operator(
    op: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.dtype, torch.device | str | None]:
    if not isinstance(op, torch.Tensor):
        return op, dtype or torch.float32, device
    if op.shape != (dim, dim):
        raise ValueError(f"op has shape {tuple(op.shape)}, expected ({dim}, {dim})")
    dtype = dtype or op.dtype
    device = device or op.device
    matrix = op.to(dtype=dtype, device=device)

    def apply(v: torch.Tensor) -> torch.Tensor:
        return matrix @ v

    return apply, dtype, device


def decompose(
    op: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    k: int,
    s: int | None = None,
    *,
    passes: int = 1,
    seed: int = 0,
    test_matrix: str = "ssrft",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    block_size: int = 64,
    width: int | None = None,
    probes: int = 10,
    certify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    space_tolerance: float = DEFAULT_SPACE_TOLERANCE,
    target: int | str | None = None,
    max_hvps: int | None = None,
    product_error: float | None = None,
) -> Decomposition:
    """Top-``k`` eigenpairs (by ``|λ|``) of a symmetric operator, with a certificate.

    ``passes=1`` is the paper's one-pass SEIGH (``s`` products, plus ``probes`` for the
    product-free checks); its certificate costs a verification wave of ``k`` further products.
    ``passes=p > 1`` is block Krylov (:mod:`hessketch.krylov`): ``p`` waves of ``width``
    products from the first ``width`` test vectors, Rayleigh–Ritz on the ``p·width``-dimensional
    space; its residuals, hence its certificate, come without further products. Narrow waves
    and more of them buy a higher polynomial degree for the same products (see
    benchmarks/README.md); wide waves give more parallelism per wave.

    With ``max_hvps`` the number of waves is decided by the certificate
    (:mod:`hessketch.adaptive`): Krylov waves of ``width`` products (default ``min(s, 20)``)
    until the top-``target`` space is certified to ``space_tolerance`` or ``max_hvps``
    products are spent; ``Decomposition.stopped`` says which.

    Args:
        op: a symmetric ``(dim, dim)`` tensor, or a callable mapping ``(dim, b)`` blocks to
            ``(dim, b)`` blocks (e.g. a :class:`hessketch.HessianOperator`).
        dim: the operator's size ``D``.
        k: number of eigenpairs.
        s: products per wave, ``k <= s <= dim``; default ``min(2k, dim)``.
        passes: waves of products (``1``: one-pass SEIGH; more: block Krylov).
        seed: seed of the test matrices; the result is a pure function of it.
        test_matrix: kind of test matrix (:data:`hessketch.testmatrices.TEST_MATRIX_KINDS`).
        dtype: dtype of the products; default the tensor's dtype, float32 for callables.
        device: device of the products; default the tensor's device, CPU for callables.
        block_size: vectors per product with ``op``.
        width: products per Krylov wave (``passes > 1``), ``1 <= width <= s``; default ``s``.
        probes: Gaussian probes of the one-pass sketch, for the product-free checks (none
            are measured when ``certify`` is false).
        certify: compute the certificate (for ``passes=1`` this costs ``k`` products).
        tolerance: largest backward error of a certified pair.
        space_tolerance: largest bound on ``‖sin Θ‖_F`` of a certified top-``j`` space.
        target: adaptive runs: certify the top-``target`` space (an int ``≤ k``), or
            ``"budget"``/``None``: the largest ``j ≤ k`` the budget certifies.
        max_hvps: the budget of an adaptive run; giving it makes the run adaptive.
        product_error: relative accuracy ``ε`` of one product assumed by the space bounds
            (default: :data:`hessketch.spacebound.PRODUCT_ERROR` of ``dtype``).

    Returns:
        A :class:`Decomposition`; eigenpairs in ``dtype``, on the CPU.
    """
    if not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be an int >= 1, got {passes!r}")
    apply, dtype, device = _as_operator(op, dim, dtype, device)
    spec = SketchSpec(
        dim=dim,
        k=k,
        s=min(2 * k, dim) if s is None else s,
        seed=seed,
        test_matrix=test_matrix,
        block_size=block_size,
        probes=probes if passes == 1 and certify and max_hvps is None else 0,
    )
    if max_hvps is not None or target is not None:
        if max_hvps is None or passes != 1:
            raise ValueError("an adaptive run needs max_hvps (its budget) and passes=1 (unset)")
        goal = Target.parse(target, k, max_hvps, space_tolerance)
        width = min(spec.s, 20) if width is None else width
        if not 1 <= width <= spec.s or max_hvps < k:
            raise ValueError(f"need 1 <= width <= s={spec.s} and max_hvps >= k={k}")
        return _krylov(apply, spec, width, None, goal, dtype, device, tolerance, product_error)
    if passes > 1:
        width = spec.s if width is None else width
        if not 1 <= width <= spec.s or passes * width < k:
            raise ValueError(
                f"need 1 <= width <= s={spec.s} and passes·width >= k={k}; got width={width}"
            )
        run = _krylov(apply, spec, width, passes, None, dtype, device, tolerance, product_error)
        if not certify:
            run.certificate = None
        return run
    sketch = measure_sketch(spec, apply, dtype=dtype, device=device)
    eigenvectors = torch.empty(dim, k, dtype=dtype)
    result = reduce_sketch(sketch, on_eigenvector_rows=lambda rows, w: eigenvectors[rows].copy_(w))
    eigenvalues = result.eigenvalues.to(dtype)
    certificate = None
    if certify:
        checks = {}
        if result.probes and result.frobenius_sq_probes is not None:
            checks = probe_checks(
                result.eigenvalues,
                result.frobenius_sq_probes,
                result.residual_sq or 0.0,
                result.probes,
            )

        def apply_on_device(v: torch.Tensor) -> torch.Tensor:
            return apply(v.to(device))

        certificate = certify_pairs(
            apply_on_device,
            result.eigenvalues,
            eigenvectors,
            block_size=block_size,
            tolerance=tolerance,
            space_tolerance=space_tolerance,
            checks=checks,
            product_dtype=dtype,
            product_error=product_error,
        )
    hvps = {
        "measurement": spec.s + spec.probes,
        "certificate": certificate.hvps if certificate else 0,
    }
    return Decomposition(eigenvalues, eigenvectors, certificate, hvps, 1)


def _krylov(
    apply: Callable[[torch.Tensor], torch.Tensor],
    spec: SketchSpec,
    width: int,
    passes: int | None,
    goal: Target | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
    tolerance: float,
    product_error: float | None,
) -> Decomposition:
    """Block Krylov (fixed ``passes`` or adaptive towards ``goal``) with its certificate."""
    rounding = FLOAT32_ROUNDING if dtype == torch.float32 else 0.0

    def certificate_of(ritz: Any) -> Certificate:
        return ritz_certificate(
            ritz,
            tolerance=tolerance,
            space_tolerance=goal.space_tolerance if goal else DEFAULT_SPACE_TOLERANCE,
            product_dtype=dtype,
            product_error=product_error,
            rounding=rounding,
        )

    def met(ritz: Any) -> bool:
        assert goal is not None
        return bool(certificate_of(ritz).space_bounds[goal.k - 1] <= goal.space_tolerance)

    run = krylov_decomposition(
        apply,
        spec,
        width,
        passes=passes,
        target=goal,
        certified=met if goal else None,
        dtype=dtype,
        device=device,
        product_error=product_error,
    )
    return Decomposition(
        run.ritz.eigenvalues.to(dtype),
        run.vectors.to(dtype),
        certificate_of(run.ritz),
        {"measurement": run.hvps, "certificate": 0},
        run.waves if goal else passes,  # type: ignore[arg-type]
        run.stopped if goal else None,
        [d.to_dict() for d in run.history] if goal else None,
    )


def seigh(
    op: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    k: int,
    s: int | None = None,
    *,
    passes: int = 1,
    seed: int = 0,
    test_matrix: str = "ssrft",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    block_size: int = 64,
    width: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenpairs (by ``|λ|``) of a symmetric operator from products with it.

    ``passes=1`` is the paper's one-pass SEIGH with ``s`` products; ``passes=p > 1`` buys
    accuracy with ``p − 1`` further waves of ``s`` products (block Krylov with Rayleigh–Ritz).
    :func:`decompose` returns the same eigenpairs with a certificate of their accuracy.

    Args:
        op: a symmetric ``(dim, dim)`` tensor, or a callable mapping ``(dim, b)`` blocks to
            ``(dim, b)`` blocks (e.g. a :class:`hessketch.HessianOperator`).
        dim: the operator's size ``D``.
        k: number of eigenpairs (outer measurements).
        s: products per wave (inner measurements), ``k <= s <= dim``; default ``min(2k, dim)``.
        passes: waves of products.
        seed: seed of the test matrices; the result is a pure function of it.
        test_matrix: kind of test matrix (:data:`hessketch.testmatrices.TEST_MATRIX_KINDS`).
        dtype: dtype of the measurements; default the tensor's dtype, float32 for callables.
        device: device of the measurements; default the tensor's device, CPU for callables.
        block_size: test vectors per product with ``op``.
        width: products per Krylov wave (``passes > 1``); default ``s``.

    Returns:
        ``(eigenvalues (k,), eigenvectors (dim, k))`` sorted by descending ``|λ|``, in ``dtype``,
        on the CPU.
    """
    result = decompose(
        op,
        dim,
        k,
        s,
        passes=passes,
        seed=seed,
        test_matrix=test_matrix,
        dtype=dtype,
        device=device,
        block_size=block_size,
        width=width,
        probes=0,
        certify=False,
    )
    return result.eigenvalues, result.eigenvectors
