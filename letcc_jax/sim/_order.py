"""The order in which the K inputs are assigned to the encoder nodes alpha_1 < ... < alpha_K.

The encoder curve passes through the inputs in node order, and the coding error grows with
the roughness of f along that curve: a random order sends it back and forth across the data,
an order along a short path through the inputs keeps it smooth; ``path_nodes`` then spaces
the nodes by arc length along that path. Everything here runs on the host in NumPy (an
ordering is a permutation computed once per batch, not a traced kernel); scipy is imported
only by the spectral method.
"""

from __future__ import annotations

import collections
import math
import warnings

import numpy as np

from letcc_jax import _validation as check

METHODS = ("nearest_neighbour", "spectral", "pca", "identity")
REFINES = (None, "2opt")
#: The point sets whose default nodes ``path_nodes`` respaces.
NODE_POINTS = ("chebyshev", "equispaced")

#: Entries of one block of squared distances (float64: 32 MB), whatever K is.
_BLOCK_ENTRIES = 1 << 22
#: Passes of 2-opt at most; it stops at the first pass without a move (the second or third
#: on most data).
_MAX_PASSES = 20
#: Neighbours the greedy chain looks through before it scans every input left.
_CHAIN_NEIGHBOURS = 64
#: Components of the neighbour graph up to this size get a dense eigensolver.
_DENSE_SPECTRAL = 500
#: Residual of an accepted Fiedler vector (unit norm; the eigenvalues lie in [0, 2]), and
#: the LOBPCG iterations allowed to reach it before shift-invert takes over.
_EIGEN_TOL = 1e-6
_LOBPCG_ITERATIONS = 300


