"""Training, evaluation and an on-disk cache of trained models.

:func:`get_trained_model` trains a model once per (model, dataset, configuration) and loads
it afterwards. The cache lives in ``$LETCC_JAX_CACHE`` (default ``~/.cache/letcc_jax``) under
``models/<model>-<dataset>-<key>/``: ``state.msgpack`` holds the parameters and BatchNorm
statistics (flax.serialization of ``nnx.to_pure_dict``), ``record.json`` the test accuracy,
training time and the configuration. The key hashes the model name, the configuration
(including the model's constructor arguments) and a fingerprint of the data.

Training is deterministic for a given seed on a given machine: parameters come from
``nnx.Rngs(config.seed)`` and the batch order from ``numpy.random.default_rng(config.seed)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, serialization
from tqdm import tqdm

from letcc_jax import _validation as check
from letcc_jax.zoo.data import DATASETS, Dataset, load_dataset
from letcc_jax.zoo.models import MODELS, make_model

__all__ = [
    "DEFAULT_CONFIGS",
    "TrainConfig",
    "TrainLog",
    "TrainedModel",
    "cache_dir",
    "checkpoint_dir",
    "evaluate",
    "get_trained_model",
    "load_checkpoint",
    "make_optimizer",
    "save_checkpoint",
    "train_model",
]

_CHECKPOINT_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; all of them enter the cache key.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step; the last partial batch of an epoch is dropped so every
            step has the same shape (one compilation).
        learning_rate: peak learning rate.
        optimizer: ``"adam"``, ``"adamw"`` (decoupled weight decay) or ``"sgd"`` (Nesterov
            momentum 0.9, L2 weight decay).
        weight_decay: weight decay (ignored by ``"adam"``).
        schedule: ``"cosine"`` (linear warm-up, then cosine decay to zero) or ``"constant"``.
        warmup_epochs: length of the cosine schedule's warm-up, in epochs (may be fractional).
        seed: seed of the initialisation and the batch order.
        n_train: train on the first ``n_train`` training images only (None: all).
        model_kwargs: constructor arguments of the model (e.g. ``{"depth": 6}`` for ViT).

    Counts (``epochs``, ``batch_size``, ``seed``, ``n_train``) are Python or NumPy ints and
    rates are real numbers; NumPy scalars are stored as Python numbers (they enter the cache
    key as JSON). Anything else raises a ValueError or TypeError naming the field.
    """

    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    seed: int = 0
    n_train: int | None = None
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {self.optimizer!r}.")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}.")
        counts = {"epochs": 1, "batch_size": 1, "seed": 0}
        if self.n_train is not None:
            counts["n_train"] = 1
        for name, minimum in counts.items():
            check.check_count(getattr(self, name), name, minimum)
        for name, positive in (("learning_rate", True), ("weight_decay", False),
                               ("warmup_epochs", False)):
            value = getattr(self, name)
            real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_))
            if not (real and np.isfinite(value) and (value > 0 if positive else value >= 0)):
                raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, "
                                 f"got {value!r}.")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, field.name, value.item())
        if not isinstance(self.model_kwargs, Mapping) or not all(
                isinstance(k, str) for k in self.model_kwargs):
            raise TypeError("model_kwargs must be a mapping from constructor argument names to "
                            f"values, got {self.model_kwargs!r}.")


#: Configurations for Fashion-MNIST sized to train in minutes on two CPU cores (each model's
#: constructor defaults are the small configuration trained here).
DEFAULT_CONFIGS: dict[str, TrainConfig] = {
    "lenet5": TrainConfig(epochs=5, batch_size=128, learning_rate=2e-3),
    "repvgg": TrainConfig(epochs=3, batch_size=128, learning_rate=2e-3, optimizer="adamw",
                          weight_decay=1e-4, warmup_epochs=0.2),
    "vit": TrainConfig(epochs=4, batch_size=128, learning_rate=2e-3, optimizer="adamw",
                       weight_decay=0.05, warmup_epochs=0.5),
}


class TrainLog(NamedTuple):
    """What :func:`train_model` measured.

    Attributes:
        losses: (steps,) training loss (mean cross-entropy over the batch) of every step.
        test_accuracy: fraction of the test split classified correctly after training.
        seconds: wall-clock time of the training loop, compilation included.
    """

    losses: np.ndarray
    test_accuracy: float
    seconds: float


class TrainedModel(NamedTuple):
    """A trained model (in eval mode) and its ``record.json`` contents."""

    model: nnx.Module
    record: dict


