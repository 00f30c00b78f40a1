"""Split-conformal calibration of LeTCC's standard errors: the quantile rule against a NumPy
reference, the conformal coverage guarantee on synthetic exchangeable scores, and
``calibrate`` end to end on held-out rounds."""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import compilations

import letcc_jax as lc
from letcc_jax.sim._calibrate import conformal_rank, level_arrays


def reference_quantiles(estimate, std, truth, levels, per_column=False):
    """The conformal quantiles in float64 NumPy: per column (or pooled), the sorted scores
    |estimate - truth| / std of the finite-std entries, and the ceil((n + 1) q)-th of them
    with the rank computed exactly from the level's decimal (inf beyond n)."""
    estimate, std, truth = (np.asarray(a, np.float64) for a in (estimate, std, truth))
    truth = np.broadcast_to(truth, estimate.shape)
    m = estimate.shape[-1] if per_column else 1
    columns = []
    for c in range(m):
        take = (slice(None),) * (estimate.ndim - 1) + (c,) if per_column else ...
        e, s, t = estimate[take].ravel(), std[take].ravel(), truth[take].ravel()
        finite = np.isfinite(s)
        scores = np.sort(np.abs(e[finite] - t[finite]) / s[finite])
        n = scores.size
        row = []
        for q in levels:
            rank = math.ceil(Fraction(repr(q)) * (n + 1))
            row.append(scores[rank - 1] if rank <= n else np.inf)
        columns.append(row)
    out = np.array(columns).T  # (L, m)
    return out if per_column else out[:, 0]


# Decimal levels where (n + 1) q is an integer for n + 1 = 100 (0.07 * 100 rounds above 7
# in binary), a random one, and one whose rank exceeds n.
LEVELS = (0.07, 0.5, 0.8, 0.95, 0.6180339887, 0.995)


@pytest.mark.parametrize("per_column", [False, True])
def test_conformal_quantiles_match_a_numpy_reference(rng, dtype, per_column):
    shape = (11, 3, 3)  # (T, K, m): 99 entries
    estimate = rng.standard_normal(shape)
    truth = rng.standard_normal(shape[1:])  # one truth for every round
    std = rng.uniform(0.1, 2.0, shape)
    std.reshape(-1)[rng.choice(std.size, 12, replace=False)] = np.inf
    std.reshape(-1)[rng.choice(std.size, 3, replace=False)] = np.nan
    args = [np.asarray(a, dtype) for a in (estimate, std, truth)]
    got = lc.conformal_quantiles(*[jnp.asarray(a) for a in args], levels=LEVELS,
                                 per_column=per_column)
    want = reference_quantiles(*args, LEVELS, per_column)
    assert got.dtype == dtype and got.shape == want.shape
    assert np.array_equal(np.isinf(np.asarray(got)), np.isinf(want))
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=0)


def test_conformal_quantile_ranks_when_n_plus_one_is_100(dtype):
    """n = 99 scores 1..99: the quantile at q is exactly the score of rank 100 q."""
    scores = jnp.arange(1.0, 100.0, dtype=dtype)[:, None]
    got = lc.conformal_quantiles(scores, jnp.ones_like(scores), jnp.zeros_like(scores),
                                 levels=(0.07, 0.29, 0.57, 0.8, 0.95, 0.99, 0.995))
    np.testing.assert_array_equal(np.asarray(got), [7, 29, 57, 80, 95, 99, np.inf])


def test_decimal_levels_are_ranked_exactly_in_32_bits():
    """Without float64 (JAX's default) the ranks of decimal levels are still exact: the
    rule runs in int32 on their fractions (float32 products are off by one from n ~ 1e4)."""
    levels = (0.07, 0.29, 0.57, 0.8, 0.95, 0.995, 0.9999)
    n = np.arange(0, 50_000, 17)
    q, p, d = level_arrays(levels)
    ranks = np.asarray(conformal_rank(jnp.asarray(n, jnp.int32), q.astype(jnp.float32), p, d))
    exact = [[math.ceil(Fraction(repr(level)) * (k + 1)) for k in n] for level in levels]
    np.testing.assert_array_equal(ranks, exact)


def test_exact_estimates_with_zero_std_score_zero_and_misses_score_inf():
    estimate = jnp.array([[0.0, 1.0, 2.0, 3.0]])
    std = jnp.array([[0.0, 0.0, 1.0, jnp.inf]])
    truth = jnp.array([[0.0, 1.5, 2.5, 0.0]])  # scores 0, inf, 0.5 and one left out
    got = lc.conformal_quantiles(estimate, std, truth, levels=(0.25, 0.5, 0.7))
    np.testing.assert_array_equal(np.asarray(got), [0.0, 0.5, np.inf])


