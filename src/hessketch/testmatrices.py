"""Random test matrices for randomized sketching.

A test matrix Φ is an s×D matrix whose rows are test vectors. It is generated on demand and
never stored: entry (i, j) of every kind is a pure function of (kind, seed, dim, i, j) (and of
the number of rows, for sparse-sign), so any job regenerates exactly the rows, and any range of
coordinates of them, that it owns, in any blocking and on any device.

- ``"gaussian"``, ``"rademacher"``: every entry comes from a counter-based hash (splitmix64
  written with torch int64 ops: wrapping multiplies, masked shifts), so there is no generator
  state and any sub-block or coordinate range reproduces the whole block bit for bit, on any
  device for Rademacher. Gaussians use Box–Muller in float64, whose ``log``/``cos``/``sin``
  come from the device's math library: CPU and CUDA may differ in the last ulp.
- ``"sparse-sign"``: each column has ζ = min(8, s) entries ±1/√ζ in distinct random rows
  (Tropp, Yurtsever, Udell & Cevher 2019, §3.3), built once with the same hash; integer-exact on
  any device.
- ``"ssrft"`` (default): orthonormal rows of Φ = R·C2·S2·P2·C1·S1, see :class:`SSRFT`.

Intermediates of one call stay below :data:`WORKSPACE_BYTES` whatever D is (besides the result
itself): blocks are processed in sub-blocks chosen by :func:`_sub_block_width`. New kinds are one
class decorated with :func:`register_test_matrix`.
"""

from __future__ import annotations

import abc
import hashlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

# Intermediates of one rows()/apply() call stay below this many bytes (besides its result).
WORKSPACE_BYTES = 256 * 2**20
# Elementwise generation and chunk transforms run on tiles this big, so they stay in cache.
_TILE_BYTES = 16 * 2**20
# Coordinates per CSR block of a sparse-sign apply: x's rows of one block stay in cache.
_SPARSE_TILE = 4096
# Coordinates per unit of SSRFT's first transform (whole chunks): its temporaries stay in cache.
_SSRFT_UNIT = 16384

_MASK63 = (1 << 63) - 1
_MASK32 = (1 << 32) - 1


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True as a seed or index is almost surely a bug.
    return isinstance(value, int) and not isinstance(value, bool)


