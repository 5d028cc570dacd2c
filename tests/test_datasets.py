"""pencils.datasets: the IDX reader and the MNIST-format loaders on tiny files written here, and the digits.

The IDX files are written byte by byte from the format's definition (magic number, big-endian
dimensions, data), independently of the reader.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from pencils.datasets import DataError, Dataset, digits, fashion_mnist, mnist, read_idx
from pencils.errors import ParameterError, PencilsError

TYPE_CODES = {np.uint8: 0x08, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def _idx_bytes(array: np.ndarray) -> bytes:
    code = TYPE_CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_mnist(directory, train_images, train_labels, test_images, test_labels, compress):
    names = {
        "train-images-idx3-ubyte": train_images, "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": test_images, "t10k-labels-idx1-ubyte": test_labels,
    }
    for name, array in names.items():
        data = _idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


@pytest.fixture
def tiny():
    rng = np.random.default_rng(5)
    return {
        "train_images": rng.integers(0, 256, size=(12, 4, 6), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=12, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(7, 4, 6), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=7, dtype=np.uint8),
    }


@pytest.mark.parametrize("dtype", list(TYPE_CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, dtype, compress):
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 20).astype(dtype) if dtype != np.uint8 else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    data = _idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    read = read_idx(path)
    assert read.shape == array.shape and read.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(read, array)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_directory_raw_values(tmp_path, tiny, compress):
    _write_mnist(tmp_path, **tiny, compress=compress)
    data = mnist(tmp_path, normalise=False)
    assert isinstance(data, Dataset) and data.shape == (4, 6) and data.name == "mnist"
    assert data.train.shape == (12, 24) and data.held_out.shape == (7, 24)
    # all images, in file order (indices sorted), unchanged without normalisation
    np.testing.assert_array_equal(data.train, tiny["train_images"].reshape(12, 24).astype(float))
    np.testing.assert_array_equal(data.held_out_labels, tiny["test_labels"])


def test_normalisation_and_downsampling_by_hand(tmp_path, tiny):
    _write_mnist(tmp_path, **tiny, compress=True)
    data = fashion_mnist(tmp_path, n=5, held_out=3, downsample=2, seed=1)
    assert data.name == "fashion-mnist" and data.shape == (2, 3) and data.train.shape == (5, 6)
    # recompute from the raw files: the same seeded choice, 2 x 2 block means, training mean and scale
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(1).spawn(2))
    index = np.sort(train_rng.choice(12, 5, replace=False))
    raw = tiny["train_images"][index].astype(float)
    blocks = np.array([[[raw[k, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean() for j in range(3)] for i in range(2)]
                       for k in range(5)]).reshape(5, 6)
    centred = blocks - blocks.mean(axis=0)
    expected = centred / np.sqrt(np.mean(np.sum(centred**2, axis=1)) / 6)
    np.testing.assert_allclose(data.train, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.mean(np.sum(data.train**2, axis=1)), 6.0, rtol=1e-12)  # E||x||^2 = d
    np.testing.assert_allclose(data.train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.images(data.train), blocks.reshape(5, 2, 3), rtol=1e-12, atol=1e-10)


def test_mnist_from_npz(tmp_path, tiny):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=tiny["train_images"], y_train=tiny["train_labels"],
             x_test=tiny["test_images"], y_test=tiny["test_labels"])
    from_npz = mnist(path, n=6, held_out=4, seed=3)
    _write_mnist(tmp_path, **tiny, compress=False)
    from_idx = mnist(tmp_path, n=6, held_out=4, seed=3)
    np.testing.assert_array_equal(from_npz.train, from_idx.train)
    np.testing.assert_array_equal(from_npz.held_out, from_idx.held_out)


def test_bad_paths_and_formats_say_what_is_wrong(tmp_path, tiny):
    with pytest.raises(DataError, match="does not exist.*never downloaded"):
        mnist(tmp_path / "nowhere")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        mnist(tmp_path)  # an empty directory
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(DataError, match="neither a directory of IDX files nor an .npz"):
        mnist(other)
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_mnist(bad, **tiny, compress=False)
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x99\x03junk")
    with pytest.raises(DataError, match="not an IDX file"):
        mnist(bad)
    (bad / "train-images-idx3-ubyte").write_bytes(_idx_bytes(tiny["train_images"])[:-5])
    with pytest.raises(DataError, match="bytes, but its header"):
        mnist(bad)
    (bad / "train-images-idx3-ubyte").write_bytes(_idx_bytes(tiny["train_images"][:5]))
    with pytest.raises(DataError, match="do not match"):
        mnist(bad)
    (bad / "t10k-labels-idx1-ubyte.gz").unlink(missing_ok=True)
    gz = tmp_path / "x.idx.gz"
    gz.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(gz)
    npz = tmp_path / "partial.npz"
    np.savez(npz, x_train=tiny["train_images"])
    with pytest.raises(DataError, match="lacks the arrays"):
        mnist(npz)
    assert issubclass(DataError, PencilsError)


def test_bad_arguments(tmp_path, tiny):
    _write_mnist(tmp_path, **tiny, compress=False)
    with pytest.raises(ParameterError, match="does not divide"):
        mnist(tmp_path, downsample=4)  # 4 x 6 images
    with pytest.raises(ParameterError, match="exceeds the 12 images"):
        mnist(tmp_path, n=13)
    with pytest.raises(ParameterError, match="n must be an integer"):
        mnist(tmp_path, n=0)
    with pytest.raises(ParameterError, match="path must be"):
        mnist(3)


def test_digits():
    data = digits(n=300, held_out=300)
    assert data.train.shape == (300, 64) and data.held_out.shape == (300, 64) and data.shape == (8, 8)
    np.testing.assert_allclose(np.mean(np.sum(data.train**2, axis=1)), 64.0, rtol=1e-12)
    # pixel values are 0..16 and the split is disjoint: no held-out image equals a training image row-wise
    pixels = data.images(np.concatenate([data.train, data.held_out]))
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-9)
    assert pixels.min() > -1e-9 and pixels.max() < 16 + 1e-9
    assert len(set(map(bytes, np.round(pixels).astype(np.uint8)))) >= 590  # (the digits have a few duplicates)
    small = digits(n=10, held_out=0, downsample=2)
    assert small.train.shape == (10, 16) and small.held_out.shape == (0, 16)
    with pytest.raises(ParameterError, match="exceeds"):
        digits(n=1500, held_out=400)