def test_conformal_guarantee_on_exchangeable_scores(rng):
    """Split conformal: with n calibration scores and a test score drawn iid, the test
    score is within the quantile with probability exactly r / (n + 1), r = ceil((n + 1)
    q), which lies in [q, q + 1 / (n + 1)). Each repetition's coverage of its n_test test
    scores is, given the quantile, binomial, and the quantile's coverage is Beta(r, n + 1
    - r): the average over R repetitions has variance at most (beta_var + 1 / (4 n_test))
    / R, and is checked within 4 of those standard errors. The scores are heavy-tailed
    errors over random standard errors: only exchangeability matters."""
    R, n, n_test, levels = 4000, 50, 50, (0.8, 0.9)
    std = rng.uniform(0.5, 2.0, (R, n + n_test))
    errors = std * rng.standard_t(3, (R, n + n_test))
    cal = jax.vmap(lambda e, s: lc.conformal_quantiles(e[:, None], s[:, None],
                                                       jnp.zeros((n, 1)), levels=levels))
    quantiles = np.asarray(cal(jnp.asarray(errors[:, :n]), jnp.asarray(std[:, :n])))  # (R, L)
    test_scores = np.abs(errors[:, n:]) / std[:, n:]
    for i, q in enumerate(levels):
        per_rep = np.mean(test_scores <= quantiles[:, i:i + 1], axis=1)
        r = math.ceil((n + 1) * q)
        beta_var = r * (n + 1 - r) / ((n + 1) ** 2 * (n + 2))
        margin = 4 * math.sqrt((beta_var + 0.25 / n_test) / R)
        assert q - margin <= per_rep.mean() <= q + 1 / (n + 1) + margin
        assert abs(per_rep.mean() - r / (n + 1)) <= margin


# ------------------------------------------------------------------- end to end

K, N, S = 8, 24, 4
BATCHES, TRIALS = 128, 16


def smooth(x):
    return jnp.sin(x)


@pytest.fixture(scope="module")
def setting():
    """A calibration on random-order inputs and held-out rounds on other inputs and keys.
    Compiled once for both (same f, scheme, models and shapes)."""
    rng = np.random.default_rng(20261207)
    X_cal, X_test = (jnp.asarray(rng.standard_normal((BATCHES, K, 2))) for _ in range(2))
    scheme, stragglers = lc.letcc(K, N), lc.ExactStragglers(S)
    cal = lc.calibrate(smooth, scheme, X_cal, jax.random.key(0), stragglers=stragglers,
                       trials=TRIALS, levels=(0.8, 0.95))
    post, truth = lc.posterior_rounds(smooth, scheme, X_test, jax.random.key(1),
                                      stragglers=stragglers, trials=TRIALS)
    return scheme, stragglers, X_cal, cal, post, truth


def test_calibrated_intervals_cover_held_out_rounds_at_their_level(setting):
    """Coverage on held-out rounds within 4 standard errors of the level. Entries of a
    round, and rounds of one batch of inputs, are correlated; the batches are independent,
    so a standard error counts batches: the held-out coverage is the mean of the B
    per-batch coverages (sd s), and the calibration's empirical distribution of scores,
    a mean of B per-batch distributions, places its quantile with the same spread, so
    se = s sqrt(2 / B) (s is measured: 0.06 at q = 0.8, 0.03 at q = 0.95)."""
    _, _, _, cal, post, truth = setting
    assert post.estimate.shape == post.std.shape == truth.shape == (BATCHES, TRIALS, K, 2)
    assert int(cal.count) == BATCHES * TRIALS * K * 2  # every input recovered, std finite
    print()
    for i, q in enumerate(cal.levels):
        lower, upper = cal.interval(post, q)
        inside = (np.asarray(lower) <= np.asarray(truth)) & (np.asarray(truth) <= np.asarray(upper))
        per_batch = inside.mean(axis=(1, 2, 3))
        after = float(lc.coverage((lower, upper), truth))
        before = float(lc.coverage(cal.interval(post, q, calibrated=False), truth))
        margin = 4 * per_batch.std(ddof=1) * math.sqrt(2 / BATCHES)
        print(f"level {q}: uncalibrated {before:.3f} (on the calibration rounds "
              f"{float(cal.uncalibrated_coverage[i]):.3f}), calibrated {after:.3f} "
              f"(margin {margin:.3f})")
        np.testing.assert_allclose(after, per_batch.mean(), rtol=1e-12, atol=0)
        assert abs(after - q) <= margin, (after, margin)
        # sin along a random-order encoder curve is smoother than LeTCC's prior says:
        # the Gaussian intervals over-cover (measured 0.97 and 0.99), on both sets alike.
        assert before - q > margin
        assert abs(before - float(cal.uncalibrated_coverage[i])) <= 2 * margin