def _sub_block_width(unit_bytes: int, budget: int) -> int:
    """How many units of ``unit_bytes`` fit in ``budget`` bytes (at least one).

    Every sub-block loop in this module takes its width from here, so the intermediates of a
    sub-block are at most ``budget`` bytes unless a single unit is already larger.
    """
    if unit_bytes < 1 or budget < 1:
        raise ValueError(f"need unit_bytes >= 1 and budget >= 1, got {unit_bytes}, {budget}")
    return max(1, budget // unit_bytes)


def _spans(start: int, stop: int, width: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``[a, b)`` of at most ``width`` covering ``[start, stop)``."""
    for a in range(start, stop, width):
        yield a, min(a + width, stop)


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


# --- Counter-based hashing (splitmix64 in torch int64 ops) --------------------------------


def _signed64(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


_GAMMA = _signed64(0x9E3779B97F4A7C15)
_MIX1 = _signed64(0xBF58476D1CE4E5B9)
_MIX2 = _signed64(0x94D049BB133111EB)


def _mix64_(z: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finalizer, in place on an int64 tensor.

    int64 multiplication wraps (two's complement) on CPU and CUDA alike; right shifts are made
    logical by masking the sign extension away.
    """
    t = torch.empty_like(z)
    for shift, mult in ((30, _MIX1), (27, _MIX2), (31, 0)):
        torch.bitwise_right_shift(z, shift, out=t)
        z.bitwise_xor_(t.bitwise_and_((1 << (64 - shift)) - 1))
        if mult:
            z.mul_(mult)
    return z


def _stream_keys(base: int, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """Keys of streams ``start..stop-1`` of ``base``: splitmix64 of base + (w + 1)·γ."""
    z = torch.arange(start + 1, stop + 1, dtype=torch.int64, device=device)
    return _mix64_(z.mul_(_GAMMA).add_(base))


def _hash_grid(keys: torch.Tensor, j0: int, j1: int) -> torch.Tensor:
    """``h[j - j0, w]`` = splitmix64(keys[w] + j·γ) for j in [j0, j1): a (j1 - j0, len(keys))."""
    j = torch.arange(j0, j1, dtype=torch.int64, device=keys.device).mul_(_GAMMA)
    return _mix64_(j[:, None] + keys[None, :])


# --- DCT -----------------------------------------------------------------------------------


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


def _dct_rows(freq: torch.Tensor, length: torch.Tensor, width: int) -> torch.Tensor:
    """Rows ``freq[i]`` of orthonormal DCT-II matrices of sizes ``length[i]``, zero-padded.

    Returns a float64 (len(freq), width) tensor, entry t = sqrt((2 - [f = 0]) / n) ·
    cos(π (2t + 1) f / (2n)) for t < n and 0 beyond; the angle is reduced exactly in integers.
    """
    t = torch.arange(width, dtype=torch.int64, device=freq.device)
    f, n = freq[:, None], length[:, None]
    k = torch.remainder((2 * t + 1) * f, 4 * n).to(torch.float64)
    rows = torch.cos(k * (math.pi / 2) / n) * torch.sqrt((2.0 - (f == 0).double()) / n)
    return rows.masked_fill_(t >= n, 0.0)


# --- Base class and registry ---------------------------------------------------------------


class TestMatrix(abc.ABC):
    """A random s×D test matrix Φ whose rows are test vectors, generated on demand.

    Subclasses implement ``_rows`` and ``_apply``; arguments are checked here.

    Attributes:
        kind: The name the class is registered under (one of ``TEST_MATRIX_KINDS``).
        dim: D, the length of each test vector.
        seed: Base seed; entries are a pure function of (kind, seed, dim, row, coordinate).
        max_rows: Largest number of rows available.
    """

    __test__ = False  # The name starts with "Test"; stop pytest from collecting it.

    kind: str
    dim: int
    seed: int
    max_rows: int

    def __init__(self, dim: int, seed: int, max_rows: int) -> None:
        if not _is_int(dim) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        if not _is_int(seed):
            raise ValueError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
        self.dim, self.seed, self.max_rows = dim, seed, max_rows
        self._cache: dict[tuple[Any, ...], Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, seed={self.seed})"

    def _cached(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """``make()``, kept for the next call with the same key (tables moved to a device, …)."""
        if key not in self._cache:
            if len(self._cache) >= 16:  # a few (device, dtype, n_rows) combinations in use
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = make()
        return self._cache[key]

    def _limit(self) -> str:
        return f"{type(self).__name__} has at most {self.max_rows} rows" + (
            " (dim)" if self.max_rows == self.dim else ""
        )

    def _coord_range(self, coords: slice | None) -> tuple[int, int]:
        if coords is None:
            return 0, self.dim
        if not isinstance(coords, slice) or coords.step not in (None, 1):
            raise ValueError(f"coords must be a slice with step 1 (or None), got {coords!r}")
        if not all(v is None or _is_int(v) for v in (coords.start, coords.stop)):
            raise ValueError(f"coords must have int (or None) start and stop, got {coords!r}")
        lo, hi, _ = coords.indices(self.dim)
        return lo, max(lo, hi)

    def rows(
        self,
        start: int,
        stop: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        coords: slice | None = None,
    ) -> torch.Tensor:
        """Return test vectors start..stop-1 (coordinates ``coords``) as columns.

        Args:
            start: Index of the first test vector.
            stop: One past the index of the last test vector.
            dtype: Real floating dtype of the result.
            device: Device of the result (default: CPU).
            coords: Range of coordinates to return (a step-1 slice); default all ``dim``.

        Returns:
            ``Φ[start:stop, coords].T``, of shape (len(coords), stop - start).

        Raises:
            ValueError: If not ``0 <= start <= stop <= max_rows``, dtype is not floating, or
                coords is not a step-1 slice.
        """
        if not (_is_int(start) and _is_int(stop)) or not 0 <= start <= stop:
            raise ValueError(f"expected ints 0 <= start <= stop, got start={start!r}, {stop=!r}")
        if stop > self.max_rows:
            raise ValueError(f"{self._limit()}; asked for rows [{start}, {stop})")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a real floating torch.dtype, got {dtype!r}")
        lo, hi = self._coord_range(coords)
        dev = torch.device("cpu" if device is None else device)
        work = torch.float64 if dtype == torch.float64 else torch.float32
        if stop == start or hi == lo:
            return torch.zeros(hi - lo, stop - start, dtype=dtype, device=dev)
        return self._rows(start, stop, lo, hi, work, dev).to(dtype)

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
        if not _is_int(n_rows) or n_rows < 0:
            raise ValueError(f"n_rows must be an int >= 0, got {n_rows!r}")
        if n_rows > self.max_rows:
            raise ValueError(f"{self._limit()}; asked for rows [0, {n_rows})")
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] != self.dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape ({self.dim}, m), got {got}")
        if x.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"x must be float32 or float64, got {x.dtype}")
        if n_rows == 0 or x.shape[1] == 0:
            return torch.zeros(n_rows, x.shape[1], dtype=x.dtype, device=x.device)
        return self._apply(x, n_rows)

    @abc.abstractmethod
    def _rows(
        self, start: int, stop: int, lo: int, hi: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """``Φ[start:stop, lo:hi].T`` in float32/float64 ``dtype``; arguments are valid."""

    @abc.abstractmethod
    def _apply(self, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        """``Φ[:n_rows] @ x``; arguments are valid and non-empty."""


_Kind = TypeVar("_Kind", bound=type[TestMatrix])
_REGISTRY: dict[str, type[TestMatrix]] = {}


def register_test_matrix(name: str) -> Callable[[_Kind], _Kind]:
    """Class decorator that registers a TestMatrix subclass under ``name``.

    The class must accept ``(dim, seed, rows=None)``; ``rows`` is the number of rows s of the
    sketch, which kinds such as sparse-sign need and others ignore.

    Args:
        name: The kind's name, as used in configs and ``make_test_matrix``.

    Returns:
        The decorator; it sets ``cls.kind = name`` and returns the class unchanged otherwise.

    Raises:
        ValueError: If ``name`` is not a non-empty str or is already registered.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a test matrix kind needs a non-empty str name, got {name!r}")

    def decorate(cls: _Kind) -> _Kind:
        if not (isinstance(cls, type) and issubclass(cls, TestMatrix)):
            raise ValueError(f"can only register TestMatrix subclasses, got {cls!r}")
        if name in _REGISTRY:
            raise ValueError(
                f"test matrix kind {name!r} is already registered to {_REGISTRY[name]}"
            )
        cls.kind = name
        _REGISTRY[name] = cls
        return cls

    return decorate


class _RegisteredKinds(Sequence[str]):
    """Read-only live view of the registered kinds, in registration order; compares as a tuple."""

    def __getitem__(self, index: Any) -> Any:
        return tuple(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __eq__(self, other: object) -> bool:
        return tuple(_REGISTRY) == (tuple(other) if isinstance(other, Sequence) else other)

    __hash__ = None  # type: ignore[assignment]  # equal to a changing tuple: not hashable

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


TEST_MATRIX_KINDS: Sequence[str] = _RegisteredKinds()


def _check_rows_arg(rows: int | None) -> None:
    if rows is not None and (not _is_int(rows) or rows < 1):
        raise ValueError(f"rows (the number of rows s) must be None or an int >= 1, got {rows!r}")


# --- SSRFT ---------------------------------------------------------------------------------


def _ssrft_geometry(dim: int) -> tuple[int, int, int, int]:
    """SSRFT chunking for ``dim``: (a, b, split, n2).

    C1 chunks are a×b = L1 coordinates, L1 = min(1024, the power of two >= √dim) (32×32 GEMMs
    measured cheapest; C2 is evaluated sparsely, so its chunks may be long), covering
    [0, split); the tail [split, dim) has L1..2·L1 coordinates (or is all of a small dim). C2 has
    n2 chunks of near-equal length L2 ≈ 2·dim/L1, so every output mixes ≈ L1·L2 ≈ 2·dim inputs.
    """
    p = min(10, max(0, math.ceil(math.log2(math.sqrt(dim)))))
    a, b = 2 ** ((p + 1) // 2), 2 ** (p // 2)
    split = max(0, dim // (a * b) - 1) * (a * b)
    return a, b, split, max(1, dim // math.ceil(2 * dim / (a * b)))


@register_test_matrix("ssrft")
class SSRFT(TestMatrix):
    """Subsampled randomized trigonometric transform Φ = R·C2·S2·P2·C1·S1 with orthonormal rows.

    S1, S2 are random ±1 diagonals and P2 a random permutation. C1 is block-diagonal: chunks of
    L1 = a·b coordinates (L1 = min(1024, power of two >= √D)) each get the 2-D orthonormal
    DCT-II of their a×b layout, computed as two small GEMMs (fast for every D, on CPU and GPU),
    and the last L1..2·L1 coordinates get one orthonormal DCT-II (``dct_ortho``). C2 is
    block-diagonal with chunks of near-equal length L2 ≈ 2D/L1, each an orthonormal DCT-II; R
    keeps coordinates sel[0], sel[1], ... of a random permutation sel. Every factor is
    orthogonal, so rows are exactly orthonormal, max_rows = D, and row prefixes agree whatever
    n_rows is asked for. Each output mixes L1·L2 ≈ 2D inputs through the random P2 (the
    permutation that would precede C1 in a one-chunk SSRFT adds nothing once S1 and the chunk
    transform are there).

    Only rows of C2 are ever evaluated, in closed form, as one CSR block per unit of C1. So
    ``apply`` runs C1 over x unit by unit (~16K coordinates, in cache) and multiplies each unit
    into the result (n_rows·L2 nonzeros in all); ``rows`` scatters L2 entries per vector and
    runs one GEMM of C1ᵀ per unit that the requested coordinates touch. Intermediates never
    hold D×(anything): only units. Work runs in the requested float precision, so float32
    rows are not the rounded float64 rows; they agree to ~1e-6 relative.

    Args:
        dim: D, the length of each test vector.
        seed: Base seed.
        rows: Ignored (SSRFT rows do not depend on how many are used).
    """

    def __init__(self, dim: int, seed: int, rows: int | None = None) -> None:
        super().__init__(dim, seed, max_rows=dim)
        _check_rows_arg(rows)
        gen = torch.Generator().manual_seed(derive_seed(seed, "ssrft", dim))
        small = torch.int32 if dim < 2**31 else torch.int64  # tables: 10 bytes per coordinate
        self._sign1 = torch.randint(0, 2, (dim,), generator=gen).mul_(2).sub_(1).to(torch.int8)
        self._perm2 = torch.randperm(dim, generator=gen).to(small)
        self._sign2 = torch.randint(0, 2, (dim,), generator=gen).mul_(2).sub_(1).to(torch.int8)
        self._sel = torch.randperm(dim, generator=gen).to(small)
        self._a, self._b, self._split, self._n2 = _ssrft_geometry(dim)
        self._chunk = self._a * self._b
        self._width2 = -(-dim // self._n2)  # longest C2 chunk

    def _mats(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        def make() -> tuple[torch.Tensor, ...]:
            ma = dct_ortho(torch.eye(self._a, dtype=torch.float64), dim=0)
            mb = dct_ortho(torch.eye(self._b, dtype=torch.float64), dim=0)
            mats = (ma, mb, ma.T.contiguous(), mb.T.contiguous())
            sign1 = self._sign1.to(dtype)[:, None]
            return (*(m.to(device=device, dtype=dtype) for m in mats), sign1.to(device))

        return self._cached(("mats", device, dtype), make)

    def _round2(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For rows start..stop-1: where their C2 row reads in C1's output, and with what weight.

        Returns (idx, weight), both (stop - start, width) on the CPU: row i of Φ is
        ``Σ_t weight[i, t] · (C1 S1)[idx[i, t], :]``; padding has idx -1 and weight 0.
        """
        dim, n2 = self.dim, self._n2
        ell, extra = divmod(dim, n2)  # `extra` chunks of ell + 1, then ell
        out = self._sel[start:stop].long()
        big = extra * (ell + 1)
        k = torch.where(out < big, out // (ell + 1), extra + (out - big) // ell)
        base = k * ell + torch.clamp(k, max=extra)
        length = torch.where(k < extra, ell + 1, ell)
        width = self._width2
        weight = _dct_rows(out - base, length, width)
        pad = torch.arange(width) >= length[:, None]  # beyond a shorter chunk's end
        pos = (base[:, None] + torch.arange(width)).clamp_(max=dim - 1)
        weight.mul_(self._sign2[pos])  # padding stays 0
        return self._perm2[pos].long().masked_fill_(pad, -1), weight

    def _units(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The units of C1 that meet [lo, hi): fixed runs of whole chunks, then the tail."""
        step = max(1, _SSRFT_UNIT // self._chunk) * self._chunk
        first = min(lo, self._split) // step * step
        units = [
            (c0, min(c0 + step, self._split)) for c0 in range(first, min(hi, self._split), step)
        ]
        return units + ([(self._split, self.dim)] if hi > self._split else [])

    def _vectors_per_block(self, itemsize: int) -> int:
        """Columns (or vectors) per pass so that a unit's temporaries fit in _TILE_BYTES."""
        longest = max(
            min(self._split, max(1, _SSRFT_UNIT // self._chunk) * self._chunk),
            self.dim - self._split,
        )
        return _sub_block_width(longest * itemsize, _TILE_BYTES)

    def _scatter_c1t(
        self, c0: int, c1: int, entries: tuple[torch.Tensor, ...], nv: int, work: torch.Tensor
    ) -> torch.Tensor:
        """C1ᵀ z on the unit [c0, c1) for vectors z that are zero but at ``entries``.

        ``entries`` = (coordinate, vector, value) with coordinates in [c0, c1). Returns the
        (c1 - c0, nv) block. For GEMM chunks, Z B is formed by adding value·B[β] into row α of
        chunk k (z is only ~L2/D dense, so this replaces a GEMM pass), then one GEMM with Aᵀ.
        """
        coord, vec, value = entries
        if c0 >= self._split:
            z = torch.zeros(c1 - c0, nv, dtype=work.dtype, device=work.device)
            z.view(-1)[(coord - c0) * nv + vec] = value
            return idct_ortho(z, dim=0)
        _, mb, ma_t, _, _ = self._mats(work.device, work.dtype)
        a, b, n = self._a, self._b, (c1 - c0) // self._chunk
        local = coord - c0
        # Z B laid out (k·a + α, b', v) like the result, so the GEMM writes rows in place.
        zb = work[: n * a * b * nv].view(n * a, b, nv).zero_()
        zb.transpose(1, 2).index_put_(
            (local // b, vec), mb[local % b] * value[:, None], accumulate=True
        )
        y = torch.matmul(
            ma_t,
            zb.view(n, a, b * nv),
            out=work[n * a * b * nv : 2 * n * a * b * nv].view(n, a, b * nv),
        )
        return y.view(c1 - c0, nv)

    def _rows(
        self, start: int, stop: int, lo: int, hi: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """See TestMatrix.rows."""
        sign1 = self._mats(device, dtype)[4]
        out = torch.empty(hi - lo, stop - start, dtype=dtype, device=device)
        width, units = self._width2, self._units(lo, hi)
        per_block = min(
            self._vectors_per_block(out.itemsize),
            _sub_block_width(48 * width, WORKSPACE_BYTES // 4),  # index/weight/order tables
        )
        for r0, r1 in _spans(start, stop, per_block):
            nv = r1 - r0
            idx, weight = self._round2(r0, r1)
            # Row i of Φ is S1 C1ᵀ z_i, where z_i holds weight[i] at coordinates idx[i].
            coord, order = torch.sort(idx.flatten())  # grouped by unit; padding (-1) first
            vec = (order // width).to(device)
            value = weight.flatten()[order].to(device=device, dtype=dtype)
            starts = torch.tensor([c for unit in units for c in unit])
            bounds = torch.searchsorted(coord, starts).tolist()
            coord = coord.to(device)
            size = 2 * max(c1 - c0 for c0, c1 in units) * nv  # Z B and the GEMM result
            work = torch.empty(size, dtype=dtype, device=device)
            for k, (c0, c1) in enumerate(units):
                hit = slice(bounds[2 * k], bounds[2 * k + 1])
                block = self._scatter_c1t(c0, c1, (coord[hit], vec[hit], value[hit]), nv, work)
                v0, v1 = max(c0, lo), min(c1, hi)
                torch.mul(
                    block[v0 - c0 : v1 - c0],
                    sign1[v0:v1],
                    out=out[v0 - lo : v1 - lo, r0 - start : r1 - start],
                )
        return out

    def _c2_blocks(
        self, device: torch.device, dtype: torch.dtype, n_rows: int
    ) -> list[torch.Tensor]:
        """R C2 S2 P2 restricted to rows [0, n_rows) and to each unit of C1, as CSR tensors."""

        def make() -> list[torch.Tensor]:
            idx, weight = self._round2(0, n_rows)
            width = idx.shape[1]
            row = torch.arange(n_rows).repeat_interleave(width)
            coord, value = idx.flatten(), weight.flatten()
            keep = coord >= 0
            row, coord, value = row[keep], coord[keep], value[keep]
            units = self._units(0, self.dim)
            starts = torch.tensor([c0 for c0, _ in units])
            unit = torch.searchsorted(starts, coord, right=True) - 1
            order = torch.argsort(unit * n_rows + row, stable=True)
            row, coord, value, unit = row[order], coord[order], value[order], unit[order]
            bounds = torch.searchsorted(unit, torch.arange(len(units) + 1)).tolist()
            blocks = []
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                for k, (c0, c1) in enumerate(units):
                    a0, a1 = bounds[k], bounds[k + 1]
                    crow = torch.zeros(n_rows + 1, dtype=torch.int64)
                    torch.cumsum(torch.bincount(row[a0:a1], minlength=n_rows), 0, out=crow[1:])
                    parts = (crow, coord[a0:a1] - c0, value[a0:a1].to(dtype))
                    blocks.append(
                        torch.sparse_csr_tensor(
                            *(t.to(device) for t in parts),
                            size=(n_rows, c1 - c0),
                            check_invariants=False,
                        )
                    )
            return blocks

        return self._cached(("c2", device, dtype, n_rows), make)

    def _apply(self, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        """See TestMatrix.apply; C1 unit by unit, each followed by its part of R C2 S2 P2."""
        dev, dtype, m = x.device, x.dtype, x.shape[1]
        ma, mb, _, _, sign1 = self._mats(dev, dtype)
        units = self._units(0, self.dim)
        blocks = self._c2_blocks(dev, dtype, n_rows)
        a, b = self._a, self._b
        out = torch.zeros(n_rows, m, dtype=dtype, device=dev)
        for k0, k1 in _spans(0, m, self._vectors_per_block(x.itemsize)):
            nv = k1 - k0
            size = max(c1 - c0 for c0, c1 in units) * nv
            signed, y, u = (torch.empty(size, dtype=dtype, device=dev) for _ in range(3))
            for (c0, c1), block in zip(units, blocks, strict=True):
                rows = (c1 - c0) * nv
                s1x = torch.mul(x[c0:c1, k0:k1], sign1[c0:c1], out=signed[:rows].view(-1, nv))
                if c0 >= self._split:  # the tail: one DCT-II
                    c1x = dct_ortho(s1x, dim=0)
                else:  # chunk layout (a, b): C1 chunk = A X Bᵀ
                    n = (c1 - c0) // self._chunk
                    ax = torch.matmul(ma, s1x.view(n, a, b * nv), out=y[:rows].view(n, a, b * nv))
                    c1x = torch.matmul(mb, ax.view(n * a, b, nv), out=u[:rows].view(n * a, b, nv))
                out[:, k0:k1] += block @ c1x.view(c1 - c0, nv)
        return out


# --- I.i.d. kinds from the hash ------------------------------------------------------------


class _IidRows(TestMatrix):
    """Test matrix with i.i.d. entries, each a hash of (key, vector word, coordinate).

    A hash of word w (vectors ``w·group .. w·group + group - 1``) at coordinate j gives the
    entries of all ``group`` vectors there, so tiles over (coordinates × vectors) are produced
    independently and agree bit for bit with any other tiling.
    """

    group: int  # vectors per hash
    bytes_per_entry: int  # intermediate bytes per generated entry, for tile sizes

    def __init__(self, dim: int, seed: int, rows: int | None = None) -> None:
        super().__init__(dim, seed, max_rows=2**62)
        _check_rows_arg(rows)
        self._key = derive_seed(seed, self.kind, dim)

    @abc.abstractmethod
    def _words(
        self, w0: int, w1: int, j0: int, j1: int, like: torch.Tensor, out: torch.Tensor | None
    ) -> torch.Tensor:
        """Entries of vectors [group·w0, group·w1) at coordinates [j0, j1), as columns.

        Written into ``out`` (contiguous, of that shape) if given, else returned on ``like``'s
        device, in ``like``'s dtype or a wider working one (the caller casts).
        """

    def _fill(self, dest: torch.Tensor, i0: int, i1: int, j0: int, j1: int) -> None:
        """``dest[:] = Φ[i0:i1, j0:j1].T``, exactly (rounded once to dest's dtype)."""
        g = self.group
        w0, w1 = i0 // g, -(-i1 // g)
        if (i0, i1) == (w0 * g, w1 * g) and dest.is_contiguous():
            self._words(w0, w1, j0, j1, dest, dest)
        else:
            words = self._words(w0, w1, j0, j1, dest, None)
            dest.copy_(words[:, i0 - w0 * g : i1 - w0 * g])

    def _tile_rows(self, n_vectors: int) -> int:
        per_row = (-(-n_vectors // self.group) + 1) * self.group * self.bytes_per_entry
        return _sub_block_width(per_row, _TILE_BYTES)

    def _rows(
        self, start: int, stop: int, lo: int, hi: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """See TestMatrix.rows."""
        out = torch.empty(hi - lo, stop - start, dtype=dtype, device=device)
        for i0, i1 in _spans(start, stop, 256):
            for j0, j1 in _spans(lo, hi, self._tile_rows(i1 - i0)):
                self._fill(out[j0 - lo : j1 - lo, i0 - start : i1 - start], i0, i1, j0, j1)
        return out

    def _apply(self, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        """See TestMatrix.apply; generates Φ in tiles and multiplies each into the result."""
        out = torch.zeros(n_rows, x.shape[1], dtype=x.dtype, device=x.device)
        for i0, i1 in _spans(0, n_rows, 256):
            nv, tile_rows = i1 - i0, self._tile_rows(i1 - i0)
            buffer = torch.empty(tile_rows * nv, dtype=x.dtype, device=x.device)
            for j0, j1 in _spans(0, self.dim, tile_rows):
                tile = buffer[: (j1 - j0) * nv].view(j1 - j0, nv)
                self._fill(tile, i0, i1, j0, j1)
                out[i0:i1].addmm_(tile.T, x[j0:j1])
        return out


@register_test_matrix("gaussian")
class Gaussian(_IidRows):
    """Gaussian test matrix: row i ~ N(0, I/dim), so E‖row‖² = 1.

    Entries (2p, j) and (2p + 1, j) are the Box–Muller pair (float64) of one 64-bit hash: its
    high and low 32 bits give u1 ∈ (0, 1] and u2 ∈ [0, 1), and the pair is
    sqrt(-2 ln u1 / dim) · (cos 2πu2, sin 2πu2). float32 rows are the float64 rows rounded.

    Args:
        dim: D, the length of each test vector.
        seed: Base seed.
        rows: Ignored.
    """

    group = 2
    bytes_per_entry = 40

    def _words(
        self, w0: int, w1: int, j0: int, j1: int, like: torch.Tensor, out: torch.Tensor | None
    ) -> torch.Tensor:
        device = like.device
        h = _hash_grid(_stream_keys(self._key, w0, w1, device), j0, j1)
        u1 = torch.bitwise_right_shift(h, 32).bitwise_and_(_MASK32).double()
        radius = u1.add_(1.0).mul_(2.0**-32).log_().mul_(-2.0 / self.dim).sqrt_()
        angle = h.bitwise_and_(_MASK32).double().mul_(2 * math.pi * 2.0**-32)
        if out is None:
            out = torch.empty(j1 - j0, 2 * (w1 - w0), dtype=torch.float64, device=device)
        pairs = out.view(j1 - j0, w1 - w0, 2)  # cast to out's dtype on the way in
        pairs[..., 0] = torch.cos(angle).mul_(radius)
        pairs[..., 1] = angle.sin_().mul_(radius)
        return out


@register_test_matrix("rademacher")
class Rademacher(_IidRows):
    """Rademacher test matrix: independent entries ±1/sqrt(dim), so ‖row‖² = 1 exactly.

    Entry (i, j) is bit i mod 64 of the hash of word i // 64 at coordinate j, expanded eight bits
    at a time through a 256×8 table.

    Args:
        dim: D, the length of each test vector.
        seed: Base seed.
        rows: Ignored.
    """

    group = 64
    bytes_per_entry = 8

    def _words(
        self, w0: int, w1: int, j0: int, j1: int, like: torch.Tensor, out: torch.Tensor | None
    ) -> torch.Tensor:
        bits = torch.arange(256, device=like.device)[:, None] >> torch.arange(8, device=like.device)
        table = ((bits & 1) * 2 - 1).to(like.dtype) * (1.0 / math.sqrt(self.dim))
        h = _hash_grid(_stream_keys(self._key, w0, w1, like.device), j0, j1)
        # Little-endian bytes on every device: byte k of a word holds bits 8k..8k+7.
        byte = h.view(torch.uint8).flatten().long()
        if out is None:
            return table.index_select(0, byte).view(j1 - j0, 64 * (w1 - w0))
        return torch.index_select(table, 0, byte, out=out.view(-1, 8))


# --- Sparse sign ---------------------------------------------------------------------------


@register_test_matrix("sparse-sign")
class SparseSign(TestMatrix):
    """Sparse sign embedding: each column has ζ = min(8, s) entries ±1/√ζ in distinct rows.

    Rows of column j are drawn by Floyd's algorithm (a uniformly random ζ-subset of the s rows)
    from hashes of (key, step, j), signs from one more hash of j (Tropp, Yurtsever, Udell &
    Cevher 2019, §3.3; Martinsson & Tropp 2020, §9.2). So ΦᵀΦ has unit diagonal, E[ΦᵀΦ] = I,
    and ‖row‖² ≈ D/s: unlike the other kinds, rows are not unit-norm on average, which SEIGH
    does not mind (it is invariant to scaling Φ and Ψ). The matrix is a pure function of
    (seed, dim, s), built on first use as the D×ζ table of rows and signs (~3ζ bytes per
    coordinate) plus, per device and dtype, CSR blocks of _SPARSE_TILE coordinates for
    ``apply``: one small CSR product per block keeps the gathered rows of x in cache.
    ``rows`` scatters in coordinate order.

    Args:
        dim: D, the length of each test vector.
        seed: Base seed.
        rows: s, the number of rows (required).
    """

    def __init__(self, dim: int, seed: int, rows: int | None = None) -> None:
        _check_rows_arg(rows)
        if rows is None:
            raise ValueError("sparse-sign needs the number of rows s: pass rows=s")
        super().__init__(dim, seed, max_rows=rows)
        self.zeta = min(8, rows)
        self._key = derive_seed(seed, "sparse-sign", dim, rows)

    def __repr__(self) -> str:
        return f"SparseSign(dim={self.dim}, seed={self.seed}, rows={self.max_rows})"

    def _table(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (D, ζ), int16 or int32, and signs (D, ζ) int8 of every column, on ``device``."""
        cpu = torch.device("cpu")
        if device != cpu:
            return self._cached(
                ("table", device), lambda: tuple(t.to(device) for t in self._table(cpu))
            )
        return self._cached(("table", cpu), self._build_table)

    def _build_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        dim, s, zeta = self.dim, self.max_rows, self.zeta
        cpu = torch.device("cpu")
        keys = _stream_keys(self._key, 0, s + 1, cpu)  # key t: Floyd step t; key s: signs
        chosen = torch.empty(dim, zeta, dtype=torch.int16 if s <= 2**15 else torch.int32)
        signs = torch.empty(dim, zeta, dtype=torch.int8)
        bit = torch.arange(zeta)
        for j0, j1 in _spans(0, dim, _sub_block_width(64 * zeta, _TILE_BYTES)):
            for step, t in enumerate(range(s - zeta, s)):
                h = _hash_grid(keys[t : t + 1], j0, j1)[:, 0]
                r = torch.remainder(torch.bitwise_right_shift(h, 1).bitwise_and_(_MASK63), t + 1)
                if step:  # Floyd: a repeat takes t itself, which no earlier step could draw
                    r = torch.where((chosen[j0:j1, :step] == r[:, None]).any(1), t, r)
                chosen[j0:j1, step] = r.to(chosen.dtype)
            h = _hash_grid(keys[s:], j0, j1)
            signs[j0:j1] = (torch.bitwise_right_shift(h, bit) & 1).mul_(2).sub_(1).to(torch.int8)
        return chosen, signs

    def _blocks(self, device: torch.device, dtype: torch.dtype, n: int) -> list[torch.Tensor]:
        """Φ[:n, j0:j0 + _SPARSE_TILE] as CSR tensors, one per block of coordinates."""

        def make() -> list[torch.Tensor]:
            chosen, signs = self._table(torch.device("cpu"))
            c = 1.0 / math.sqrt(self.zeta)
            blocks = []
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                for j0, j1 in _spans(0, self.dim, _SPARSE_TILE):
                    # Stable sort by row keeps columns ascending within each row.
                    row, order = torch.sort(chosen[j0:j1].flatten(), stable=True)
                    keep = int(torch.searchsorted(row, torch.tensor(n, dtype=row.dtype)))
                    row, order = row[:keep].long(), order[:keep]
                    crow = torch.zeros(n + 1, dtype=torch.int64)
                    torch.cumsum(torch.bincount(row, minlength=n), 0, out=crow[1:])
                    value = signs[j0:j1].flatten()[order].double().mul_(c).to(dtype)
                    parts = (crow.int(), (order // self.zeta).int(), value)
                    blocks.append(
                        torch.sparse_csr_tensor(
                            *(t.to(device) for t in parts),
                            size=(n, j1 - j0),
                            check_invariants=False,
                        )
                    )
            return blocks

        return self._cached(("csr", device, dtype, n), make)

    def _rows(
        self, start: int, stop: int, lo: int, hi: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """See TestMatrix.rows."""
        chosen, signs = self._table(device)
        b, c = stop - start, 1.0 / math.sqrt(self.zeta)
        out = torch.zeros(hi - lo, b, dtype=dtype, device=device)
        flat = out.view(-1)
        zeta = self.zeta
        for j0, j1 in _spans(lo, hi, _sub_block_width(16 * zeta, WORKSPACE_BYTES // 4)):
            rows = chosen[j0:j1].flatten()
            (hit,) = torch.nonzero((rows >= start) & (rows < stop), as_tuple=True)
            value = signs[j0:j1].flatten()[hit].to(dtype).mul_(c)
            # Entry (j, step) of the table goes to out[j - lo, row - start], in coordinate order.
            where = hit.div(zeta, rounding_mode="floor").add_(j0 - lo).mul_(b)
            flat[where.add_(rows[hit]).sub_(start)] = value
        return out

    def _apply(self, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        """See TestMatrix.apply; one CSR × dense product per block of coordinates."""
        out = torch.zeros(n_rows, x.shape[1], dtype=x.dtype, device=x.device)
        for j0, block in zip(
            range(0, self.dim, _SPARSE_TILE), self._blocks(x.device, x.dtype, n_rows), strict=True
        ):
            out += block @ x[j0 : j0 + _SPARSE_TILE]
        return out


def make_test_matrix(kind: str, dim: int, seed: int, rows: int | None = None) -> TestMatrix:
    """Build a test matrix by name.

    Args:
        kind: One of ``TEST_MATRIX_KINDS``: "ssrft", "gaussian", "rademacher", "sparse-sign".
        dim: D, the length of each test vector.
        seed: Base seed.
        rows: s, the number of rows the sketch uses; required by "sparse-sign", whose matrix
            depends on it, and ignored by the other kinds.

    Returns:
        The test matrix.

    Raises:
        ValueError: If ``kind`` is unknown, or dim/seed/rows are invalid.
    """
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown test matrix kind {kind!r}; expected one of {TEST_MATRIX_KINDS}")
    return cls(dim, seed, rows=rows)  # type: ignore[call-arg]
