"""Calls that used to fail with JAX's own words, or with the library's misleading ones: each
now works or says what was wrong and what to do."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import letcc_jax as lc

X4 = np.array([[0.1], [0.2], [0.3], [0.9]])


# ------------------------------------------------------------ searches under a transformation

SEARCHES = {
    "worst_stragglers": lambda X: lc.worst_stragglers(jnp.tanh, lc.letcc(4, 8), X, 2).mse,
    "worst_adversaries": lambda X: lc.worst_adversaries(jnp.tanh, lc.letcc(4, 8), X, 2,
                                                        1.0).mse,
}


@pytest.mark.parametrize("name", list(SEARCHES))
def test_searches_inside_jit_say_they_run_eagerly(name):
    search = SEARCHES[name]
    X = jnp.asarray(X4)
    for traced in (lambda: jax.jit(search)(X),                # a traced argument
                   lambda: jax.jit(lambda: search(X))(),      # jit with nothing traced
                   lambda: jax.vmap(search)(X[None])):
        with pytest.raises(TypeError, match=f"{name} runs eagerly.*outside the transformation"):
            traced()


# --------------------------------------------------------------- inside the caller's shard_map

def test_letcc_decode_inside_shard_map_equals_outside():
    """Inside ``shard_map`` (its type checks on, the default) the smoother's loops carry
    values that vary over the mesh axis: their starting zeros must vary too. A one-device
    mesh has the types of any other."""
    mesh = jax.make_mesh((1,), ("batch",), axis_types=(AxisType.Auto,))
    rng = np.random.default_rng(0)
    Y = jnp.asarray(rng.standard_normal((1, 30, 3)))
    alive = jnp.asarray(rng.random((1, 30)) > 0.2)
    scheme = lc.letcc(5, 30, lam_dec=1e-3)
    sharded = jax.jit(jax.shard_map(lambda Y, a: scheme.decode(Y[0], a[0])[None], mesh=mesh,
                                    in_specs=P("batch"), out_specs=P("batch")))(Y, alive)
    # The same float64 computation with a mesh axis around it: equal to round-off.
    np.testing.assert_allclose(np.asarray(sharded[0]), np.asarray(scheme.decode(Y[0], alive[0])),
                               rtol=1e-14, atol=1e-14)


# -------------------------------------------------------------------------- arguments

def test_monte_carlo_rejects_a_device_named_twice():
    d0 = jax.devices()[0]
    with pytest.raises(ValueError, match="devices must be distinct.*appears more than once"):
        lc.monte_carlo(jnp.tanh, lc.letcc(4, 8), jnp.asarray(X4), jax.random.key(0), trials=4,
                       devices=[d0, d0])


def test_letcc_caps_a_lambda_beyond_its_dtype():
    """With float32 leaves (64-bit mode off) 1e300 is beyond the dtype: the factory caps it
    (``replace`` accepts it too) and decodes the straight line through the survivors."""
    t = np.cos(np.arange(8) * np.pi / 7)[::-1]
    Y = np.sin(3 * t)[:, None]
    with jax.enable_x64(False):
        built = lc.letcc(4, 8, lam_dec=1e300)
        assert built.lam_dec.dtype == np.float32 and np.isfinite(float(built.lam_dec))
        lc.letcc(4, 8).replace(lam_dec=1e300)  # accepted there already
        decoded = np.asarray(built.decode(jnp.asarray(Y, jnp.float32)))
        alpha = np.asarray(built.alpha, np.float64)
    line = np.polyval(np.polyfit(t, Y[:, 0], 1), alpha)[:, None]
    # float32: the smoother's rounding on values of size 1, a few hundred eps
    np.testing.assert_allclose(decoded, line, rtol=0, atol=500 * np.finfo(np.float32).eps)
    for bad, shown in ((-1e300, "-1e+300"), (float("inf"), "inf"), (-1.0, "-1.0")):
        with jax.enable_x64(False), pytest.raises(ValueError) as error:
            lc.letcc(4, 8, lam_dec=bad)
        message = str(error.value)
        assert message.endswith(f"got {shown}.") and "Array" not in message, message


def test_smoothing_spline_names_the_dtype_where_knots_collide():
    t = 1.0 + 1e-9 * np.arange(5)  # ascending in float64, one value in float32
    y = np.sin(np.arange(5.0))
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"ascending as given \(float64\), but t\[0\] = 1.0 "
                                             r"and t\[1\] = 1.000000001 are equal in float32"):
            lc.smoothing_spline(t, y)
        with pytest.raises(ValueError, match="sort the knots"):  # unsorted: still the order
            lc.smoothing_spline(t[::-1].copy(), y)


def test_tuner_names_its_own_options_for_the_node_ends():
    inner = np.linspace(-0.9, 0.9, 10)
    alpha = np.linspace(-0.5, 0.5, 4)
    with pytest.raises(ValueError, match=r"beta\[0\] = -1.*\(pin_beta_ends=False\)"):
        lc.tuner(jnp.tanh, lc.letcc(4, 10, points=(alpha, inner)), learn=("beta",)).init()
    with pytest.raises(ValueError, match=r"got alpha in \[-1.0, 1.0\].*\(pin_alpha_ends=True\)"):
        lc.tuner(jnp.tanh, lc.letcc(4, 10, points=(np.linspace(-1, 1, 4), inner)),
                 learn=("alpha",), pin_beta_ends=False).init()
    with pytest.raises(ValueError, match=r"\(pin_ends=True\)"):  # the function's own option
        lc.node_logits(jnp.array([-0.5, 1.0]))
