"""Models, the pure function f, RepVGG re-parameterisation, training and the checkpoint cache."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, serialization

from letcc_jax.zoo import models, train
from letcc_jax.zoo.data import Dataset

# Small versions of every model. The tests share one input shape and class count, so that
# parameter shapes repeat and the (slow) compilation of their random initialisers is reused.
TINY = {
    "lenet5": {},
    "repvgg": {"widths": (4, 8, 8), "depths": (1, 2, 1), "strides": (1, 2, 1)},
    "vit": {"patch_size": 4, "dim": 16, "depth": 2, "num_heads": 2, "mlp_dim": 32},
}


def randomise_batchnorm(model: nnx.Module, seed: int) -> None:
    """Gives every BatchNorm non-trivial running statistics, scale and bias."""
    key = jax.random.key(seed)
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.BatchNorm):
            key, k_mean, k_var, k_scale, k_bias = jax.random.split(key, 5)
            n = module.mean.shape[0]
            module.mean[...] = jax.random.normal(k_mean, (n,), jnp.float32)
            module.var[...] = jax.random.uniform(k_var, (n,), jnp.float32, 0.2, 3.0)
            module.scale[...] = jax.random.uniform(k_scale, (n,), jnp.float32, 0.5, 2.0)
            module.bias[...] = jax.random.normal(k_bias, (n,), jnp.float32)


def images(shape, n=5, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, *shape), jnp.float32)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("shape, num_classes", [((28, 28, 1), 10), ((32, 32, 3), 100)])
def test_output_shapes(name, shape, num_classes):
    # Abstract evaluation: checks every layer's shapes without compiling anything.
    model = nnx.eval_shape(lambda: models.make_model(name, shape, num_classes, **TINY[name]))
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((5, *shape), jnp.float32)
    logits = jax.eval_shape(lambda state, x: nnx.merge(graphdef, state)(x), state, x)
    assert logits.shape == (5, num_classes) and logits.dtype == jnp.float32
    assert model.image_shape == shape and model.num_classes == num_classes


@nnx.jit
def batch_apply(model, x):
    return model(x)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_pure_apply_on_flat_vectors_equals_batch_apply(name):
    shape = (16, 16, 1)
    model = models.make_model(name, shape, 3, seed=1, **TINY[name])
    randomise_batchnorm(model, seed=2)
    f = models.pure_apply(model)
    x = images(shape, n=6)

    model.eval()
    expected = batch_apply(model, x)
    flat = jax.jit(jax.vmap(f))(x.reshape(6, -1))
    assert flat.shape == (6, 3)
    np.testing.assert_allclose(flat, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(f)(x[2]), expected[2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"jax.vmap\(f\)"):
        f(x)


def test_pure_apply_follows_the_input_dtype(dtype):
    model = models.make_model("lenet5", (16, 16, 1), 3)
    f = jax.jit(models.pure_apply(model))
    x = images((16, 16, 1), n=1)[0].reshape(-1)
    y = f(jnp.asarray(x, dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, f(x), rtol=1e-5, atol=1e-5)


def test_pure_apply_is_a_snapshot_in_inference_mode():
    model = models.make_model("repvgg", (16, 16, 1), 3, **TINY["repvgg"])
    randomise_batchnorm(model, seed=0)
    model.train()
    f = jax.jit(jax.vmap(models.pure_apply(model)))
    assert model.blocks[0].bn3.use_running_average is False  # the model's mode is untouched
    x = images((16, 16, 1), n=6)
    model.eval()
    expected = batch_apply(model, x)
    model.head.kernel[...] = jnp.zeros_like(model.head.kernel[...])
    np.testing.assert_allclose(f(x.reshape(6, -1)), expected, rtol=1e-5, atol=1e-5)


class Flatten(nnx.Module):
    """A model without an image_shape attribute."""

    def __init__(self):
        self.dense = nnx.Linear(12, 2, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.dense(x.reshape(x.shape[0], -1))


def test_pure_apply_needs_an_image_shape():
    with pytest.raises(ValueError, match="image_shape"):
        models.pure_apply(Flatten())
    f = models.pure_apply(Flatten(), image_shape=(2, 2, 3))
    assert f(jnp.ones(12)).shape == (2,)


def test_repvgg_reparameterization_matches_multibranch():
    # An odd image size makes the stride-2 block check that the 3x3 and 1x1 branches sample
    # the same centres; blocks with and without the identity branch both occur.
    model = models.make_model("repvgg", (15, 15, 1), 3, seed=3, **TINY["repvgg"])
    assert any(b.bn_id is not None for b in model.blocks)
    assert any(b.bn_id is None and b.stride == 2 for b in model.blocks)
    randomise_batchnorm(model, seed=4)
    model.eval()
    x = images((15, 15, 1), n=4, seed=5) * 2.0 - 0.5
    expected = batch_apply(model, x)
    scale = float(jnp.abs(expected).max())

    deployed = model.reparameterize()
    assert all(type(b) is nnx.Conv and b.kernel.shape[:2] == (3, 3) for b in deployed.blocks)
    assert not any(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_graph(deployed))
    np.testing.assert_allclose(batch_apply(deployed, x), expected, rtol=1e-5, atol=1e-5 * scale)
    # The multi-branch model is untouched.
    assert isinstance(model.blocks[0], models.RepVGGBlock)
    np.testing.assert_array_equal(batch_apply(model, x), expected)


def test_model_arguments_are_validated():
    with pytest.raises(ValueError, match="Unknown model"):
        models.make_model("resnet", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        models.make_model("vit", (30, 30, 1), 10, patch_size=4)
    with pytest.raises(ValueError, match="one entry per stage"):
        models.make_model("repvgg", (28, 28, 1), 10, widths=(8, 16), depths=(1,), strides=(1,))
    with pytest.raises(ValueError, match="at least 12x12"):
        models.make_model("lenet5", (8, 8, 1), 10)


def bars_dataset(n_train=384, n_test=96, size=16, seed=0) -> Dataset:
    """Three classes: a bright horizontal bar in the top, middle or bottom third, plus noise."""
    rng = np.random.default_rng(seed)

    def draw(n):
        labels = rng.integers(0, 3, n).astype(np.int32)
        x = 0.3 * rng.random((n, size, size, 1), dtype=np.float32)
        rows = labels * (size // 3) + rng.integers(0, size // 3, n)
        x[np.arange(n), rows] = 1.0
        return x, labels

    (x_train, y_train), (x_test, y_test) = draw(n_train), draw(n_test)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=3, name="bars")


def test_training_reduces_the_loss():
    ds = bars_dataset()
    model = models.make_model("lenet5", ds.image_shape, ds.num_classes)
    config = train.TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3)
    log = train.train_model(model, ds, config, progress=False)
    assert log.losses.shape == (3 * (384 // 32),)
    assert log.losses[-5:].mean() < 0.5 * log.losses[:5].mean()
    assert log.test_accuracy > 0.9
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert log.test_accuracy == train.evaluate(model, ds.x_test, ds.y_test, batch_size=7)


@pytest.mark.parametrize("name", ["repvgg", "vit"])
def test_checkpoint_cache_round_trip(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    ds = bars_dataset(n_train=64, n_test=16)
    config = train.TrainConfig(epochs=1, batch_size=16, model_kwargs=TINY[name])
    first = train.get_trained_model(name, ds, config, progress=False)
    folder = train.checkpoint_dir(name, ds, config)
    assert folder.parent == tmp_path / "models"
    record = json.loads((folder / "record.json").read_text())
    assert record == first.record and 0.0 <= record["test_accuracy"] <= 1.0

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been loaded")

    monkeypatch.setattr(train, "train_model", no_training)
    second = train.get_trained_model(name, ds, config, progress=False)
    assert second.record == first.record
    np.testing.assert_array_equal(batch_apply(second.model, ds.x_test),
                                  batch_apply(first.model, ds.x_test))
    expected, restored = nnx.to_pure_dict(nnx.state(first.model)), nnx.to_pure_dict(
        nnx.state(second.model))
    jax.tree.map(np.testing.assert_array_equal, restored, expected)  # BatchNorm statistics too


def test_cache_key_depends_on_config_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    config = train.TrainConfig(epochs=1, batch_size=16)
    folders = {
        train.checkpoint_dir("lenet5", bars_dataset(64, 16), config),
        train.checkpoint_dir("lenet5", bars_dataset(64, 16), config),
        train.checkpoint_dir("lenet5", bars_dataset(64, 16),
                             dataclasses.replace(config, learning_rate=1e-2)),
        train.checkpoint_dir("lenet5", bars_dataset(64, 16, seed=1), config),
        train.checkpoint_dir("vit", bars_dataset(64, 16), config),
    }
    assert len(folders) == 4
    assert all(f.parent == tmp_path / "models" for f in folders)


def test_load_checkpoint_rejects_other_architecture(tmp_path):
    path = tmp_path / "state.msgpack"
    train.save_checkpoint(models.make_model("lenet5", (16, 16, 1), 3), path)
    with pytest.raises(ValueError, match="constructor arguments"):
        train.load_checkpoint(models.make_model("lenet5", (16, 16, 1), 4), path)


def _write_state(path, model, change):
    """Saves ``model``'s state with ``change`` applied to every leaf, as save_checkpoint would."""
    pure = jax.tree.map(lambda v: change(np.asarray(v)), nnx.to_pure_dict(nnx.state(model)))
    path.write_bytes(serialization.msgpack_serialize(pure))


