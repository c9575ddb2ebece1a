"""Random test matrices for randomized sketching.

A test matrix Φ is an s×D matrix whose rows are test vectors. Every test vector is a pure
function of (kind, seed, dim, index): all randomness is drawn on the CPU from seeded
``torch.Generator`` objects (float64 where continuous) and only then cast and moved, so the
same seed gives the same vectors on any device and in any block of rows (for SSRFT, whose
vectors come out of FFTs, the same up to float64 round-off).
"""

from __future__ import annotations

import abc
import hashlib
import math

import torch

TEST_MATRIX_KINDS: tuple[str, ...] = ("ssrft", "gaussian", "rademacher")

_MASK63 = (1 << 63) - 1


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True as a seed or index is almost surely a bug.
    return isinstance(value, int) and not isinstance(value, bool)


def derive_seed(seed: int, *labels: str | int) -> int:
    """Derive an independent 63-bit seed from a base seed and a sequence of labels.

    Args:
        seed: Base seed (any Python int).
        *labels: Strings or ints naming the stream, e.g. ``("gaussian", dim, i)``.

    Returns:
        A non-negative int below 2**63, taken from the SHA-256 of the inputs.

    Raises:
        ValueError: If the seed or a label is not an int (or a label not a str).
    """
    if not _is_int(seed):
        raise ValueError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    h = hashlib.sha256()
    for part in (seed, *labels):
        if isinstance(part, str):
            tag = b"s"
        elif _is_int(part):
            tag = b"i"
        else:
            raise ValueError(f"labels must be str or int, got {type(part).__name__} {part!r}")
        data = str(part).encode()
        # Type tag and length prefix keep ("a", "bc") apart from ("ab", "c") and 1 from "1".
        h.update(tag + str(len(data)).encode() + b":" + data)
    return int.from_bytes(h.digest()[:8], "big") & _MASK63


def _check_real(x: torch.Tensor, dim: int, name: str) -> int:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} expects a float32 or float64 tensor, got {x.dtype}")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{name}: dim {dim} out of range for a {x.ndim}-D tensor")
    n = x.shape[dim]
    if n < 1:
        raise ValueError(f"{name} expects length >= 1 along dim {dim}, got {n}")
    return n