def cache_dir() -> Path:
    """Cache root: ``$LETCC_JAX_CACHE`` or ``~/.cache/letcc_jax``."""
    return Path(os.environ.get("LETCC_JAX_CACHE", "~/.cache/letcc_jax")).expanduser()


def _check_config(config: TrainConfig) -> None:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")


def _check_fits(model: nnx.Module, image_shape: tuple[int, ...], num_classes: int | None,
                what: str) -> None:
    """The model's ``image_shape`` and ``num_classes`` (when it has them) match the data's."""
    expected = getattr(model, "image_shape", None)
    if expected is not None and tuple(expected) != tuple(image_shape):
        raise ValueError(
            f"The model takes images of shape {tuple(expected)} but {what} are "
            f"{tuple(image_shape)}; build it with make_model(name, image_shape, num_classes) "
            "from the data's shapes."
        )
    classes = getattr(model, "num_classes", None)
    if num_classes is not None and classes is not None and classes != num_classes:
        raise ValueError(f"The model has {classes} outputs but {what} have {num_classes} "
                         "classes; build it with the data's num_classes.")


def _check_n_train(config: TrainConfig, dataset: Dataset) -> None:
    """``config.n_train`` asks for no more training images than ``dataset`` has."""
    available = dataset.x_train.shape[0]
    if config.n_train is not None and config.n_train > available:
        raise ValueError(
            f"config.n_train={config.n_train} exceeds the {available} training images of "
            f"{dataset.name}; lower n_train, or pass n_train=None to train on all of them."
        )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimiser and learning-rate schedule described by ``config``."""
    _check_config(config)
    steps_per_epoch = check.check_positive_int(steps_per_epoch, "steps_per_epoch")
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        warmup = int(round(config.warmup_epochs * steps_per_epoch))
        learning_rate = optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, warmup_steps=warmup, decay_steps=max(total, warmup + 1))
    else:
        learning_rate = config.learning_rate
    if config.optimizer == "adam":
        return optax.adam(learning_rate)
    if config.optimizer == "adamw":
        return optax.adamw(learning_rate, weight_decay=config.weight_decay)
    return optax.chain(optax.add_decayed_weights(config.weight_decay),
                       optax.sgd(learning_rate, momentum=0.9, nesterov=True))


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """(steps, batch_size) indices of one shuffled epoch, the last partial batch dropped."""
    steps = n // batch_size
    return rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)


def train_model(model: nnx.Module, dataset: Dataset, config: TrainConfig, *,
                progress: bool = True) -> TrainLog:
    """Trains ``model`` in place with softmax cross-entropy and evaluates it on the test split.

    Args:
        model: maps (B, H, W, C) images to (B, num_classes) logits; left in eval mode.
        dataset: training and test data.
        config: hyper-parameters (``model_kwargs`` is not used here).
        progress: show a tqdm progress bar per epoch.

    Returns:
        A :class:`TrainLog`.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset (e.g. from load_dataset), got "
                        f"{type(dataset).__name__}.")
    _check_config(config)
    _check_fits(model, dataset.image_shape, dataset.num_classes, f"the images of {dataset.name}")
    _check_n_train(config, dataset)
    x_train, y_train = dataset.x_train, dataset.y_train
    if config.n_train is not None:
        x_train, y_train = x_train[: config.n_train], y_train[: config.n_train]
    steps_per_epoch = x_train.shape[0] // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"{x_train.shape[0]} training images do not fill one batch of {config.batch_size}; "
            "lower batch_size."
        )
    rng = np.random.default_rng(config.seed)
    model.train()
    optimizer = nnx.Optimizer(model, make_optimizer(config, steps_per_epoch), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    # Split/merge around a plain jax.jit keeps per-step Python overhead low.
    @jax.jit
    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)

        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        # optax's Adam raises a Python float to the int32 step count, which strict dtype
        # promotion (a user's setting, and the test suite's) rejects.
        with jax.numpy_dtype_promotion("standard"):
            optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    losses = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = _batches(x_train.shape[0], config.batch_size, rng)
        bar = tqdm(order, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   leave=False)
        for index in bar:
            state, loss = step(state, x_train[index], y_train[index])
            losses.append(loss)
            if len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}")
    nnx.update((model, optimizer), state)
    losses = np.asarray(jax.device_get(losses), dtype=np.float32)
    seconds = time.perf_counter() - start
    model.eval()
    return TrainLog(losses, evaluate(model, dataset.x_test, dataset.y_test), seconds)