def order_inputs(X, method: str = "nearest_neighbour", *, refine: str | None = None,
                 neighbours: int = 10, start: int | None = None) -> np.ndarray:
    """A permutation of the K inputs along a short path through them, for the encoder nodes.

    ``X[perm]`` is X in node order: input ``X[perm[j]]`` goes to node ``alpha_(j+1)``. The
    coded error grows with the roughness of f along the encoder curve, which passes through
    the inputs in node order, so neighbouring nodes should hold similar inputs (on
    Fashion-MNIST with LeNet-5 a nearest-neighbour chain in pixel space cut the coded error
    4-10x against a random order). Distances are Euclidean between the rows of X: to order
    by other features, pass them as X (the model's own embedding of the inputs, a random
    projection ``X @ R`` of wide inputs, standardised columns) and apply ``perm`` to the
    original inputs.

    Methods (all deterministic):

    - ``"nearest_neighbour"``: a greedy chain. It starts at ``start`` (default: the input
      farthest from the mean, an end of the data) and goes on to the nearest input not yet
      taken. Each input's nearest inputs are found in blocks of rows (squared distances by
      matrix products, in X's precision); an input whose listed neighbours are all taken
      falls back to an exact scan over the inputs left. O(K^2 d) time, O(K d) memory:
      K = 10,000 images of d = 784 (float32) in 1.2 s and 120 MB on 2 cores.
    - ``"spectral"``: sorted by the Fiedler vector of the symmetric ``neighbours``-nearest
      neighbour graph (Gaussian weights with local scales). A disconnected graph is ordered
      per component, and the components are chained from nearest centroid to nearest
      centroid. Smooth on data along one curve; it can fold where the data branch.
    - ``"pca"``: sorted by the first principal component: O(K d^2), a cheap baseline that
      only suits data spread along one direction.
    - ``"identity"``: the given order, ``arange(K)``; with ``refine="2opt"`` it improves an
      order you already have (pass ``X[your_perm]`` and compose the permutations).

    ``refine="2opt"`` then improves the path by reversing segments (2-opt moves on the open
    path, which may also move its ends) while that shortens it, trying only moves that join
    an input to one of its ``neighbours`` nearest, for at most 20 passes. It never lengthens
    the path.

    Args:
      X: (K, d) real array, finite, K >= 2: the inputs, or any features of them whose
        Euclidean distances say which inputs f treats alike. Integer and boolean arrays are
        taken as float64, half precision as float32; float32 stays float32 (the distance
        products then run in float32, twice as fast). Flatten inputs that are not vectors
        first: ``X.reshape(K, -1)``.
      method: ``"nearest_neighbour"`` (default), ``"spectral"``, ``"pca"`` or
        ``"identity"``.
      refine: None (default) or ``"2opt"``.
      neighbours: how many nearest inputs of each input 2-opt tries to join it to, and the
        spectral method joins it to in its graph (at most K - 1). The greedy chain does not
        depend on it: it keeps at least 64 neighbours per input, only to scan rarely.
      start: with ``"nearest_neighbour"``, the index of the input the chain starts from.
        2-opt may move the ends of the path.

    Returns:
      perm: (K,) NumPy int array, a permutation of ``range(K)``; ``X[perm]`` is X in node
      order.

    Raises:
      ValueError: X not 2-D with K >= 2 rows and d >= 1 columns, or with NaN or infinite
        entries; an unknown method or refine (the message lists the choices); neighbours
        not an int >= 1; start not an int in [0, K) or given with another method.
      TypeError: X complex or not numeric (a string, None), or a JAX tracer (order inside
        ``jit``: it runs on the host, call it outside).
      ImportError: ``method="spectral"`` without scipy.

    Example:
      >>> import numpy as np
      >>> import letcc_jax as lc
      >>> t = np.linspace(0.0, 3.0, 8)
      >>> curve = np.stack([np.cos(t), np.sin(t), t], axis=1)  # 8 inputs along a helix
      >>> shuffled = curve[[3, 7, 0, 5, 1, 6, 2, 4]]
      >>> perm = lc.order_inputs(shuffled)
      >>> perm.tolist()
      [1, 5, 3, 7, 0, 6, 4, 2]
      >>> np.array_equal(shuffled[perm], curve[::-1])  # along the helix, from one end
      True
      >>> round(lc.path_length(shuffled), 3), round(lc.path_length(shuffled, perm), 3)
      (17.195, 4.226)

      Ordered by features of the inputs instead, here a random projection:

      >>> R = np.random.default_rng(0).normal(size=(3, 2))
      >>> by_features = lc.order_inputs(shuffled @ R, "spectral", refine="2opt")
      >>> np.array_equal(by_features, perm) or np.array_equal(by_features, perm[::-1])
      True
    """
    X = _as_inputs(X, "X")
    K = X.shape[0]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if refine not in REFINES:
        raise ValueError(f"refine must be one of {REFINES}, got {refine!r}.")
    k = min(check.check_positive_int(neighbours, "neighbours"), K - 1)
    if start is not None:
        if method != "nearest_neighbour":
            raise ValueError(f"start applies to method='nearest_neighbour' only, not {method!r}.")
        if not check.is_int(start) or not 0 <= start < K:
            raise ValueError(f"start must be an int in [0, K) = [0, {K}), got {start!r}.")

    # Centring leaves the distances alone and keeps the norms in ||a||^2 + ||b||^2 - 2 a.b
    # small, so that less of the precision cancels.
    X = X - X.mean(axis=0)
    sq = np.einsum("ij,ij->i", X, X)
    idx = dist = None
    if method in ("nearest_neighbour", "spectral") or refine:
        # The chain is the same with any number of neighbours; more only make its exact
        # scans rarer (on K = 10,000 images: 1,240 with 10, 236 with 64).
        chain = _CHAIN_NEIGHBOURS if method == "nearest_neighbour" else 0
        idx, dist = _nearest(X, sq, min(max(k, chain), K - 1))
    if method == "nearest_neighbour":
        perm = _greedy_chain(X, sq, idx, int(np.argmax(sq)) if start is None else int(start))
    elif method == "spectral":
        perm = _spectral(X, idx[:, :k], dist[:, :k])
    elif method == "pca":
        perm = _pca(X)
    else:
        perm = np.arange(K)
    if refine:
        perm = _two_opt(X, perm, idx[:, :k], dist[:, :k])
    return perm