def test_calibration_scales_the_standard_errors(setting):
    _, _, _, cal, post, _ = setting
    assert cal.quantiles.shape == (2,) and cal.uncalibrated_coverage.shape == (2,)
    assert 0 < float(cal.quantile(0.8)) < float(cal.quantile(0.95))
    np.testing.assert_allclose(np.asarray(cal.half_width(post, 0.95)),
                               float(cal.quantile(0.95)) * np.asarray(post.std), rtol=1e-12)
    lower, upper = cal.interval(post, 0.8)
    np.testing.assert_allclose(np.asarray(upper + lower) / 2, np.asarray(post.estimate),
                               rtol=1e-12, atol=1e-12)
    gauss_lower, _ = cal.interval(post, 0.95, calibrated=False)
    np.testing.assert_allclose(np.asarray(post.estimate - gauss_lower),
                               1.959963984540054 * np.asarray(post.std), rtol=1e-12)
    # the calibration is the conformal quantile of the same rounds' scores (same keys)
    scheme, stragglers, X_cal, _, _, _ = setting
    rounds, truth = lc.posterior_rounds(smooth, scheme, X_cal, jax.random.key(0),
                                        stragglers=stragglers, trials=TRIALS)
    np.testing.assert_allclose(np.asarray(cal.quantiles),
                               reference_quantiles(rounds.estimate, rounds.std, truth,
                                                   cal.levels), rtol=1e-12)


def test_calibrate_and_posterior_rounds_compile_once(setting):
    scheme, stragglers, X_cal, _, _, _ = setting

    def held_out(seed):
        key = jax.random.key(seed)
        cal = lc.calibrate(smooth, scheme, X_cal, key, stragglers=stragglers, trials=TRIALS,
                           levels=(0.8, 0.95))
        post, truth = lc.posterior_rounds(smooth, scheme, X_cal, key, stragglers=stragglers,
                                          trials=TRIALS)
        return [float(lc.coverage(cal.interval(post, 0.95, calibrated=c), truth))
                for c in (True, False)]

    first = held_out(4)
    with compilations() as count:
        second, third = held_out(5), held_out(6)
    assert count() == 0
    assert first != second != third  # new keys, new rounds


def test_calibration_is_a_pytree_that_passes_through_jit(setting):
    _, _, _, cal, post, _ = setting
    width = jax.jit(lambda c, p: c.half_width(p, 0.95))(cal, post)
    np.testing.assert_allclose(np.asarray(width), np.asarray(cal.half_width(post, 0.95)),
                               rtol=1e-12)


def test_per_column_calibration(setting):
    scheme, stragglers, X_cal, _, _, _ = setting
    cal = lc.calibrate(smooth, scheme, X_cal, jax.random.key(0), stragglers=stragglers,
                       trials=TRIALS, levels=(0.8,), per_column=True)
    post, truth = lc.posterior_rounds(smooth, scheme, X_cal, jax.random.key(0),
                                      stragglers=stragglers, trials=TRIALS)
    assert cal.quantiles.shape == (1, 2)
    np.testing.assert_allclose(
        np.asarray(cal.quantiles),
        reference_quantiles(post.estimate, post.std, truth, (0.8,), per_column=True),
        rtol=1e-12)
    with pytest.raises(ValueError, match="per output column, for m = 2"):
        cal.half_width(lc.Posterior(post.estimate[..., :1], post.std[..., :1],
                                    post.scale[..., :1], post.power), 0.8)


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize("levels", [(0.0, 0.9), (0.5, 1.0), (1.5,), (), (0.9, 0.9), (np.nan,)])
def test_bad_levels_are_rejected(levels):
    ones = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="levels"):
        lc.conformal_quantiles(ones, ones, ones, levels=levels)
    with pytest.raises(ValueError, match="levels"):
        lc.calibrate(smooth, lc.letcc(K, N), jnp.ones((K, 2)), jax.random.key(0),
                     stragglers=lc.ExactStragglers(S), levels=levels)
    with pytest.raises(TypeError, match="levels"):
        lc.conformal_quantiles(ones, ones, ones, levels="0.9")


@pytest.mark.parametrize("trials", [0, -3, 2.5, True, None])
def test_bad_trials_are_rejected(trials):
    with pytest.raises(ValueError, match="trials must be a positive int"):
        lc.calibrate(smooth, lc.letcc(K, N), jnp.ones((K, 2)), jax.random.key(0),
                     stragglers=lc.ExactStragglers(S), trials=trials)


