"""Latency against accuracy: service-time laws for injected delays, replaying a round under
deadlines (against an independent float64 NumPy/SciPy reference, and on hand-computed
cases), and the experiment at smoke size on a real Dask cluster."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from compiles import compilations
from scipy import stats

import letcc_jax as lc
from letcc_jax import workers


def _delays(faults: workers.WorkerFaults, N: int) -> np.ndarray:
    assert sorted(faults.delay) == list(range(N))
    return np.array([faults.delay[n] for n in range(N)])


# ------------------------------------------------------------- service-time laws


def test_shifted_exponential_matches_its_law():
    shift, rate, N = 0.02, 50.0, 20_000
    d = _delays(workers.WorkerFaults.shifted_exponential(N, shift, rate, seed=1), N)
    assert d.min() >= shift
    law = stats.expon(loc=shift, scale=1.0 / rate)
    # 5 standard errors of the sample mean and of the sample variance
    np.testing.assert_allclose(d.mean(), law.mean(), rtol=0, atol=5 * law.std() / math.sqrt(N))
    np.testing.assert_allclose(d.var(), law.var(), rtol=5 * math.sqrt(8 / N), atol=0)
    assert stats.kstest(d, law.cdf).pvalue > 1e-3


@pytest.mark.parametrize("shape", [1.5, 3.0])
def test_pareto_matches_its_law(shape):
    scale, N = 0.01, 20_000
    d = _delays(workers.WorkerFaults.pareto(N, scale, shape, seed=2), N)
    assert d.min() >= scale
    law = stats.pareto(b=shape, scale=scale)
    for q in (0.5, 0.9, 0.99):  # quantiles exist for every shape; the mean only for shape > 1
        expected = scale * (1 - q) ** (-1 / shape)
        np.testing.assert_allclose(law.ppf(q), expected, rtol=1e-12, atol=0)
        # standard error of a sample quantile: sqrt(q (1 - q) / N) / density
        se = math.sqrt(q * (1 - q) / N) / law.pdf(expected)
        np.testing.assert_allclose(np.quantile(d, q), expected, rtol=0, atol=5 * se)
    if shape > 2:  # finite variance: the sample mean is within a few standard errors
        np.testing.assert_allclose(d.mean(), shape * scale / (shape - 1), rtol=0,
                                   atol=5 * law.std() / math.sqrt(N))
    assert stats.kstest(d, law.cdf).pvalue > 1e-3


@pytest.mark.parametrize("law, args", [("shifted_exponential", (0.02, 50.0)),
                                       ("pareto", (0.01, 1.5))])
def test_delay_draws_are_seeded(law, args):
    draw = getattr(workers.WorkerFaults, law)
    assert draw(16, *args, seed=3) == draw(16, *args, seed=3)
    assert draw(16, *args, seed=3) != draw(16, *args, seed=4)
    a = draw(16, *args, seed=np.random.default_rng(5))
    assert a == draw(16, *args, seed=np.random.default_rng(5))
    assert draw(np.int64(4), *(np.float32(v) for v in args)).delay.keys() == {0, 1, 2, 3}


@pytest.mark.parametrize("call, error, match", [
    (lambda: workers.WorkerFaults.shifted_exponential(0, 0.1, 1.0), ValueError, "N must be an int >= 1"),
    (lambda: workers.WorkerFaults.shifted_exponential(2.5, 0.1, 1.0), ValueError, "N must be an int"),
    (lambda: workers.WorkerFaults.shifted_exponential(4, -0.1, 1.0), ValueError,
     "shift must be finite seconds >= 0"),
    (lambda: workers.WorkerFaults.shifted_exponential(4, 0.1, 0.0), ValueError,
     "rate must be finite and > 0"),
    (lambda: workers.WorkerFaults.shifted_exponential(4, 0.1, math.inf), ValueError, "rate must be"),
    (lambda: workers.WorkerFaults.shifted_exponential(4, 0.1, True), TypeError,
     "rate must be a real number"),
    (lambda: workers.WorkerFaults.shifted_exponential(4, 0.1, 1.0, seed="x"), TypeError,
     "shifted_exponential: seed must be an int"),
    (lambda: workers.WorkerFaults.pareto(-1, 0.1, 2.0), ValueError, "pareto: N must be an int >= 1"),
    (lambda: workers.WorkerFaults.pareto(4, 0.0, 2.0), ValueError, "scale must be finite seconds > 0"),
    (lambda: workers.WorkerFaults.pareto(4, 0.1, -1.0), ValueError, "shape must be finite and > 0"),
    (lambda: workers.WorkerFaults.pareto(4, 0.1, math.nan), ValueError, "shape must be"),
    (lambda: workers.WorkerFaults.pareto(4, "0.1", 2.0), TypeError, "scale must be a real number"),
    (lambda: workers.WorkerFaults.pareto(4, 0.1, 2.0, seed=1.5), TypeError, "pareto: seed must be"),
])
def test_delay_laws_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------- replay against a float64 reference

K, N, M = 5, 14, 3


def _chebyshev(K, N):
    """Independent copies of the default points: Chebyshev first kind (data), second kind
    (workers), ascending."""
    alpha = np.sort(np.cos((2 * np.arange(1, K + 1) - 1) * np.pi / (2 * K)))
    beta = np.sort(np.cos(np.arange(N) * np.pi / (N - 1)))
    return alpha, beta


def _round(rng, dtype, n_workers=N, m=M):
    """A WorkerResult by hand: random outputs and arrival times, two workers that never
    answered (NaN) and one that answered NaN (answered, not used)."""
    outputs = rng.standard_normal((n_workers, m)).astype(dtype)
    arrival = rng.uniform(0.01, 1.0, n_workers)
    arrival[[3, 9]] = np.nan
    outputs[[3, 9]] = np.nan
    outputs[6] = np.nan
    used = np.isfinite(arrival) & np.all(np.isfinite(outputs), axis=1)
    nan = np.full(n_workers, np.nan)
    timings = workers.Timings(0.0, 1.0, 0.0, 1.0, arrival, nan)
    return workers.WorkerResult(np.zeros((K, m), dtype), used, np.isfinite(arrival), outputs, {},
                                timings, "hand")


def _reference(name, lam, result, deadlines):
    """(latency (D,), estimate (D, K, m), recovered (D, K)) in float64, written out from the
    definitions."""
    alpha, beta = _chebyshev(K, N)
    Y = np.asarray(result.outputs, np.float64)
    arrival = result.timings.arrival_s
    last = np.nanmax(arrival)
    lat, est, rec = [], [], []
    for t in deadlines:
        alive = np.array([bool(result.used[n]) and arrival[n] <= t for n in range(N)])
        lat.append(min(t, last))
        if alive.sum() < 2:
            est.append(np.zeros((K, M)))
            rec.append(np.zeros(K, bool))
            continue
        if name == "letcc":
            est.append(ref.natural_smoothing_spline(beta, Y, alive, lam, alpha))
        else:
            est.append(ref.berrut(beta[alive], Y[alive], alpha))
        rec.append(np.ones(K, bool))
    return np.array(lat), np.array(est), np.array(rec)


TOL = {np.float32: {"rtol": 1e-4, "atol": 1e-4}, np.float64: {"rtol": 1e-9, "atol": 1e-10}}


@pytest.mark.parametrize("name, lam", [("letcc", 0.0), ("letcc", 1e-3), ("bacc", None)])
def test_deadline_replay_matches_the_reference(name, lam, dtype, rng):
    scheme = lc.letcc(K, N, lam_dec=lam) if name == "letcc" else lc.bacc(K, N)
    _, beta = _chebyshev(K, N)
    np.testing.assert_allclose(np.asarray(scheme.beta, np.float64), beta, rtol=0, atol=1e-15)
    result = _round(rng, dtype)
    arrival = result.timings.arrival_s
    # nobody, one worker, a tie with an arrival, most, and no deadline
    order = np.sort(arrival[result.used])
    deadlines = [order[0] / 2, (order[0] + order[1]) / 2, order[4], order[-2], math.inf]
    got = workers.decode_at_deadlines(scheme, result, deadlines)
    lat, est, rec = _reference(name, lam, result, deadlines)
    assert got.estimate.dtype == dtype and got.estimate.shape == (5, K, M)
    np.testing.assert_allclose(got.deadline_s, deadlines, rtol=0, atol=0)
    np.testing.assert_allclose(got.latency_s, lat, rtol=0, atol=0)
    np.testing.assert_array_equal(got.recovered, rec)
    np.testing.assert_array_equal(got.used.sum(axis=1), [0, 1, 5, order.size - 1, order.size])
    np.testing.assert_allclose(got.estimate, est, **TOL[dtype])


def test_first_replica_replay_matches_the_reference(dtype, rng):
    scheme = lc.uncoded(K, N)
    result = _round(rng, dtype)
    arrival = result.timings.arrival_s
    deadlines = np.concatenate([np.sort(arrival[result.used]), [math.inf]])
    got = workers.decode_at_deadlines(scheme, result, deadlines, policy="first_replica")
    Y = np.asarray(result.outputs, np.float64)
    owners = np.arange(N) % K
    firsts = [min((n for n in range(N) if owners[n] == k and result.used[n]),
                  key=lambda n: arrival[n]) for k in range(K)]
    covered = max(arrival[n] for n in firsts)
    for d, t in enumerate(deadlines):
        np.testing.assert_allclose(got.latency_s[d], min(t, covered), rtol=0, atol=0)
        want = np.zeros((K, M))
        for k, n in enumerate(firsts):
            if arrival[n] <= t:
                want[k] = Y[n]
        np.testing.assert_array_equal(got.recovered[d], [arrival[n] <= t for n in firsts])
        np.testing.assert_array_equal(np.flatnonzero(got.used[d]),
                                      sorted(n for n in firsts if arrival[n] <= t))
        # one replica per input: copied, not averaged
        np.testing.assert_allclose(got.estimate[d], want, rtol=0, atol=0)


def test_new_deadlines_and_arrivals_compile_nothing(rng):
    scheme = lc.bacc(K, N)
    workers.decode_at_deadlines(scheme, _round(rng, np.float32), [0.2, 0.5, math.inf])
    with compilations() as count:
        for _ in range(3):
            workers.decode_at_deadlines(scheme, _round(rng, np.float32),
                                        rng.uniform(0.05, 2.0, 3))
    assert count() == 0


# ------------------------------------------------------------ hand-computed policies


def _hand(arrival, used, n_workers, m=1):
    arrival = np.asarray(arrival, np.float64)
    outputs = np.arange(n_workers * m, dtype=np.float64).reshape(n_workers, m) + 1.0
    outputs[~np.asarray(used)] = np.nan
    timings = workers.Timings(0.0, 1.0, 0.0, 1.0, arrival, np.full(n_workers, np.nan))
    return workers.WorkerResult(np.zeros((2, m)), np.asarray(used), np.isfinite(arrival),
                                outputs, {}, timings, "hand")


def test_deadline_policy_ends_at_the_deadline_or_the_last_arrival():
    # worker 2 never answered; worker 3's answer came last and was unusable (NaN)
    result = _hand([0.1, 0.3, np.nan, 0.9, 0.2], [True, True, False, False, True], 5)
    got = workers.decode_at_deadlines(lc.bacc(2, 5), result, [0.05, 0.25, 0.3, 1.0, math.inf])
    np.testing.assert_allclose(got.latency_s, [0.05, 0.25, 0.3, 0.9, 0.9], rtol=0, atol=0)
    np.testing.assert_array_equal(got.used.sum(axis=1), [0, 2, 3, 3, 3])
    np.testing.assert_array_equal(got.recovered.all(axis=1), [False, True, True, True, True])
    np.testing.assert_array_equal(got.estimate[0], np.zeros((2, 1)))  # lost: estimated as 0


def test_first_replica_policy_stops_once_every_input_has_a_replica():
    # K = 2: input 0 on workers 0, 2, 4; input 1 on workers 1, 3, 5
    result = _hand([0.5, 0.1, 0.2, 0.4, np.nan, 0.05], [True, True, True, True, False, True], 6)
    got = workers.decode_at_deadlines(lc.uncoded(2, 6), result, [0.01, 0.1, 0.3, math.inf],
                                      policy="first_replica")
    np.testing.assert_allclose(got.latency_s, [0.01, 0.1, 0.2, 0.2], rtol=0, atol=0)
    np.testing.assert_array_equal(got.used, [[False] * 6,
                                             [False] * 5 + [True],
                                             [False, False, True, False, False, True],
                                             [False, False, True, False, False, True]])
    np.testing.assert_array_equal(got.recovered, [[False, False], [False, True], [True, True],
                                                  [True, True]])
    np.testing.assert_array_equal(got.estimate[:, :, 0], [[0, 0], [0, 6], [3, 6], [3, 6]])
    # wait-for-all: the same round without an early stop waits for worker 0 and averages
    everyone = workers.decode_at_deadlines(lc.uncoded(2, 6), result, [math.inf])
    np.testing.assert_allclose(everyone.latency_s, [0.5], rtol=0, atol=0)
    np.testing.assert_allclose(everyone.estimate[0, :, 0], [(1 + 3) / 2, (2 + 4 + 6) / 3],
                               rtol=1e-15, atol=0)


def test_first_replica_policy_without_a_replica_waits_until_the_last_arrival():
    # no replica of input 0 (workers 0 and 2) is usable; the round ends with the last answer
    result = _hand([0.3, 0.1, 0.6, 0.2], [False, True, False, True], 4)
    got = workers.decode_at_deadlines(lc.uncoded(2, 4), result, [0.4, math.inf],
                                      policy="first_replica")
    np.testing.assert_allclose(got.latency_s, [0.4, 0.6], rtol=0, atol=0)
    np.testing.assert_array_equal(got.recovered, [[False, True], [False, True]])
    np.testing.assert_array_equal(got.estimate[:, :, 0], [[0, 2], [0, 2]])


@pytest.mark.parametrize("call, error, match", [
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r, [1.0], policy="fastest"),
     ValueError, "unknown policy 'fastest'"),
    (lambda r: workers.decode_at_deadlines(lc.letcc(2, 5), r, [1.0], policy="first_replica"),
     ValueError, "only replication"),
    (lambda r: workers.decode_at_deadlines(
        lc.letcc(2, 5).replace(lam_dec=np.array([0.0, 1e-3], np.float32)), r, [1.0]),
     ValueError, "is a sweep"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r, []), ValueError, "non-empty"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r, [[1.0]]), ValueError, "1-D"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r, [0.0]), ValueError, "> 0"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r, [math.nan]), ValueError, "> 0"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r, ["soon"]), TypeError, "seconds"),
    (lambda r: workers.decode_at_deadlines("bacc", r, [1.0]), TypeError, "letcc_jax scheme"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r.outputs, [1.0]), TypeError,
     "WorkerResult"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 6), r, [1.0]), ValueError,
     r"result.outputs must have shape \(N, features\) = \(6, ...\)"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r._replace(used=np.ones(5, bool)),
                                           [1.0]), ValueError, r"worker\(s\) \[2\] are marked used but have no arrival time"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r._replace(
        timings=r.timings._replace(arrival_s=np.full(5, np.nan)), used=np.zeros(5, bool)),
        [1.0]), ValueError, "no worker answered"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r._replace(
        timings=r.timings._replace(arrival_s=-r.timings.arrival_s)), [1.0]), ValueError,
     "seconds >= 0"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r._replace(
        timings=r.timings._replace(arrival_s=np.zeros(4))), [1.0]), ValueError,
     r"arrival_s must be \(N,\) = \(5,\) seconds"),
    (lambda r: workers.decode_at_deadlines(lc.bacc(2, 5), r._replace(used=np.ones(5)), [1.0]),
     TypeError, "result.used must be boolean"),
])
def test_replay_rejects_bad_input(call, error, match):
    result = _hand([0.1, 0.3, np.nan, 0.9, 0.2], [True, True, False, False, True], 5)
    with pytest.raises(error, match=match):
        call(result)


# ------------------------------------------------------------------ the experiment


def test_latency_configs_are_hashable_and_checked():
    from experiments import latency

    for config in latency.LATENCY.values():
        assert hash(config) == hash(dataclasses.replace(config))
    with pytest.raises(ValueError, match="unknown service-time law"):
        dataclasses.replace(latency.LATENCY["smoke"], distributions=(("weibull", 1.0, 1.0),))


@pytest.mark.timeout(120)
def test_latency_smoke(tmp_path):
    from experiments import latency

    rows = latency.main(["--smoke", "--untrained", "--out", str(tmp_path)])
    out = tmp_path / "latency" / "smoke"
    for name in ("results.json", "results.csv", "table.md", "latency_frontier.png"):
        assert (out / name).stat().st_size > 0, name
    written = json.loads((out / "results.json").read_text())
    assert written["config"]["name"] == "smoke" and written["rows"] == json.loads(
        json.dumps(rows, default=float))
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    config = latency.LATENCY["smoke"]
    D = len(config.deadline_quantiles) + 1
    stopping = [r for r in rows if r["scheme"] == "letcc_tolerance"]
    tolerances = {key: cal["tolerances"] for key, cal in written["calibration"].items()}
    assert len(rows) - len(stopping) == (len(config.functions) * len(config.distributions)
                                         * (3 * D + 1))
    assert len(stopping) == sum(len(t) for t in tolerances.values()) > 0
    for r in stopping:  # the rule stops by the last arrival, never later than waiting for all
        assert 0 <= r["met_share"] <= 1 and 0 <= r["promise_kept"] <= 1
        assert r["tolerance"] in tolerances[f"{r['function']}/{r['law']}"]
    for key, runs in written["per_round"].items():
        stop = np.asarray(runs["letcc_tolerance"]["latency_s"])
        assert np.all(stop <= np.asarray(runs["letcc"]["latency_s"])[:, -1:] + 1e-12), key
        # a looser tolerance never waits longer
        assert np.all(np.diff(stop, axis=1) >= 0), key
    for r in rows:
        assert r["rounds"] == config.rounds
        assert np.isfinite(r["mse_mean"]) and r["mse_mean"] >= 0 and r["mse_std"] >= 0
        assert 0 < r["latency_p50_s"] <= r["latency_p99_s"] <= r["deadline_s"]
        assert 0 <= r["lost_share"] <= 1
    for key, runs in written["per_round"].items():
        # the same uncoded round: waiting for all never ends before the first replicas
        everyone = np.asarray(runs["wait_for_all"]["latency_s"])[:, 0]
        first = np.asarray(runs["replication"]["latency_s"])
        assert np.all(first <= everyone[:, None]), key
        assert np.all(np.diff(first, axis=1) >= 0) and np.all(
            np.diff(np.asarray(runs["letcc"]["latency_s"]), axis=1) >= 0), key
    exact = [r for r in rows if r["scheme"] in ("wait_for_all", "replication")
             and math.isinf(r["deadline_s"])]
    assert exact and all(r["mse_mean"] < 1e-10 and r["lost_share"] == 0 for r in exact)
    coded = [r for r in rows if r["scheme"] in ("letcc", "bacc") and math.isinf(r["deadline_s"])]
    assert all(0 < r["mse_mean"] < 0.1 and r["lost_share"] == 0 for r in coded)


@pytest.mark.parametrize("lam", [0.0, 1e-3])
def test_tolerance_replay_stops_at_the_first_arrival_that_meets_it(lam, dtype, rng):
    """Against a loop over the arrivals that calls ``scheme.posterior`` after each one."""
    scheme = lc.letcc(K, N, lam_dec=lam, fallback=np.zeros(M))  # one result: the fallback
    result = _round(rng, dtype)
    arrival = np.where(np.isnan(result.timings.arrival_s), np.inf, result.timings.arrival_s)
    z = 1.959963984540054  # level 0.95, uncalibrated
    times = np.sort(arrival[result.used])
    widths = []
    for t in times:
        post = scheme.posterior(jnp.asarray(result.outputs),
                                jnp.asarray(result.used & (arrival <= t)))
        widths.append(float(np.max(z * np.asarray(post.std, np.float64))))
    finite = sorted(w for w in widths if np.isfinite(w))
    tolerances = [finite[0] * 1.01, finite[len(finite) // 2] * 1.01, finite[-1] * 0.5 / 1.01, 1e9]
    deadline = times[-3]
    got = workers.decode_at_tolerances(scheme, result, tolerances, deadline=deadline)
    for i, tol in enumerate(tolerances):
        hits = [j for j, w in enumerate(widths) if w <= tol and times[j] <= deadline]
        stop = times[hits[0]] if hits else deadline
        assert got.met[i] == bool(hits)
        assert got.latency_s[i] == stop
        mask = result.used & (arrival <= stop)
        np.testing.assert_array_equal(got.used[i], mask)
        post = scheme.posterior(jnp.asarray(result.outputs), jnp.asarray(mask))
        np.testing.assert_allclose(got.estimate[i], post.estimate, **TOL[dtype])
        np.testing.assert_allclose(got.half_width[i], z * np.asarray(post.std), rtol=1e-4)
        if hits:
            assert got.half_width[i].max() <= tol * (1 + 1e-6)
    # an infinite tolerance waits until every estimate has a finite half-width: never
    # before two results are in (it once counted as met with nothing decoded)
    first = next(j for j, w in enumerate(widths) if np.isfinite(w))
    everything = workers.decode_at_tolerances(scheme, result, [math.inf])
    assert everything.met[0] and everything.latency_s[0] == times[first] > 0
    assert everything.recovered[0].all()
    truth = np.asarray(got.estimate[-1], np.float64)  # the last stop's estimates as the truth
    kept = got.promise_kept(truth)
    assert kept.shape == (4,) and kept[-1] == 1.0


def test_tolerance_replay_takes_a_calibration_and_rejects_bad_input(rng):
    scheme = lc.letcc(K, N)
    result = _round(rng, np.float64)
    cal = lc.Calibration((0.9,), jnp.full((1, M), 3.0), jnp.asarray([0.8]), jnp.asarray(99))
    # a huge tolerance: both stop at the first arrival that recovers every input
    calibrated = workers.decode_at_tolerances(scheme, result, [1e9], level=0.9, calibration=cal)
    gaussian = workers.decode_at_tolerances(scheme, result, [1e9], level=0.9)
    assert calibrated.latency_s[0] == gaussian.latency_s[0] and calibrated.met[0]
    np.testing.assert_allclose(calibrated.half_width / gaussian.half_width,
                               3.0 / 1.6448536269514722, rtol=1e-9)
    for call, error, match in [
        (lambda: workers.decode_at_tolerances(lc.bacc(K, N), result, [1.0]), TypeError,
         "posterior standard errors"),
        (lambda: workers.decode_at_tolerances(scheme, result, [0.0]), ValueError, "> 0"),
        (lambda: workers.decode_at_tolerances(scheme, result, []), ValueError, "non-empty"),
        (lambda: workers.decode_at_tolerances(scheme, result, [1.0], level=1.5), ValueError,
         r"coverage in \(0, 1\)"),
        (lambda: workers.decode_at_tolerances(scheme, result, [1.0], level=0.8, calibration=cal),
         ValueError, "not calibrated"),
        (lambda: workers.run(jnp.sin, scheme, jnp.ones((K, 2)), tolerance=0.1), ValueError,
         "tolerance needs an asynchronous backend"),
    ]:
        with pytest.raises(error, match=match):
            call()