def _dct_tables(n: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return Makhoul's reordering, the half-spectrum twiddles and the ortho scales."""
    dev = x.device
    # v = (x0, x2, x4, ..., x5, x3, x1): evens ascending, then odds descending.
    order = torch.cat(
        [torch.arange(0, n, 2, device=dev), torch.arange(1, n, 2, device=dev).flip(0)]
    )
    h = n // 2 + 1
    angle = torch.arange(h, dtype=torch.float64, device=dev) * (-math.pi / (2 * n))
    cplx = torch.complex64 if x.dtype == torch.float32 else torch.complex128
    twiddle = torch.polar(torch.ones_like(angle), angle).to(cplx)
    scale = torch.full((n,), math.sqrt(2.0 / n), dtype=x.dtype, device=dev)
    scale[0] = math.sqrt(1.0 / n)
    return order, twiddle, scale


def dct_ortho(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Orthonormal DCT-II along one dimension, via a single real FFT of the same length.

    Matches ``scipy.fft.dct(x, type=2, norm="ortho", axis=dim)``; runs on any device.

    Args:
        x: Real float32 or float64 tensor.
        dim: Dimension to transform.

    Returns:
        Tensor of the same shape, dtype and device as ``x``.

    Raises:
        ValueError: If ``x`` is not a real float32/float64 tensor or ``dim`` is invalid.
    """
    n = _check_real(x, dim, "dct_ortho")
    if x.numel() == 0:  # MKL rejects empty FFT batches.
        return x.clone()
    order, twiddle, scale = _dct_tables(n, x)
    v = x.movedim(dim, -1)[..., order]
    w = torch.fft.rfft(v, dim=-1) * twiddle
    h = n // 2 + 1
    # Hermitian symmetry: Re W[n-j] = -Im W[j], so the half spectrum gives every output.
    out = torch.cat([w.real, -w.imag[..., 1 : n - h + 1].flip(-1)], dim=-1) * scale
    return out.movedim(-1, dim)


def idct_ortho(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Orthonormal DCT-III along one dimension: the inverse (and transpose) of dct_ortho.

    Matches ``scipy.fft.idct(x, type=2, norm="ortho", axis=dim)``; runs on any device.

    Args:
        x: Real float32 or float64 tensor.
        dim: Dimension to transform.

    Returns:
        Tensor of the same shape, dtype and device as ``x``.

    Raises:
        ValueError: If ``x`` is not a real float32/float64 tensor or ``dim`` is invalid.
    """
    n = _check_real(x, dim, "idct_ortho")
    if x.numel() == 0:  # MKL rejects empty FFT batches.
        return x.clone()
    order, twiddle, scale = _dct_tables(n, x)
    y = x.movedim(dim, -1) / scale
    h = n // 2 + 1
    # W[k] = Y[k] - i Y[n-k] with Y[n] = 0, then undo the twiddle and the FFT.
    y_rev = torch.cat([torch.zeros_like(y[..., :1]), y[..., n - h + 1 :].flip(-1)], dim=-1)
    w = torch.complex(y[..., :h], -y_rev) * twiddle.conj()
    v = torch.fft.irfft(w, n=n, dim=-1)
    out = torch.empty_like(v)
    out[..., order] = v
    return out.movedim(-1, dim)


class TestMatrix(abc.ABC):
    """A random s×D test matrix Φ whose rows are test vectors, generated on demand.

    Attributes:
        kind: One of ``TEST_MATRIX_KINDS``.
        dim: D, the length of each test vector.
        seed: Base seed; vectors are a pure function of (kind, seed, dim, index).
        max_rows: Largest number of rows available.
    """

    __test__ = False  # The name starts with "Test"; stop pytest from collecting it.

    kind: str
    dim: int
    seed: int
    max_rows: int

    def __init__(self, kind: str, dim: int, seed: int, max_rows: int) -> None:
        if not _is_int(dim) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        if not _is_int(seed):
            raise ValueError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
        self.kind, self.dim, self.seed, self.max_rows = kind, dim, seed, max_rows

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, seed={self.seed})"

    def _limit(self) -> str:
        return f"{type(self).__name__} has at most {self.max_rows} rows" + (
            " (dim)" if self.max_rows == self.dim else ""
        )

    def _check_rows(self, start: int, stop: int, dtype: torch.dtype) -> None:
        if not (_is_int(start) and _is_int(stop)) or not 0 <= start <= stop:
            raise ValueError(f"expected ints 0 <= start <= stop, got start={start!r}, {stop=!r}")
        if stop > self.max_rows:
            raise ValueError(f"{self._limit()}; asked for rows [{start}, {stop})")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a real floating torch.dtype, got {dtype!r}")

    def _check_apply(self, x: torch.Tensor, n_rows: int) -> None:
        if not _is_int(n_rows) or n_rows < 0:
            raise ValueError(f"n_rows must be an int >= 0, got {n_rows!r}")
        if n_rows > self.max_rows:
            raise ValueError(f"{self._limit()}; asked for rows [0, {n_rows})")
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] != self.dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape ({self.dim}, m), got {got}")
        if x.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"x must be float32 or float64, got {x.dtype}")

    @abc.abstractmethod
    def rows(
        self,
        start: int,
        stop: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Return test vectors start..stop-1 as the columns of a (dim, stop-start) tensor.

        Args:
            start: Index of the first test vector.
            stop: One past the index of the last test vector.
            dtype: Real floating dtype of the result.
            device: Device of the result (default: CPU).

        Returns:
            ``Φ[start:stop].T`` of shape (dim, stop - start).

        Raises:
            ValueError: If not ``0 <= start <= stop <= max_rows`` or dtype is not floating.
        """

    @abc.abstractmethod
    def apply(self, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        """Return ``Φ[:n_rows] @ x`` in x's dtype and on x's device.

        Args:
            x: float32 or float64 tensor of shape (dim, m).
            n_rows: Number of leading rows of Φ to apply.

        Returns:
            Tensor of shape (n_rows, m).

        Raises:
            ValueError: If x has the wrong shape or dtype or n_rows exceeds max_rows.
        """


class SSRFT(TestMatrix):
    """Subsampled randomized trigonometric transform Φ = R·C·D2·P2·C·D1·P1.

    P1, P2 are random permutations, D1, D2 random ±1 diagonals, C the orthonormal DCT-II,
    and R keeps coordinates sel[0], sel[1], ... of a random permutation sel, so rows are
    orthonormal, max_rows = dim, and row prefixes agree whatever n_rows is asked for.

    Args:
        dim: D, the length of each test vector.
        seed: Base seed.
    """

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__("ssrft", dim, seed, max_rows=dim)
        gen = torch.Generator().manual_seed(derive_seed(seed, "ssrft", dim))
        self._perm1 = torch.randperm(dim, generator=gen)
        self._sign1 = torch.randint(0, 2, (dim,), generator=gen).mul_(2).sub_(1)
        self._perm2 = torch.randperm(dim, generator=gen)
        self._sign2 = torch.randint(0, 2, (dim,), generator=gen).mul_(2).sub_(1)
        self._sel = torch.randperm(dim, generator=gen)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def _tables(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        # Moving the small index/sign tables once per device avoids a copy on every call.
        key = (device, dtype)
        if key not in self._cache:
            p1, p2, sel = (t.to(device) for t in (self._perm1, self._perm2, self._sel))
            s1, s2 = (t.to(device=device, dtype=dtype) for t in (self._sign1, self._sign2))
            self._cache[key] = (p1, s1, p2, s2, sel, torch.argsort(p1), torch.argsort(p2))
        return self._cache[key]

    def apply(self, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        """See TestMatrix.apply; costs O(m·D log D) whatever n_rows is."""
        self._check_apply(x, n_rows)
        p1, s1, p2, s2, sel, _, _ = self._tables(x.device, x.dtype)
        # Work on x.T so every transform runs along the contiguous last dimension.
        y = dct_ortho(x.T[:, p1] * s1, dim=-1)
        y = dct_ortho(y[:, p2] * s2, dim=-1)
        return y[:, sel[:n_rows]].T.contiguous()

    def rows(
        self,
        start: int,
        stop: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """See TestMatrix.rows; computed in float64 on ``device``, then cast to ``dtype``."""
        self._check_rows(start, stop, dtype)
        dev = torch.device("cpu" if device is None else device)
        # Always float64, then cast, so float32 rows are the rounded float64 rows.
        _, s1, _, s2, sel, inv1, inv2 = self._tables(dev, torch.float64)
        b = stop - start
        e = torch.zeros(b, self.dim, dtype=torch.float64, device=dev)
        e[torch.arange(b, device=dev), sel[start:stop]] = 1.0
        # Row i of Φ is Tᵀ e_sel[i], with Tᵀ = P1ᵀ D1 Cᵀ P2ᵀ D2 Cᵀ.
        y = idct_ortho(e, dim=-1) * s2
        y = idct_ortho(y[:, inv2], dim=-1) * s1
        return y[:, inv1].T.to(dtype).contiguous()


class _IidRows(TestMatrix):
    """Test matrix with i.i.d. rows, each drawn from its own per-index CPU generator."""

    _block = 256  # Rows per block in apply, so memory stays O(256·D).

    def __init__(self, kind: str, dim: int, seed: int) -> None:
        super().__init__(kind, dim, seed, max_rows=2**62)

    @abc.abstractmethod
    def _row(self, gen: torch.Generator) -> torch.Tensor:
        """Draw one float64 CPU test vector of length dim from ``gen``."""

    def rows(
        self,
        start: int,
        stop: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """See TestMatrix.rows."""
        self._check_rows(start, stop, dtype)
        out = torch.empty(self.dim, stop - start, dtype=torch.float64)
        for j, i in enumerate(range(start, stop)):
            gen = torch.Generator().manual_seed(derive_seed(self.seed, self.kind, self.dim, i))
            out[:, j] = self._row(gen)
        return out.to(dtype=dtype, device=device)

    def apply(self, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        """See TestMatrix.apply."""
        self._check_apply(x, n_rows)
        out = torch.empty(n_rows, x.shape[1], dtype=x.dtype, device=x.device)
        for a in range(0, n_rows, self._block):
            b = min(a + self._block, n_rows)
            out[a:b] = self.rows(a, b, dtype=x.dtype, device=x.device).T @ x
        return out


class Gaussian(_IidRows):
    """Gaussian test matrix: row i ~ N(0, I/dim), so E‖row‖² = 1.

    Args:
        dim: D, the length of each test vector.
        seed: Base seed.
    """

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__("gaussian", dim, seed)

    def _row(self, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(self.dim, generator=gen, dtype=torch.float64) / math.sqrt(self.dim)


class Rademacher(_IidRows):
    """Rademacher test matrix: independent entries ±1/sqrt(dim), so ‖row‖² = 1 exactly.

    Args:
        dim: D, the length of each test vector.
        seed: Base seed.
    """

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__("rademacher", dim, seed)

    def _row(self, gen: torch.Generator) -> torch.Tensor:
        signs = torch.randint(0, 2, (self.dim,), generator=gen, dtype=torch.float64)
        return (signs * 2.0 - 1.0) * (1.0 / math.sqrt(self.dim))


def make_test_matrix(kind: str, dim: int, seed: int) -> TestMatrix:
    """Build a test matrix by name.

    Args:
        kind: One of ``TEST_MATRIX_KINDS``: "ssrft", "gaussian" or "rademacher".
        dim: D, the length of each test vector.
        seed: Base seed.

    Returns:
        The test matrix.

    Raises:
        ValueError: If ``kind`` is unknown, or dim/seed are invalid.
    """
    classes: dict[str, type[SSRFT | Gaussian | Rademacher]] = {
        "ssrft": SSRFT,
        "gaussian": Gaussian,
        "rademacher": Rademacher,
    }
    if not isinstance(kind, str) or kind not in classes:
        raise ValueError(f"unknown test matrix kind {kind!r}; expected one of {TEST_MATRIX_KINDS}")
    return classes[kind](dim, seed)