def path_length(X, perm=None) -> float:
    """The length of the path through the inputs in node order: sum_j ||X[perm[j+1]] - X[perm[j]]||.

    The measure ``order_inputs`` shortens (the curve through the coded inputs is smoother
    when it is short); compare it with the length of a random order.

    Args:
      X: (K, d) real array, finite, K >= 2 (as for ``order_inputs``).
      perm: (K,) permutation of ``range(K)``; None for the given order.

    Returns:
      The length, a Python float computed in float64.

    Raises:
      ValueError: X as ``order_inputs`` rejects it; perm not a (K,) integer permutation of
        ``range(K)``.
      TypeError: X as ``order_inputs`` rejects it.

    Example:
      >>> import numpy as np
      >>> import letcc_jax as lc
      >>> X = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
      >>> lc.path_length(X), lc.path_length(X, [0, 2, 1])  # 5 + 3, then 4 + 3
      (8.0, 7.0)
    """
    return float(np.sum(_steps(_as_inputs(X, "X"), perm)))


def path_nodes(X, perm=None, *, points: str = "chebyshev", min_gap: float = 0.25) -> np.ndarray:
    """Encoder nodes alpha_1 < ... < alpha_K spaced by arc length along the path through the
    inputs in node order: inputs far apart on the path get nodes far apart.

    ``order_inputs`` decides which input sits at which node; this decides where the nodes
    sit. The encoder curve passes through ``X[perm[j]]`` at ``alpha[j]``, and the decoder
    sees f along it only at the worker points, so the workers between two neighbouring
    nodes are what resolves f on that piece of the curve. The default nodes give every step
    of the path the same share of the workers, whether it joins two near-duplicates or two
    unrelated inputs; these nodes give each step a share that grows with its length
    s_j = ||X[perm[j+1]] - X[perm[j]]||:

        w_j = min_gap / (K - 1) + (1 - min_gap) s_j / sum_i s_i,    j = 0 .. K - 2,

    and place node j where the default nodes of ``points`` have their fractional index
    (K - 1)(w_0 + ... + w_(j-1)): for ``"chebyshev"``, alpha_j = -cos(pi (2 i_j + 1) / (2K))
    with that index i_j, that is equal steps of arccos, the coordinate in which Chebyshev
    workers are evenly spaced; for ``"equispaced"``, alpha_j = -1 + (2 i_j + 1) / K. So the
    first and last node are the defaults' (strictly inside the workers' range [-1, 1]),
    ``min_gap = 1`` gives the default nodes, a small ``min_gap`` nearly pure arc length, and
    no step gets less than ``min_gap`` times its default share (duplicate inputs still get
    distinct nodes). If every step is 0 (all inputs equal) the nodes are the defaults.

    Use them with the same ``perm`` and points: ``letcc(K, N, points=(alpha,
    chebyshev_second(N)), order=perm)``. They also make a starting point for ``tune``
    (``learn=("alpha", ...)``), whose free-end nodes must lie inside (-1, 1).

    Args:
      X: (K, d) real array, finite, K >= 2: the inputs, or the features whose Euclidean
        distances ordered them (as for ``order_inputs``).
      perm: (K,) permutation of ``range(K)``, the node order (``X[perm]`` is X in node
        order, as ``order_inputs`` returns it); None for the given order.
      points: the scheme's point set, ``"chebyshev"`` (default) or ``"equispaced"``, as in
        ``letcc``: the default nodes these replace, and the workers they share out.
      min_gap: the smallest share of a step, as a fraction of the default share, in (0, 1];
        default 0.25.

    Returns:
      alpha: (K,) float64 NumPy array, strictly increasing, with the default nodes' first
      and last values; ``alpha[j]`` is the node of input ``X[perm[j]]``.

    Raises:
      ValueError: X or perm as ``path_length`` rejects them; points not ``"chebyshev"`` or
        ``"equispaced"``; min_gap not in (0, 1].
      TypeError: X as ``order_inputs`` rejects it; min_gap not a real number.

    Example:
      >>> import numpy as np
      >>> import letcc_jax as lc
      >>> X = np.array([[0.0], [1.0], [3.0], [7.0]])  # steps of 1, 2 and 4 along a line
      >>> np.diff(lc.path_nodes(X, points="equispaced", min_gap=0.5)).round(4).tolist()
      [0.3571, 0.4643, 0.6786]
      >>> np.allclose(lc.path_nodes(X, min_gap=1.0), lc.chebyshev_first(4))  # the defaults
      True

      A scheme with its inputs along a short path and its nodes by arc length:

      >>> X = np.random.default_rng(0).normal(size=(6, 3))
      >>> perm = lc.order_inputs(X)
      >>> alpha = lc.path_nodes(X, perm)
      >>> scheme = lc.letcc(6, 12, points=(alpha, lc.chebyshev_second(12)), order=perm)
      >>> bool(np.all(np.diff(alpha) > 0)), scheme.alpha.shape
      (True, (6,))
    """
    X = _as_inputs(X, "X")
    K = X.shape[0]
    if points not in NODE_POINTS:
        raise ValueError(f"points must be one of {NODE_POINTS}, got {points!r}.")
    min_gap = check.check_real(min_gap, "min_gap", "in (0, 1]", lambda v: 0 < v <= 1)
    steps = _steps(X, perm)
    total = float(np.sum(steps))
    share = steps / total if total > 0 else np.full(K - 1, 1.0 / (K - 1))
    weights = min_gap / (K - 1) + (1.0 - min_gap) * share
    index = (K - 1) * np.concatenate([[0.0], np.cumsum(weights)])
    index[-1] = K - 1  # the weights sum to 1 up to round-off
    if points == "chebyshev":
        return -np.cos(np.pi * (2.0 * index + 1.0) / (2 * K))
    return -1.0 + (2.0 * index + 1.0) / K


