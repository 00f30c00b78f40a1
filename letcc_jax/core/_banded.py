"""Symmetric positive definite pentadiagonal solves: banded LDL^T or block cyclic reduction.

Two O(P) algorithms, chosen by ``method``:

- ``"ldl"``: the banded LDL^T factorisation with forward and back substitution, as two
  ``lax.scan`` loops of P scalar steps. Least work; under vmap every step handles the whole
  batch, which makes it the fastest way to decode many straggler patterns on a CPU.
- ``"cr"``: block cyclic reduction (below), O(log P) sequential depth. The right choice on
  accelerators and for one large system, where a P-step loop would be latency bound.

``"auto"`` takes ``"ldl"`` on CPU for P below ``LDL_MAX_P`` and ``"cr"`` otherwise. Both are
stable without pivoting on SPD matrices.

Cyclic reduction: a pentadiagonal matrix is block tridiagonal with 2x2 blocks. Cyclic reduction eliminates
every other block row per level, so a solve costs O(P) work in O(log P) vectorised levels:
no sequential loop over P, which keeps it fast under jit on CPU and on accelerators, and
batches cleanly under vmap. On an SPD matrix it is block Gaussian elimination in an
odd-even ordering, which is backward stable without pivoting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._vma import varying_like

__all__ = ["solve_spd_pentadiagonal", "LDL_MAX_P"]

LDL_MAX_P = 20_000


def _unroll(dtype) -> int:
    """Loop steps per iteration of the LDL scans. Four steps take 1.4-2.4x as long to
    compile; they run float64 1.2-1.6x faster at N = 10^4 on a CPU, float32 about 2x slower
    (benchmarks/RESULTS.md, "Compile time"): unrolled for float64 only."""
    return 4 if dtype == jnp.float64 else 1


def solve_spd_pentadiagonal(
    diag0: Float[Array, " P"],
    diag1: Float[Array, " P-1"],
    diag2: Float[Array, " P-2"],
    rhs: Float[Array, "P m"],
    method: str = "auto",
) -> Float[Array, "P m"]:
    """Solve ``A x = rhs`` for a symmetric positive definite pentadiagonal ``A``.

    Args:
      diag0: main diagonal of ``A``.
      diag1: first super-diagonal (``A[i, i+1]``).
      diag2: second super-diagonal (``A[i, i+2]``).
      rhs: right-hand sides, one per column.
      method: ``"auto"``, ``"ldl"`` or ``"cr"`` (see the module docstring).

    Returns:
      The solution, shape (P, m).
    """
    P = rhs.shape[0]
    if P == 0:
        return rhs
    if method == "auto":
        method = "ldl" if jax.default_backend() == "cpu" and P <= LDL_MAX_P else "cr"
    if method == "ldl":
        return _ldl_solve(diag0, diag1, diag2, rhs)
    if method == "cr":
        return _cr_solve(diag0, diag1, diag2, rhs)
    raise ValueError(f"method must be 'auto', 'ldl' or 'cr', got {method!r}.")


def _ldl_solve(diag0, diag1, diag2, rhs):
    """Banded LDL^T: A = L D L^T with L unit lower triangular of bandwidth 2."""
    P, m = rhs.shape
    dtype = rhs.dtype
    zero, one, zero_m = varying_like((jnp.zeros((), dtype), jnp.ones((), dtype),
                                      jnp.zeros((m,), dtype)), diag0, diag1, diag2, rhs)
    sub1 = jnp.concatenate([jnp.zeros((1,), dtype), diag1])  # A[i, i-1]
    sub2 = jnp.concatenate([jnp.zeros((2,), dtype), diag2])[:P]  # A[i, i-2]

    def forward(carry, row):
        d_1, d_2, l1_1, z_1, z_2 = carry  # values at i-1 and i-2
        a0, a1, a2, r = row
        l2 = a2 / d_2
        l1 = (a1 - l2 * d_2 * l1_1) / d_1
        d = a0 - l1 * l1 * d_1 - l2 * l2 * d_2
        z = r - l1 * z_1 - l2 * z_2
        return (d, d_1, l1, z, z_1), (d, l1, l2, z)

    _, (d, l1, l2, z) = jax.lax.scan(
        forward, (one, one, zero, zero_m, zero_m), (diag0, sub1, sub2, rhs), unroll=_unroll(dtype)
    )
    l1_next = jnp.concatenate([l1[1:], jnp.zeros((1,), dtype)])  # L[i+1, i]
    l2_next = jnp.concatenate([l2[2:], jnp.zeros((2,), dtype)])[:P]  # L[i+2, i]

    def backward(carry, row):
        x_1, x_2 = carry  # values at i+1 and i+2
        di, zi, a, b = row
        x = zi / di - a * x_1 - b * x_2
        return (x, x_1), x

    _, x = jax.lax.scan(
        backward, (zero_m, zero_m), (d, z, l1_next, l2_next), reverse=True,
        unroll=_unroll(dtype)
    )
    return x


def _cr_solve(diag0, diag1, diag2, rhs):
    P, m = rhs.shape
    M = 1 << max(0, (P + 1) // 2 - 1).bit_length()  # number of 2x2 blocks, a power of two
    size = 2 * M
    dtype = rhs.dtype
    d0 = jnp.concatenate([diag0, jnp.ones((size - P,), dtype)])
    d1 = jnp.concatenate([diag1, jnp.zeros((size - P + 1,), dtype)])
    d2 = jnp.concatenate([diag2, jnp.zeros((size - P + 2,), dtype)]) if P >= 2 else jnp.zeros(
        (size,), dtype
    )
    b = jnp.concatenate([rhs, jnp.zeros((size - P, m), dtype)]).reshape(M, 2, m)

    zero = jnp.zeros((M,), dtype)
    # Diagonal blocks B_i (rows/cols 2i, 2i+1) and upper couplings C_i (rows 2i, 2i+1;
    # cols 2i+2, 2i+3). The lower couplings are A_{i+1} = C_i^T.
    B = _blocks(d0[0::2], d1[0::2], d1[0::2], d0[1::2])
    C = _blocks(d2[0::2], zero, d1[1::2], d2[1::2])
    C = C.at[-1].set(0.0)
    A = jnp.concatenate([jnp.zeros((1, 2, 2), dtype), jnp.swapaxes(C[:-1], -1, -2)])
    x = _cyclic_reduction(A, B, C, b)
    return x.reshape(size, m)[:P]


def _blocks(a, b, c, d):
    return jnp.stack([jnp.stack([a, b], -1), jnp.stack([c, d], -1)], -2)


def _inv2(B):
    a, b, c, d = B[..., 0, 0], B[..., 0, 1], B[..., 1, 0], B[..., 1, 1]
    det = a * d - b * c
    return _blocks(d, -b, -c, a) / det[..., None, None]


def _cyclic_reduction(A, B, C, b):
    """Solve the block tridiagonal system A_i x_{i-1} + B_i x_i + C_i x_{i+1} = b_i."""
    M = B.shape[0]
    if M == 1:
        return _inv2(B) @ b
    # Keep the odd block rows; the even ones (plus one dummy identity row at the end, so
    # that the last odd row has a right neighbour) are eliminated.
    dtype = B.dtype
    eye = jnp.eye(2, dtype=dtype)[None]
    nul = jnp.zeros((1, 2, 2), dtype)
    Ae = jnp.concatenate([A[0::2], nul])
    Be = jnp.concatenate([B[0::2], eye])
    Ce = jnp.concatenate([C[0::2], nul])
    be = jnp.concatenate([b[0::2], jnp.zeros((1,) + b.shape[1:], dtype)])
    Ao, Bo, Co, bo = A[1::2], B[1::2], C[1::2], b[1::2]

    Be_inv = _inv2(Be)
    lo, hi = slice(0, -1), slice(1, None)
    left = Ao @ Be_inv[lo]  # A_i B_{i-1}^{-1}
    right = Co @ Be_inv[hi]  # C_i B_{i+1}^{-1}
    B_red = Bo - left @ Ce[lo] - right @ Ae[hi]
    A_red = -left @ Ae[lo]
    C_red = -right @ Ce[hi]
    b_red = bo - left @ be[lo] - right @ be[hi]
    x_odd = _cyclic_reduction(A_red, B_red, C_red, b_red)

    x_prev = jnp.concatenate([jnp.zeros((1,) + x_odd.shape[1:], dtype), x_odd[:-1]])
    x_even = Be_inv[:-1] @ (be[:-1] - Ae[:-1] @ x_prev - Ce[:-1] @ x_odd)
    return jnp.stack([x_even, x_odd], axis=1).reshape(b.shape)