@pytest.mark.parametrize("change, found", [
    (lambda v: v.astype(np.int32), r"found int32 \(5, 5, 1, 6\)"),
    (lambda v: v.astype(np.float64), r"found float64 \(5, 5, 1, 6\)"),
    (lambda v: v[..., :1] if v.ndim == 4 else v, r"found float32 \(5, 5, 1, 1\)"),
], ids=["int32", "float64", "shape"])
def test_load_checkpoint_checks_every_dtype_and_shape(tmp_path, change, found):
    model = models.make_model("lenet5", (16, 16, 1), 3)
    path = tmp_path / "state.msgpack"
    _write_state(path, model, change)
    with pytest.raises(ValueError, match=r"\['conv1'\]\['kernel'\]: expected float32 "
                                         r"\(5, 5, 1, 6\), " + found) as info:
        train.load_checkpoint(model, path)
    assert str(path) in str(info.value)


def test_load_checkpoint_names_a_truncated_file_or_a_folder(tmp_path):
    model = models.make_model("lenet5", (16, 16, 1), 3)
    path = tmp_path / "state.msgpack"
    train.save_checkpoint(model, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        train.load_checkpoint(model, path)
    assert str(path) in str(info.value)
    path.write_bytes(serialization.msgpack_serialize({"conv1": {"bias": np.zeros(6, "f4")}}))
    with pytest.raises(ValueError, match=r"\['conv1'\]\['kernel'\] missing"):
        train.load_checkpoint(model, path)
    with pytest.raises(ValueError, match="is a directory, not a checkpoint"):
        train.load_checkpoint(model, tmp_path)
    path.write_bytes(serialization.msgpack_serialize([1, 2]))
    with pytest.raises(ValueError, match="holds a list, not the dict of parameters"):
        train.load_checkpoint(model, path)


def test_train_config_is_validated():
    with pytest.raises(ValueError, match="optimizer"):
        train.TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="lower batch_size"):
        train.train_model(models.make_model("lenet5", (16, 16, 1), 3), bars_dataset(8, 4),
                          train.TrainConfig(batch_size=16), progress=False)