def _steps(X, perm) -> np.ndarray:
    """(K - 1,) float64 lengths of the steps of the path through X's rows in ``perm``'s
    order (None: the given order); a bad ``perm`` is a ValueError."""
    if perm is not None:
        values = np.asarray(perm)
        if not (np.issubdtype(values.dtype, np.integer) and values.shape == (len(X),)
                and np.array_equal(np.sort(values), np.arange(len(X)))):
            raise ValueError(f"perm must be a permutation of range(K) = range({len(X)}), "
                             f"as a (K,) int array; got {_describe(perm)}.")
        X = X[values]
    steps = np.diff(X.astype(np.float64), axis=0)
    return np.sqrt(np.einsum("ij,ij->i", steps, steps))


def _describe(x) -> str:
    values = np.asarray(x)
    return f"shape {values.shape}, dtype {values.dtype}" if values.ndim else repr(x)


def _as_inputs(X, name: str) -> np.ndarray:
    """X as a (K, d) NumPy float array with K >= 2, finite; the errors of ``order_inputs``."""
    if not check.is_concrete(X):
        raise TypeError(f"{name} is a JAX tracer: inputs are ordered on the host, on concrete "
                        "arrays; call this outside jit/vmap and pass the permutation in.")
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"{name} must be an array of real numbers, got {X!r}.")
    try:
        X = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers ({exc}).") from None
    if not np.issubdtype(X.dtype, np.floating):
        if not (np.issubdtype(X.dtype, np.integer) or X.dtype == np.bool_):
            raise TypeError(f"{name} must be real; got dtype {X.dtype}.")
        X = X.astype(np.float64)
    elif np.finfo(X.dtype).bits < 32:
        X = X.astype(np.float32)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"{name} must have shape (K, d) with K >= 2 inputs and d >= 1, got "
                         f"{X.shape}. Flatten each input to a vector first "
                         "(X.reshape(len(X), -1)).")
    check.check_finite(X, name)
    return X


def _nearest(X, sq, k):
    """Each row's k nearest other rows, nearest first (ties by index), and their distances.

    Squared distances come in blocks of rows, so memory stays O(K (d + k)) whatever K is.
    """
    K = X.shape[0]
    idx = np.empty((K, k), np.intp)
    dist = np.empty((K, k), X.dtype)
    rows = max(1, _BLOCK_ENTRIES // K)
    for lo in range(0, K, rows):
        hi = min(K, lo + rows)
        d2 = X[lo:hi] @ X.T
        d2 *= -2
        d2 += sq[lo:hi, None]
        d2 += sq
        d2[np.arange(hi - lo), np.arange(lo, hi)] = np.inf  # not its own neighbour
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]
        d2 = np.take_along_axis(d2, near, axis=1)
        order = np.lexsort((near, d2), axis=1)
        idx[lo:hi] = np.take_along_axis(near, order, axis=1)
        dist[lo:hi] = np.sqrt(np.maximum(np.take_along_axis(d2, order, axis=1), 0))
    return idx, dist