@pytest.mark.parametrize("scheme", [lc.bacc(K, N), lc.uncoded(K, N), "letcc"])
def test_a_scheme_without_standard_errors_is_rejected(scheme):
    for entry in (lc.calibrate, lc.posterior_rounds):
        with pytest.raises(TypeError, match="LeTCC scheme"):
            entry(smooth, scheme, jnp.ones((K, 2)), jax.random.key(0),
                  stragglers=lc.ExactStragglers(S))


def test_bad_shapes_values_and_levels_of_a_calibration_are_rejected():
    ones = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="one non-empty shape"):
        lc.conformal_quantiles(ones, jnp.ones((4, 3)), ones)
    with pytest.raises(ValueError, match="truth must have"):
        lc.conformal_quantiles(ones, ones, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="std must be >= 0"):
        lc.conformal_quantiles(ones, -ones, ones)
    with pytest.raises(ValueError, match="finite wherever std is finite"):
        lc.conformal_quantiles(ones.at[0, 0].set(jnp.nan), ones, ones)
    with pytest.raises(ValueError, match="X_cal must have shape"):
        lc.calibrate(smooth, lc.letcc(K, N), jnp.ones((K + 1, 2)), jax.random.key(0),
                     stragglers=lc.ExactStragglers(S))
    with pytest.raises(ValueError, match="no interval has finite bounds"):
        lc.coverage((jnp.full(3, -jnp.inf), jnp.full(3, jnp.inf)), jnp.zeros(3))
    cal = lc.Calibration((0.8,), jnp.array([1.0]), jnp.array([0.9]), jnp.array(10))
    post = lc.Posterior(jnp.zeros((K, 1)), jnp.ones((K, 1)), jnp.ones(1), jnp.ones(K))
    with pytest.raises(ValueError, match=r"level 0.9 was not calibrated.*\[0.8\]"):
        cal.interval(post, 0.9)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        cal.interval(post, 1.2, calibrated=False)
    with pytest.raises(TypeError, match="Posterior"):
        cal.interval(np.ones(3), 0.8)


def test_a_calibration_without_finite_scores_or_enough_of_them_raises(setting):
    """Two survivors of 24 leave the scale unknown (std inf everywhere): an error, not a
    NaN; a level too high for the number of scores: an error, not an infinite width.
    (The setting's shapes, so that nothing compiles again.)"""
    scheme, _, X_cal, _, _, _ = setting
    with pytest.raises(ValueError, match="no calibration round gave a finite standard error"):
        lc.calibrate(smooth, scheme, X_cal, jax.random.key(0),
                     stragglers=lc.ExactStragglers(N - 2), trials=TRIALS)
    with pytest.raises(ValueError, match=r"levels \[0.99999\] is infinite: 32768 finite"):
        lc.calibrate(smooth, scheme, X_cal, jax.random.key(0), stragglers=lc.ExactStragglers(S),
                     trials=TRIALS, levels=(0.5, 0.99999))


def test_posterior_rounds_of_a_sweep_are_the_rounds_of_each_point():
    """lam_dec and S swept together (a 2 x 2 grid): every point's rounds are those of its
    own call, on the same keys; calibrate asks for one setting and says how to sweep."""
    rng = np.random.default_rng(3)
    X = jnp.asarray(rng.standard_normal((K, 2)))
    lams, counts = jnp.array([[0.0], [1e-3]]), jnp.array([2, S])
    scheme, stragglers = lc.letcc(K, N).replace(lam_dec=lams), lc.ExactStragglers(counts)
    post, truth = lc.posterior_rounds(smooth, scheme, X, jax.random.key(7),
                                      stragglers=stragglers, trials=4)
    assert post.std.shape == truth.shape == (2, 2, 4, K, 2) and post.power.shape == (2, 2, 4, K)
    for i in range(2):
        for j in range(2):
            alone, alone_truth = lc.posterior_rounds(
                smooth, lc.letcc(K, N, lam_dec=float(lams[i, 0])), X, jax.random.key(7),
                stragglers=lc.ExactStragglers(int(counts[j])), trials=4)
            for got, want in zip(jax.tree.leaves(post), jax.tree.leaves(alone)):
                np.testing.assert_allclose(np.asarray(got[i, j]), np.asarray(want),
                                           rtol=1e-12, atol=1e-14)
            np.testing.assert_array_equal(np.asarray(truth[i, j]), np.asarray(alone_truth))
    with pytest.raises(ValueError, match="swept over .*posterior_rounds.*from_rounds"):
        lc.calibrate(smooth, scheme, X, jax.random.key(0), stragglers=stragglers, trials=4)
