"""Worst-case adversarial workers: bounded outputs chosen to maximise the decoding error.

The threat model of Moradi, Akbarinodehi and Maddah-Ali (arXiv 2502.08058): up to gamma of
the N workers are adversarial; instead of f(coded input) each sends an arbitrary vector in
the box [-M, M]^m, chosen with full knowledge of the inputs, of f and of the decoder, to
maximise the decoding error

    (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2.

The bound is on the value sent, not on its deviation from the honest one. The honest
workers' outputs are f on their coded inputs; stragglers (``alive`` False) send nothing
and cannot be adversaries.

For a fixed decoder (fixed survivor set and smoothing parameters) the estimate is linear in
the outputs, f_hat = D y with D the (K, N) decoder matrix, so the error is a convex
quadratic in the adversarial values and its maximum over the box is at a vertex: every
adversarial entry is -M or +M. ``worst_adversaries`` searches those vertices:

- values, for a set of adversaries: projected gradient ascent with full sign steps,
  v <- M sign(dMSE/dv). The new point maximises the linearisation over the box, so by
  convexity each step raises the error (strictly, while the point moves) and the ascent
  stops at a vertex where no sign flip along the gradient helps: a local maximum.
- which workers (when only their number is given): swap search. Each round scores, in
  closed form, every exchange of one adversary for one honest worker (with the newcomer's
  best vertex, the other values held), takes the best, and re-runs the value ascent;
  until no exchange helps. Swaps and ascents only ever raise the error.
- starts, all run at once (vmapped): for each data point k, the ``count`` workers with
  the largest decoder weights |D[k, n]| (the attack that concentrates on one estimate),
  with values +M sign(D[k, n]) and the opposite; and ``restarts`` random sets with random
  signs. The best local maximum is returned: a lower bound on the worst case, equal to it
  in the cases ``tests/test_adversarial.py`` enumerates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .. import _validation as check
from . import _rounds
from ..core._schemes import Scheme, decoder_matrix
from ._evaluate import check_round, check_truth
from ._models import NoStragglers

__all__ = ["AdversarialAttack", "worst_adversaries"]


class AdversarialAttack(NamedTuple):
    """The most harmful bounded outputs found by ``worst_adversaries``.

    The arrays carry the sweep's leading axes ``grid`` (none without a sweep).

    Attributes:
      outputs: ``(*grid, N, m)`` worker outputs with the adversaries' rows replaced;
        decode them with ``alive`` to reproduce ``mse``.
      adversaries: ``(*grid, count)`` int64 sorted indices of the adversarial workers.
      mse: ``(*grid)`` float64 decoding error (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 under
        the attack, f_hat = D y with the scheme's (K, N) decoder matrix D (a Python float
        when nothing is swept).
      honest_mse: ``(*grid)`` the same error with every worker honest.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X = jnp.array([[0.1], [0.2], [0.3], [0.9]])
      >>> attack = lc.worst_adversaries(jnp.tanh, lc.letcc(4, 10, lam_dec=1e-4), X, 2, 1.0)
      >>> attack.outputs.shape, float(abs(attack.outputs[attack.adversaries]).max())
      ((10, 1), 1.0)
    """

    outputs: np.ndarray
    adversaries: np.ndarray
    mse: np.ndarray | float
    honest_mse: np.ndarray | float


# ------------------------------------------------------------------ traced kernel


def _objective(R: Float[Array, "K m"]) -> Float[Array, ""]:
    return jnp.sum(R * R)


def _search(D, r, Y, allowed, idx, V, M, choose: bool, max_steps: int):
    """From one start (idx (count,), V (count, m)): sign steps of the values while one
    raises the error; at a fixed point, the best exchange of one adversary for one other
    allowed worker (scored in closed form for every pair, the newcomer at its best vertex);
    until neither helps or after ``max_steps`` moves. Returns (idx, V, ||R||^2)."""
    colnorm = jnp.sum(D * D, axis=0)  # (N,)
    tol = 1 + 8 * jnp.finfo(r.dtype).eps  # an exchange must beat round-off

    def residual(idx, V):
        return r + D[:, idx] @ (V - Y[idx])

    def exchange(idx, V, value):
        E = V - Y[idx]  # (count, m) deviations from the honest outputs
        G = D.T @ residual(idx, V)  # (N, m)
        C = D.T @ D[:, idx]  # (N, count)
        # Without slot s: ||R_s||^2 and D^T R_s, for every slot at once.
        removed = (value - 2 * jnp.sum(G[idx] * E, axis=1)
                   + colnorm[idx] * jnp.sum(E * E, axis=1))  # (count,)
        G_s = G[None] - C.T[:, :, None] * E[:, None, :]  # (count, N, m)

        def gain(v):  # worker n joins with v in every coordinate: (count, N, m)
            delta = v - Y[None]
            return 2 * delta * G_s + delta * delta * colnorm[None, :, None]

        up, down = gain(M), gain(-M)
        score = removed[:, None] + jnp.sum(jnp.maximum(up, down), axis=2)
        score = jnp.where(allowed.at[idx].set(False)[None, :], score, -jnp.inf)
        best = jnp.argmax(score)
        s, n = best // score.shape[1], best % score.shape[1]
        new_idx = idx.at[s].set(n.astype(idx.dtype))
        new_V = V.at[s].set(jnp.where(up[s, n] >= down[s, n], M, -M))
        return new_idx, new_V

    def move(state):
        idx, V, value, _, it = state
        g = D[:, idx].T @ residual(idx, V)
        stepped = jnp.where(g > 0, M, jnp.where(g < 0, -M, V))
        step_value = _objective(residual(idx, stepped))
        ascend = (step_value > value) & jnp.any(stepped != V)
        if choose:
            swap_idx, swap_V = exchange(idx, V, value)
            swap_value = _objective(residual(swap_idx, swap_V))
            swap = ~ascend & (swap_value > value * tol)
        else:
            swap_idx, swap_V, swap_value, swap = idx, V, value, jnp.asarray(False)
        idx = jnp.where(swap, swap_idx, idx)
        V = jnp.where(ascend, stepped, jnp.where(swap, swap_V, V))
        value = jnp.where(ascend, step_value, jnp.where(swap, swap_value, value))
        return idx, V, value, ascend | swap, it + 1

    state = (idx, V, _objective(residual(idx, V)), jnp.asarray(True), jnp.asarray(0))
    idx, V, value, _, _ = jax.lax.while_loop(lambda s: s[3] & (s[4] < max_steps), move, state)
    return idx, V, value


def _starts(D, allowed, fixed, count: int, restarts: int, key, M):
    """Start sets (S, count) and values (S, count): per data point its ``count`` heaviest
    decoder columns with both sign patterns, then ``restarts`` random sets and signs."""
    K, N = D.shape
    k_set, k_sign = jax.random.split(key)
    if fixed is None:
        heavy = jax.lax.top_k(jnp.where(allowed[None, :], jnp.abs(D), -1.0), count)[1]
        noise = jax.random.uniform(k_set, (restarts, N), D.dtype)
        random = jax.lax.top_k(jnp.where(allowed[None, :], noise, -1.0), count)[1]
    else:
        heavy = jnp.broadcast_to(fixed, (K, count))
        random = jnp.broadcast_to(fixed, (restarts, count))
    signs = jnp.where(jnp.take_along_axis(D, heavy, axis=1) >= 0, M, -M)  # (K, count)
    coin = jax.random.bernoulli(k_sign, 0.5, (restarts, count))
    values = jnp.concatenate([signs, -signs, jnp.where(coin, M, -M)])
    return jnp.concatenate([heavy, heavy, random]), values


def attack_kernel(D: Float[Array, "K N"], Y: Float[Array, "N m"], truth: Float[Array, "K m"],
                  allowed: Bool[Array, " N"], magnitude, key, fixed: Int[Array, " c"] | None,
                  *, count: int, restarts: int, max_steps: int):
    """The worst vertex attack found on the linear decoder D (traced, no validation).

    Returns (outputs (N, m), sorted adversary indices (count,)). ``allowed``: the workers
    that may be adversaries (those that answer); ``fixed``: the adversaries' indices, or
    None to choose ``count`` of them.
    """
    if count == 0:
        return Y, jnp.zeros((0,), jnp.int32)
    M = jnp.asarray(magnitude, Y.dtype)
    r = D @ Y - truth
    sets, values = _starts(D, allowed, fixed, count, restarts, key, M)
    values = jnp.broadcast_to(values[:, :, None], values.shape + (Y.shape[1],))
    search = functools.partial(_search, D, r, Y, allowed, M=M, choose=fixed is None,
                               max_steps=max_steps)
    idx, V, value = jax.vmap(search)(sets, values)
    best = jnp.argmax(value)
    idx, V = idx[best], V[best]
    return Y.at[idx].set(V), jnp.sort(idx)


# ------------------------------------------------------------- compiled programs


@jax.jit
def _decoder_matrices(scheme, alive, like):
    """The (*grid, K, N) decoder matrices: the decoder applied to the alive unit outputs,
    in the dtype of ``like``."""
    return _rounds.over_grid(lambda s: decoder_matrix(s, alive, like.dtype), scheme)


@functools.partial(jax.jit, static_argnames=("count", "restarts", "max_steps"))
def _attacks(D, Y, truth, alive, magnitude, key, fixed, *, count, restarts, max_steps):
    """The attack on every decoder D (P, K, N), honest outputs Y (P, N, m), one at a time
    (the exchange scores of all starts take (starts, count, N, m))."""

    def one(DY):
        D, Y = DY
        outputs, adversaries = attack_kernel(D, Y, truth, alive, magnitude, key, fixed,
                                             count=count, restarts=restarts,
                                             max_steps=max_steps)
        return outputs, adversaries, _rounds.mse(D @ outputs, truth), _rounds.mse(D @ Y, truth)

    return jax.lax.map(one, (D, Y))


def worst_adversaries(
    f: Callable,
    scheme: Scheme,
    X: Float[Array, "K d"],
    adversaries: int | Sequence[int],
    magnitude: float,
    *,
    alive: Bool[Array, " N"] | None = None,
    restarts: int = 8,
    max_steps: int = 1_000,
    key=None,
) -> AdversarialAttack:
    """Bounded adversarial outputs that maximise the decoding error on the inputs ``X``.

    Adversarial workers send any vector in [-magnitude, magnitude]^m in place of f(coded
    input); the attack maximises (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 with the scheme's
    decoder (module docstring: the model, and why the optimum is a sign pattern).

    Args:
      f: one input (d,) -> one output (m,), as in ``monte_carlo`` (hashable).
      scheme: a coding scheme; decoder parameters may be swept (e.g. ``scheme.replace(
        lam_dec=jnp.logspace(-9, 0, 10))``): every grid point gets its own attack, in one
        compiled call.
      X: (K, d) inputs, finite; f must be finite on them and on the coded inputs.
      adversaries: how many workers are adversarial (an int, 0 <= count <= the answering
        workers; the attack also chooses which), or the indices of the adversarial
        workers (only their values are chosen).
      magnitude: M >= 0, the bound on every entry an adversary sends.
      alive: (N,) bool, the workers that answer (default all); adversaries are among them.
      restarts: random starting sets (and sign patterns) besides the 2K structured ones.
      max_steps: the most moves (sign steps and exchanges) of each search.
      key: PRNG key of the random starts (default ``jax.random.key(0)``).

    Returns:
      An ``AdversarialAttack``: the corrupted outputs, the adversaries, the error under
      the attack and without it. A lower bound on the worst case (a local maximum of a
      convex function over the vertices), exact in the cases the tests enumerate.

    Raises:
      ValueError: a count out of range, repeated or out-of-range indices, indices of
        workers that do not answer; a magnitude that is negative or not finite, or
        beyond the largest finite value of f's outputs' dtype (1e39 with float32);
        ``restarts`` not an int >= 0 or ``max_steps`` not a positive int; X not (K, d)
        or not finite; ``alive`` not (N,); f not finite on X or on the coded inputs; too
        few answering workers to decode.
      TypeError: f not callable or hashable; scheme not a scheme; adversaries neither an
        int nor a sequence of ints; magnitude not a real Python or NumPy number; alive
        not boolean; key not a PRNG key; a call inside ``jax.jit``, ``vmap`` or ``grad``
        (the search runs eagerly: call it outside).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X = jnp.array([[0.1], [0.2], [0.3], [0.9]])
      >>> attack = lc.worst_adversaries(jnp.tanh, lc.letcc(4, 10, lam_dec=1e-4), X, 2, 1.0)
      >>> attack.adversaries.tolist(), round(attack.mse, 2)  # 2 workers sending +-1
      ([5, 6], 0.47)
      >>> attack.mse > 1000 * attack.honest_mse
      True
    """
    check.require_eager("worst_adversaries", scheme, X, adversaries, magnitude, alive, key)
    key = jax.random.key(0) if key is None else key
    # check_round validates f, the scheme, X and the key, and that f is finite on X.
    X, _ = check_round(f, scheme, X, NoStragglers(), None, key, single=True)
    scheme.check_unpadded("worst_adversaries")
    if not scheme.linear:
        raise ValueError(f"worst_adversaries searches the attacks on a linear decoder; this "
                         f"{scheme.name} scheme's is not (it takes the median of replicas, "
                         "exact while liars hold fewer than half of an input's replicas). Use "
                         "monte_carlo with letcc_jax.Adversaries instead.")
    N = scheme.N
    alive = np.ones(N, bool) if alive is None else np.asarray(check.check_mask(alive, N))
    answering = int(alive.sum())
    if check.is_int(adversaries):
        count, fixed = int(adversaries), None
        if not 0 <= count <= answering:
            raise ValueError(f"adversaries must be a count in [0, {answering}] (the answering "
                             f"workers), got {count}.")
    else:
        fixed = _indices(adversaries, N, alive)
        count = len(fixed)
    magnitude = check.check_real(magnitude, "magnitude", "finite and >= 0", lambda v: v >= 0)
    restarts = check.check_count(restarts, "restarts")
    max_steps = check.check_positive_int(max_steps, "max_steps")
    view = scheme.encoder_view()
    view.check_recovered(alive, view.recovered(alive))
    truth, Y = _rounds.honest_outputs(f, scheme, X)
    check_truth(jnp.all(jnp.isfinite(truth))[None], X)
    if not bool(jnp.all(jnp.isfinite(Y))):
        raise ValueError("f returned NaN or inf on the coded inputs: the attack needs finite "
                         "honest outputs.")
    largest = float(jnp.finfo(Y.dtype).max)
    if magnitude > largest:
        raise ValueError(
            f"magnitude = {magnitude:.4g} does not fit f's outputs of dtype {Y.dtype}, whose "
            f"largest finite value is {largest:.4g}: values that large would become inf, which "
            f"the decoder treats as missing workers, not as an attack. Use magnitude <= "
            f"{largest:.4g}, or float64 outputs (jax.config.update('jax_enable_x64', True)).")
    D = _decoder_matrices(scheme, jnp.asarray(alive), Y)
    grid = D.shape[:-2]
    P = math.prod(grid)
    Y = jnp.broadcast_to(Y, grid + Y.shape[-2:]).reshape((P,) + Y.shape[-2:])
    outputs, chosen, mse, honest = _attacks(
        D.reshape((P,) + D.shape[-2:]), Y, truth, jnp.asarray(alive),
        jnp.asarray(magnitude, Y.dtype), key, None if fixed is None else jnp.asarray(fixed),
        count=count, restarts=restarts, max_steps=max_steps)
    outputs = np.asarray(outputs).reshape(grid + Y.shape[-2:])
    chosen = np.asarray(chosen, np.int64).reshape(grid + (count,))
    mse = np.asarray(mse, np.float64).reshape(grid)
    honest = np.asarray(honest, np.float64).reshape(grid)
    if not grid:
        return AdversarialAttack(outputs, chosen, float(mse), float(honest))
    return AdversarialAttack(outputs, chosen, mse, honest)


def _indices(adversaries, N: int, alive: np.ndarray) -> np.ndarray:
    """Given adversaries: distinct indices of answering workers, as an int array."""
    try:
        idx = np.asarray(adversaries)
    except (TypeError, ValueError):
        idx = None
    if idx is None or idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
        raise TypeError("adversaries must be an int (how many) or a 1-D sequence of worker "
                        f"indices, got {adversaries!r}.")
    idx = idx.astype(np.int64)
    if np.any((idx < 0) | (idx >= N)):
        raise ValueError(f"adversaries: indices must be in [0, N) = [0, {N}), got {idx.tolist()}.")
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"adversaries: indices must be distinct, got {idx.tolist()}.")
    if not alive[idx].all():
        raise ValueError(f"adversaries: workers {idx[~alive[idx]].tolist()} do not answer "
                         "(alive is False): a straggler sends nothing.")
    return idx