def _greedy_chain(X, sq, idx, start):
    """The nearest-neighbour chain from ``start`` over the neighbour lists ``idx``."""
    K = X.shape[0]
    taken = np.zeros(K, bool)
    perm = np.empty(K, np.intp)
    # The inputs a dead end scans: compacted whenever half of them are taken, so that the
    # scans cost O(inputs left) and the compactions O(K d) in all.
    pool, pool_X, pool_sq = np.arange(K), X, sq
    current = start
    for j in range(K - 1):
        perm[j] = current
        taken[current] = True
        free = idx[current][~taken[idx[current]]]
        if free.size:
            current = free[0]
            continue
        if 2 * (K - 1 - j) < pool.size:
            keep = ~taken[pool]
            pool, pool_X, pool_sq = pool[keep], pool_X[keep], pool_sq[keep]
        d2 = pool_sq - 2 * (pool_X @ X[current])
        d2[taken[pool]] = np.inf
        current = pool[np.argmin(d2)]
    perm[K - 1] = current
    return perm


def _pca(X):
    """X's rows sorted by their first principal component (X is centred)."""
    K, d = X.shape
    if d <= K:
        score = X @ np.linalg.eigh(X.T @ X)[1][:, -1]
    else:
        score = np.linalg.eigh(X @ X.T)[1][:, -1]
    return np.argsort(_fix_sign(score), kind="stable")


