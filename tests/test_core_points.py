"""Evaluation points: Chebyshev of both kinds, equispaced, and the points specification."""

import numpy as np
import pytest

import letcc_jax as lc
from letcc_jax.core._points import resolve_points

RTOL, ATOL = 0.0, 4e-16  # float64 only: the points are NumPy float64 by design


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 33, 128])
def test_chebyshev_first_kind_matches_formula(n):
    pts = lc.chebyshev_first(n)
    expected = np.sort(np.cos((2 * np.arange(1, n + 1) - 1) * np.pi / (2 * n)))
    assert pts.dtype == np.float64 and pts.shape == (n,)
    np.testing.assert_allclose(pts, expected, rtol=RTOL, atol=ATOL)
    assert np.all(np.diff(pts) > 0)
    assert np.all(np.abs(pts) < 1.0)
    np.testing.assert_array_equal(pts, -pts[::-1])  # exactly symmetric
    if n % 2:
        assert pts[n // 2] == 0.0


@pytest.mark.parametrize("n", [2, 3, 4, 7, 10, 33, 128])
def test_chebyshev_second_kind_matches_formula(n):
    pts = lc.chebyshev_second(n)
    expected = np.sort(np.cos(np.arange(n) * np.pi / (n - 1)))
    assert pts.dtype == np.float64 and pts.shape == (n,)
    np.testing.assert_allclose(pts, expected, rtol=RTOL, atol=ATOL)
    assert pts[0] == -1.0 and pts[-1] == 1.0
    assert np.all(np.diff(pts) > 0)
    np.testing.assert_array_equal(pts, -pts[::-1])
    if n % 2:
        assert pts[n // 2] == 0.0


@pytest.mark.parametrize("n", [2, 3, 11])
def test_equispaced(n):
    pts = lc.equispaced(n)
    np.testing.assert_allclose(pts, -1.0 + 2.0 * np.arange(n) / (n - 1), rtol=RTOL, atol=ATOL)
    assert pts[0] == -1.0 and pts[-1] == 1.0


def test_resolve_points_conventions():
    alpha, beta = resolve_points("chebyshev", 5, 9)
    np.testing.assert_array_equal(alpha, lc.chebyshev_first(5))
    np.testing.assert_array_equal(beta, lc.chebyshev_second(9))
    alpha, beta = resolve_points("equispaced", 4, 6)
    np.testing.assert_allclose(alpha, [-0.75, -0.25, 0.25, 0.75], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(beta, lc.equispaced(6))
    alpha, beta = resolve_points(([-0.5, 0.5], [-1.0, 0.0, 1.0]), 2, 3)
    np.testing.assert_array_equal(alpha, [-0.5, 0.5])
    np.testing.assert_array_equal(beta, [-1.0, 0.0, 1.0])


def test_schemes_use_the_resolved_points():
    scheme = lc.letcc(4, 7, points="equispaced")
    np.testing.assert_allclose(np.asarray(scheme.alpha), [-0.75, -0.25, 0.25, 0.75],
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(np.asarray(scheme.beta), lc.equispaced(7))
    custom = lc.bacc(2, 3, points=([-0.3, 0.4], [-1.0, 0.1, 0.9]))
    np.testing.assert_array_equal(np.asarray(custom.beta), [-1.0, 0.1, 0.9])


@pytest.mark.parametrize(
    "points, match",
    [
        ("chebychev", "not known"),
        (([0.5, -0.5], [-1.0, 0.0, 1.0]), "strictly increasing"),
        (([-0.5, -0.5], [-1.0, 0.0, 1.0]), "strictly increasing"),
        (([-0.5, 0.5, 0.7], [-1.0, 0.0, 1.0]), r"alpha must have shape \(K,\)"),
        (([-0.5, 0.5], [-1.0, 1.0]), r"beta must have shape \(N,\)"),
        (([-0.5, np.nan], [-1.0, 0.0, 1.0]), "non-finite"),
        (([-0.5, 0.5], [-1.0, 0.0, np.inf]), "non-finite"),
        (np.zeros(3), "must be 'chebyshev'"),
    ],
)
def test_bad_points_raise(points, match):
    with pytest.raises(ValueError, match=match):
        resolve_points(points, 2, 3)
    with pytest.raises(ValueError, match=match):
        lc.letcc(2, 3, points=points)


@pytest.mark.parametrize(
    "fn, n, err",
    [
        (lc.chebyshev_first, 0, ValueError),
        (lc.chebyshev_second, 1, ValueError),
        (lc.equispaced, 1, ValueError),
        (lc.chebyshev_first, 2.0, TypeError),
        (lc.chebyshev_second, True, TypeError),
    ],
)
def test_bad_counts_raise(fn, n, err):
    with pytest.raises(err, match="n must be"):
        fn(n)