@functools.partial(jax.jit, static_argnums=0)
def _predict(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> jax.Array:
    """(B, H, W, C) images -> (B,) predicted classes; compiled once per architecture."""
    return jnp.argmax(nnx.merge(graphdef, state)(x), axis=-1)


def evaluate(model: nnx.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` in inference mode on images ``x`` (n, H, W, C), labels ``y`` (n,)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"Need n >= 1 images (n, H, W, C) and n labels (n,), got shapes "
                         f"{x.shape} and {y.shape}.")
    batch_size = check.check_positive_int(batch_size, "batch_size")
    _check_fits(model, x.shape[1:], None, "the images x")
    inference = nnx.view(model, use_running_average=True, deterministic=True,
                         raise_if_not_found=False)
    graphdef, state = nnx.split(inference)
    batch_size = min(batch_size, x.shape[0])
    pad = -x.shape[0] % batch_size  # one batch shape, one compilation
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    predictions = np.concatenate([_predict(graphdef, state, x[i : i + batch_size])
                                  for i in range(0, x.shape[0], batch_size)])
    return float(np.mean(predictions[: y.shape[0]] == y))


def save_checkpoint(model: nnx.Module, path: str | os.PathLike) -> None:
    """Writes the model's state (parameters and BatchNorm statistics) to ``path`` atomically."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"Cannot save a checkpoint to {path}: it is a directory; give a file "
                         "path such as <folder>/state.msgpack.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ValueError(
            f"Cannot save a checkpoint to {path}: a part of its folder {path.parent} is an "
            "existing file, not a directory; choose a path inside a directory."
        ) from exc
    payload = serialization.msgpack_serialize(jax.device_get(nnx.to_pure_dict(nnx.state(model))))
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(payload)
    os.replace(tmp.name, path)


def _leaves(tree) -> dict[str, Any]:
    """The leaves of a (nested dict) state by their path, e.g. ``['conv1']['kernel']``."""
    return {jax.tree_util.keystr(path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _describe(leaf) -> str:
    """``dtype shape`` of an array, or the type of anything else."""
    if isinstance(leaf, (np.ndarray, jax.Array, np.generic)):
        return f"{leaf.dtype} {tuple(leaf.shape)}"
    return f"{type(leaf).__name__} (not an array)"


def load_checkpoint(model: nnx.Module, path: str | os.PathLike) -> nnx.Module:
    """Loads a checkpoint written by :func:`save_checkpoint` into ``model`` (in place).

    ``model`` must have the architecture the checkpoint was saved from: every parameter and
    statistic of the file must have the path, dtype and shape of the model's own.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, is not a checkpoint (truncated or corrupt), or holds
            a parameter whose path, dtype or shape differs from the model's; the message names
            the file and, for a parameter, its path with the expected and found dtype and shape.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a checkpoint; give the path of the file "
                         "written by save_checkpoint (e.g. <folder>/state.msgpack).")
    try:
        payload = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"No checkpoint at {path}; save one with save_checkpoint, or "
                                "check the path.") from exc
    # Decoding damaged bytes fails in many ways (msgpack's ExtraData, ValueError, TypeError).
    try:
        restored = serialization.msgpack_restore(payload)
    except Exception as exc:
        raise ValueError(
            f"{path} is not a checkpoint written by save_checkpoint ({type(exc).__name__}: "
            f"{exc}); it is truncated or corrupt, delete it."
        ) from exc
    if not isinstance(restored, dict):
        raise ValueError(f"{path} holds a {type(restored).__name__}, not the dict of parameters "
                         "save_checkpoint writes; it is not a checkpoint, delete it.")
    state = nnx.state(model)
    expected, found = _leaves(nnx.to_pure_dict(state)), _leaves(restored)
    problems = [f"parameter {key} missing" for key in expected if key not in found]
    problems += [f"parameter {key} not in the model" for key in found if key not in expected]
    problems += [
        f"parameter {key}: expected {_describe(want)}, found {_describe(found[key])}"
        for key, want in expected.items() if key in found and not (
            isinstance(found[key], np.ndarray) and found[key].dtype == want.dtype
            and found[key].shape == want.shape)
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        raise ValueError(
            f"{path} does not hold the parameters of this {type(model).__name__} ({shown}); "
            "build the model with the constructor arguments it was trained with, or delete the "
            "file (get_trained_model then trains the model again)."
        )
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(model, state)
    return model


def _fingerprint(dataset: Dataset) -> str:
    """A cheap hash of the data: all labels, a strided sample of pixels, and the shapes."""
    digest = hashlib.sha256()
    for array in (dataset.y_train, dataset.y_test, dataset.x_train[:: 97], dataset.x_test[:: 97]):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _settings(name: str, ds: Dataset, config: TrainConfig) -> dict:
    """Everything a trained model depends on, JSON-normalised; its hash is the cache key."""
    settings = {
        "format": _CHECKPOINT_FORMAT,
        "model": name,
        "dataset": ds.name,
        "data_fingerprint": _fingerprint(ds),
        "config": dataclasses.asdict(config) | {"model_kwargs": dict(config.model_kwargs)},
    }
    try:
        return json.loads(json.dumps(settings, sort_keys=True))
    except TypeError as exc:
        raise TypeError(
            f"config.model_kwargs must hold JSON values (numbers, strings, lists, dicts) to "
            f"enter the cache key; got {dict(config.model_kwargs)!r} ({exc})."
        ) from exc


def _path_safe(name: str) -> str:
    """``name`` with every character but ``[A-Za-z0-9._-]`` replaced by ``_``, at most 64 of
    them: a model or dataset name can then neither leave the cache folder (``..``, ``/``,
    absolute paths, NUL) nor make a file name too long. Names that escape alike still get
    different folders, because the cache key hashes the original names."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64]


def _resolve(name: str, dataset: str | Dataset,
             config: TrainConfig | None) -> tuple[Dataset, TrainConfig, dict, Path]:
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
    if config is None:
        if name not in DEFAULT_CONFIGS:
            raise ValueError(f"No default config for {name!r}; pass config=TrainConfig(...).")
        config = DEFAULT_CONFIGS[name]
    _check_config(config)
    if isinstance(dataset, str):
        ds = load_dataset(dataset)
    elif isinstance(dataset, Dataset):
        ds = dataset
    else:
        raise TypeError(f"dataset must be a Dataset or one of {sorted(DATASETS)}, got "
                        f"{type(dataset).__name__}.")
    _check_n_train(config, ds)
    settings = _settings(name, ds, config)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = f"{_path_safe(name)}-{_path_safe(ds.name)}-{key}"
    return ds, config, settings, cache_dir() / "models" / folder


def checkpoint_dir(name: str, dataset: str | Dataset = "fashion_mnist",
                   config: TrainConfig | None = None) -> Path:
    """The cache folder of :func:`get_trained_model` for these arguments (may not exist yet)."""
    return _resolve(name, dataset, config)[3]


def get_trained_model(name: str, dataset: str | Dataset = "fashion_mnist",
                      config: TrainConfig | None = None, *, progress: bool = True,
                      retrain: bool = False) -> TrainedModel:
    """The model ``name`` trained on ``dataset``: trained on first use, then loaded from cache.

    Args:
        name: a key of :data:`letcc_jax.zoo.models.MODELS` (``"lenet5"``, ``"repvgg"``, ``"vit"``).
        dataset: a dataset name for :func:`letcc_jax.zoo.data.load_dataset`, or a :class:`Dataset`.
        config: hyper-parameters; default ``DEFAULT_CONFIGS[name]``.
        progress: show progress bars while training.
        retrain: train again even if a checkpoint exists, and overwrite it.

    Returns:
        A :class:`TrainedModel`: the model in eval mode and its record (``test_accuracy``,
        ``train_seconds``, ``final_train_loss``, the configuration, library versions).
    """
    ds, config, settings, folder = _resolve(name, dataset, config)
    model = make_model(name, ds.image_shape, ds.num_classes, seed=config.seed,
                       **config.model_kwargs)
    checkpoint, record_path = folder / "state.msgpack", folder / "record.json"
    if not retrain and checkpoint.is_file() and record_path.is_file():
        load_checkpoint(model, checkpoint)
        model.eval()
        try:
            return TrainedModel(model, json.loads(record_path.read_text()))
        except ValueError as exc:
            raise ValueError(f"{record_path} is corrupt ({exc}); delete {folder} or pass "
                             "retrain=True.") from exc

    log = train_model(model, ds, config, progress=progress)
    record = settings | {
        "test_accuracy": log.test_accuracy,
        "train_seconds": round(log.seconds, 2),
        "steps": int(log.losses.shape[0]),
        "final_train_loss": float(log.losses[-50:].mean()),  # mean of the last 50 steps
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
        "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    }
    save_checkpoint(model, checkpoint)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False) as tmp:
        json.dump(record, tmp, indent=2)
    os.replace(tmp.name, record_path)
    return TrainedModel(model, record)