def _spectral(X, idx, dist):
    """Fiedler order per connected component of the symmetric neighbour graph; the
    components chained by their centroids, each turned to start near where the last ended."""
    try:
        import scipy  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "order_inputs(method='spectral') needs scipy: pip install scipy.") from exc
    from scipy import sparse
    from scipy.sparse import csgraph

    K, k = idx.shape
    # Self-tuning weights (Zelnik-Manor and Perona): the scale of an input is the distance
    # to its k-th neighbour, so that sparse and dense regions are both well connected. At
    # least e^-50, so that no edge of the list vanishes; duplicates (0 / 0) weigh 1.
    dist = dist.astype(np.float64)
    scale = dist[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = dist**2 / (scale[:, None] * scale[idx])
    weights = np.exp(-np.clip(np.nan_to_num(ratio, nan=0.0), 0.0, 50.0))
    W = sparse.csr_matrix((weights.ravel(), (np.repeat(np.arange(K), k), idx.ravel())),
                          shape=(K, K))
    W = W.maximum(W.T)
    count, label = csgraph.connected_components(W, directed=False)
    pieces = []
    for c in range(count):
        members = np.flatnonzero(label == c)
        if members.size > 2:
            L, root_degree = csgraph.laplacian(W[members][:, members], normed=True,
                                               return_diag=True)
            members = members[np.argsort(_fiedler(L, root_degree), kind="stable")]
        pieces.append(members)
    if count == 1:
        return pieces[0]
    centroids = np.stack([X[p].mean(axis=0) for p in pieces])
    c_sq = np.einsum("ij,ij->i", centroids, centroids)
    chain = _greedy_chain(centroids, c_sq, np.empty((count, 0), np.intp), int(np.argmax(c_sq)))
    perm = []
    for j, c in enumerate(chain):
        piece = pieces[c]
        # Start near the end so far; the first piece ends near the next centroid instead.
        if j == 0:
            target = centroids[chain[1]]
            turn = _far(X[piece[-1]], target) > _far(X[piece[0]], target)
        else:
            end = X[perm[-1][-1]]
            turn = _far(X[piece[0]], end) > _far(X[piece[-1]], end)
        perm.append(piece[::-1] if turn else piece)
    return np.concatenate(perm)


def _fiedler(L, root_degree):
    """The Fiedler vector of a connected graph, from its normalised Laplacian ``L`` and the
    square roots of its degrees: the random-walk Laplacian's, with a definite sign."""
    from scipy.linalg import eigh
    from scipy.sparse.linalg import eigsh, lobpcg

    n = L.shape[0]
    if n <= _DENSE_SPECTRAL:
        vector = eigh(L.toarray(), subset_by_index=[1, 1])[1][:, 0]
    else:
        # LOBPCG, orthogonal to the known null vector, converges in ~150 iterations on well
        # connected graphs. On graphs along a curve the small eigenvalues crowd and it
        # stalls; shift-invert takes over, and its sparse LU is cheap on exactly those
        # graphs (it fills in to O(n^2) on well connected ones).
        null = (root_degree / np.linalg.norm(root_degree))[:, None]
        guess = np.random.default_rng(0).standard_normal((n, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is checked below
            values, vectors = lobpcg(L, guess, Y=null, largest=False, tol=_EIGEN_TOL,
                                     maxiter=_LOBPCG_ITERATIONS)
        vector = vectors[:, 0] / np.linalg.norm(vectors[:, 0])
        if np.linalg.norm(L @ vector - values[0] * vector) > _EIGEN_TOL:
            v0 = np.random.default_rng(0).random(n)
            vector = eigsh(L.tocsc(), k=2, sigma=-1e-3, which="LM", v0=v0)[1][:, 1]
    return _fix_sign(vector / root_degree)


def _fix_sign(vector):
    """An eigenvector's sign made definite (its largest entry positive), so that the order
    does not depend on the eigensolver."""
    return vector if vector[np.argmax(np.abs(vector))] > 0 else -vector


def _far(a, b) -> float:
    diff = a.astype(np.float64) - b
    return float(diff @ diff)


def _two_opt(X, perm, idx, dist):
    """2-opt on the open path ``perm``: reversals that join an input to one of its listed
    neighbours, while they shorten the path, for at most ``_MAX_PASSES`` passes. Within a
    pass, the inputs wait in a queue that a move refills with the four inputs it touched
    (Bentley's don't-look bits); a pass without a move ends it."""
    X = X.astype(np.float64, copy=False)
    K = X.shape[0]
    perm = perm.copy()
    where = np.empty(K, np.intp)
    where[perm] = np.arange(K)
    steps = np.diff(X[perm], axis=0)
    edge = np.sqrt(np.einsum("ij,ij->i", steps, steps))  # edge[i]: perm[i] to perm[i + 1]

    def length(a, b):
        diff = X[a] - X[b]
        return math.sqrt(diff @ diff)

    # A gain below this is round-off; demanding it keeps every move a real improvement.
    tol = 1e-12 * float(np.mean(edge))
    for _ in range(_MAX_PASSES):
        moved = False
        queue, queued = collections.deque(perm.tolist()), np.ones(K, bool)
        while queue:
            a = queue.popleft()
            queued[a] = False
            for step in (1, -1):  # the edge to a's successor, then to its predecessor
                i = where[a]
                if not 0 <= i + step < K:
                    continue
                b, ab = perm[i + step], edge[min(i, i + step)]
                for c, near in zip(idx[a], dist[a]):
                    if near >= ab:  # the neighbours are sorted: no shorter edge remains
                        break
                    # Replace a-b and c-e by a-c and b-e, e the neighbour of c on the same
                    # side (none when c is an end), by reversing the path from b to c.
                    j = where[c]
                    gain = ab - length(a, c)
                    e = perm[j + step] if 0 <= j + step < K else c
                    if e != c:
                        gain += edge[min(j, j + step)] - length(b, e)
                    if gain <= tol:
                        continue
                    lo, hi = min(i, j), max(i, j)
                    lo, hi = (lo + 1, hi) if step == 1 else (lo, hi - 1)
                    perm[lo:hi + 1] = perm[lo:hi + 1][::-1]
                    where[perm[lo:hi + 1]] = np.arange(lo, hi + 1)
                    edge[lo:hi] = edge[lo:hi][::-1]
                    for end in (lo - 1, hi):
                        if 0 <= end < K - 1:
                            edge[end] = length(perm[end], perm[end + 1])
                    moved = True
                    for touched in (a, b, c, e):
                        if not queued[touched]:
                            queued[touched] = True
                            queue.append(touched)
                    break
        if not moved:
            break
    return perm