# ----------------------------------------------------------------- hostile names and arguments
HOSTILE_NAMES = ["../../etc/x", "/etc/passwd", "..", ".", "a/b", "a\\b", "x\0y", "ünï cødé",
                 "../" * 100 + "deep"]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_a_dataset_name_cannot_leave_the_cache(tmp_path, monkeypatch, hostile):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    ds = dataclasses.replace(bars_dataset(64, 16), name=hostile)
    folder = train.checkpoint_dir("lenet5", ds, train.TrainConfig(epochs=1, batch_size=16))
    assert folder.parent == tmp_path / "models"
    assert folder.name.startswith("lenet5-") and len(folder.name) < 100
    assert set(folder.name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789._-")


def test_a_model_name_cannot_leave_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    ds, config = bars_dataset(64, 16), train.TrainConfig(epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="Unknown model"):
        train.checkpoint_dir("../../etc/x", ds, config)
    monkeypatch.setitem(models.MODELS, "../../evil", models.LeNet5)  # a user's registration
    folder = train.checkpoint_dir("../../evil", ds, config)
    assert folder.parent == tmp_path / "models" and "/" not in folder.name


def test_names_that_escape_alike_get_different_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    config = train.TrainConfig(epochs=1, batch_size=16)
    folders = {train.checkpoint_dir("lenet5", dataclasses.replace(bars_dataset(64, 16), name=n),
                                    config) for n in ("a/b", "a_b", "a\\b")}
    assert len(folders) == 3


#: What a float or bool where an int belongs raises: the library's shared checks say ValueError
#: today; TypeError would do as well.
NOT_AN_INT = (ValueError, TypeError)


@pytest.mark.parametrize("build, error, message", [
    (lambda: models.make_model("lenet5", 28, 10), TypeError, "image_shape must be a sequence"),
    (lambda: models.make_model("lenet5", (28.0, 28, 1), 10), ValueError, "image_shape"),
    (lambda: models.make_model("lenet5", (28, 28), 10), ValueError, r"\(H, W, C\)"),
    (lambda: models.make_model("lenet5", (28, 28, 1), 0), ValueError, "num_classes"),
    (lambda: models.make_model("lenet5", (28, 28, 1), 2.5), NOT_AN_INT, "num_classes"),
    (lambda: models.make_model("lenet5", (28, 28, 1), True), NOT_AN_INT, "num_classes"),
    (lambda: models.make_model("lenet5", (28, 28, 1), 10, seed=1.5), NOT_AN_INT, "seed"),
    (lambda: models.make_model(None, (28, 28, 1), 10), ValueError, "Unknown model"),
    (lambda: models.make_model("lenet5", (28, 28, 1), 10, depth=2), TypeError,
     "lenet5 takes no argument depth"),
    (lambda: models.make_model("vit", (28, 28, 1), 10, widths=(8,)), TypeError,
     "its arguments are patch_size, dim, depth"),
    (lambda: models.make_model("vit", (28, 28, 1), 10, patch_size=0), ValueError, "patch_size"),
    (lambda: models.make_model("vit", (28, 28, 1), 10, num_heads=0), ValueError, "num_heads"),
    (lambda: models.make_model("vit", (28, 28, 1), 10, depth=-1), ValueError, "depth"),
    (lambda: models.make_model("repvgg", (28, 28, 1), 10, widths=16), TypeError, "widths"),
    (lambda: models.make_model("repvgg", (28, 28, 1), 10, widths=(0, 4, 4, 4)), ValueError,
     "widths must hold ints >= 1"),
    (lambda: models.make_model("repvgg", (28, 28, 1), 10, strides=(1, 1, 1, 0)), ValueError,
     "strides"),
    (lambda: models.RepVGGBlock(4, 4, stride=0, rngs=nnx.Rngs(0)), ValueError, "stride"),
])
def test_model_arguments_name_the_bad_one(build, error, message):
    with pytest.raises(error, match=message):
        nnx.eval_shape(build)  # abstract: nothing is initialised or compiled


def test_model_sizes_may_be_numpy_ints():
    model = nnx.eval_shape(lambda: models.make_model(
        "vit", np.array([16, 16, 1]), np.int64(3), seed=np.int32(0), patch_size=np.int64(4),
        **{k: v for k, v in TINY["vit"].items() if k != "patch_size"}))
    assert model.image_shape == (16, 16, 1) and type(model.num_classes) is int


@pytest.mark.parametrize("field, value", [
    ("epochs", 1.5), ("epochs", True), ("epochs", 0), ("batch_size", "8"), ("seed", -1),
    ("n_train", 0), ("n_train", 2.0), ("learning_rate", float("nan")), ("learning_rate", 0),
    ("weight_decay", -1e-4), ("warmup_epochs", float("inf")), ("model_kwargs", [("depth", 2)]),
])
def test_train_config_names_the_bad_field(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        train.TrainConfig(**{field: value})


def test_train_config_stores_numpy_scalars_as_python_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    config = train.TrainConfig(epochs=np.int64(1), batch_size=np.int32(16),
                               learning_rate=np.float32(0.5), n_train=np.int64(32))
    assert type(config.epochs) is int and type(config.learning_rate) is float
    # they enter the cache key as JSON
    assert train.checkpoint_dir("lenet5", bars_dataset(64, 16), config).parent.is_relative_to(
        tmp_path)
    with pytest.raises(TypeError, match="model_kwargs must hold JSON values"):
        train.checkpoint_dir("lenet5", bars_dataset(64, 16),
                             train.TrainConfig(model_kwargs={"widths": np.array([4, 8])}))


def test_training_and_evaluation_check_their_inputs():
    ds = bars_dataset(32, 8)
    model = models.make_model("lenet5", (28, 28, 1), 3)
    config = train.TrainConfig(epochs=1, batch_size=16)
    with pytest.raises(ValueError, match=r"takes images of shape \(28, 28, 1\)"):
        train.train_model(model, ds, config, progress=False)
    with pytest.raises(ValueError, match="has 10 outputs but"):
        train.train_model(models.make_model("lenet5", ds.image_shape, 10), ds, config,
                          progress=False)
    with pytest.raises(TypeError, match="dataset must be a Dataset"):
        train.train_model(model, "fashion_mnist", config, progress=False)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train.train_model(model, ds, {"epochs": 1}, progress=False)
    with pytest.raises(ValueError, match=r"takes images of shape \(28, 28, 1\)"):
        train.evaluate(model, ds.x_test, ds.y_test)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        train.evaluate(models.make_model("lenet5", ds.image_shape, 3), ds.x_test, ds.y_test,
                       batch_size=0)
    with pytest.raises(ValueError, match=r"\(n, H, W, C\)"):
        train.evaluate(model, ds.x_test[0], ds.y_test)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        train.make_optimizer(config, 0)
    with pytest.raises(TypeError, match="dataset must be a Dataset or one of"):
        train.checkpoint_dir("lenet5", 3, config)


def test_damaged_cache_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    ds, config = bars_dataset(64, 16), train.TrainConfig(epochs=1, batch_size=16)
    folder = train.checkpoint_dir("lenet5", ds, config)
    folder.mkdir(parents=True)
    (folder / "state.msgpack").write_bytes(b"\x00garbage")
    (folder / "record.json").write_text("{")
    with pytest.raises(ValueError, match="not a checkpoint written by save_checkpoint") as info:
        train.get_trained_model("lenet5", ds, config, progress=False)
    assert str(folder / "state.msgpack") in str(info.value)
    train.save_checkpoint(models.make_model("lenet5", ds.image_shape, 3), folder / "state.msgpack")
    with pytest.raises(ValueError, match="record.json is corrupt.*retrain=True"):
        train.get_trained_model("lenet5", ds, config, progress=False)


def test_pure_apply_takes_array_likes_and_checks_the_image_shape():
    model = models.make_model("lenet5", (28, 28, 1), 10)
    f = models.pure_apply(model)
    np.testing.assert_allclose(f([0.0] * 784), f(jnp.zeros(784)), rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"f takes one numeric array of shape \(784,\)"):
        f("not an image")
    with pytest.raises(ValueError, match=r"image_shape=\(32, 32, 3\) does not match the LeNet5"):
        models.pure_apply(model, (32, 32, 3))
    assert models.pure_apply(model, [28, 28, 1])(jnp.zeros(784)).shape == (10,)


def test_save_checkpoint_names_an_unusable_path(tmp_path):
    model = models.make_model("lenet5", (16, 16, 1), 3)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"file/x\.msgpack.*is an existing file"):
        train.save_checkpoint(model, tmp_path / "file" / "x.msgpack")
    with pytest.raises(ValueError, match="is a directory"):
        train.save_checkpoint(model, tmp_path)


def test_n_train_beyond_the_dataset_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LETCC_JAX_CACHE", str(tmp_path))
    ds = bars_dataset(32, 8)
    config = train.TrainConfig(epochs=1, batch_size=16, n_train=1000)
    message = "n_train=1000 exceeds the 32 training images"
    with pytest.raises(ValueError, match=message):
        train.get_trained_model("lenet5", ds, config, progress=False)
    with pytest.raises(ValueError, match=message):
        train.train_model(models.make_model("lenet5", ds.image_shape, ds.num_classes), ds,
                          config, progress=False)
    assert not (tmp_path / "models").exists()
