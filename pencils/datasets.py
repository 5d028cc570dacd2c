r"""Image data sets for the diffusion experiments, as normalised ``(n, d)`` arrays.

* :func:`digits`: scikit-learn's bundled 8 x 8 handwritten digits (1797 images,
  no download; needs the optional ``[data]`` extra, i.e. scikit-learn);
* :func:`mnist` and :func:`fashion_mnist`: MNIST / Fashion-MNIST (28 x 28) read from
  files the user already has, never downloaded: a directory holding the four IDX
  files in their usual names (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each possibly ``.gz``), or
  an ``.npz`` file with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``
  (the layout of ``keras.datasets``);
* :func:`read_idx`: any IDX file (the format of LeCun's MNIST distribution).

Normalisation (``normalise=True``, the default): with ``mu`` the per-pixel mean of
the training images and ``sigma^2 = (1/(n d)) sum_i ||x_i - mu||^2`` their mean
squared deviation, every image becomes ``(x - mu) / sigma``.  The training images
are then centred with ``(1/n) sum_i ||x_i||^2 = d``, the scale of ``N(0, I_d)`` that
the random-features score model and the Ornstein-Uhlenbeck forward process assume
(at large ``t`` the noisy data tend to ``N(0, I_d)``).  Held-out images use the
training ``mu`` and ``sigma``.  :meth:`Dataset.images` undoes it for display.

Downsampling (``downsample=k``): each ``k x k`` block of pixels is replaced by its
average (``k`` must divide the image sides), so 28 x 28 becomes 14 x 14 for ``k = 2``.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError, PencilsError

__all__ = ["Dataset", "DataError", "digits", "mnist", "fashion_mnist", "read_idx"]

# IDX element types: the third byte of the magic number.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(PencilsError):
    """A data file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True)
class Dataset:
    """Training and held-out images, flattened and normalised.

    Attributes
    ----------
    train : ndarray, shape (n, d)
        Training images, one per row (normalised unless ``normalise=False``).
    held_out : ndarray, shape (n_held_out, d)
        Images not in ``train``, normalised with the training statistics.
    train_labels, held_out_labels : ndarray of int
        Their classes.
    shape : tuple of int
        Image shape ``(rows, columns)``, ``rows * columns = d``.
    mean : ndarray, shape (d,)
        Per-pixel training mean ``mu`` subtracted (zeros without normalisation).
    scale : float
        Training scale ``sigma`` divided by (1 without normalisation).
    name : str
    """

    train: np.ndarray
    held_out: np.ndarray
    train_labels: np.ndarray
    held_out_labels: np.ndarray
    shape: tuple
    mean: np.ndarray
    scale: float
    name: str

    @property
    def n(self) -> int:
        """Number of training images."""
        return self.train.shape[0]

    @property
    def d(self) -> int:
        """Dimension (pixels per image)."""
        return self.train.shape[1]

    def images(self, x: np.ndarray) -> np.ndarray:
        """Rows ``x`` (normalised, shape ``(k, d)``) as images ``(k, rows, columns)`` in pixel units."""
        x = np.asarray(x, dtype=float)
        return (x * self.scale + self.mean).reshape(x.shape[:-1] + tuple(self.shape))


def _count(value: Any, name: str, available: int, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ParameterError(f"{name} must be an integer >= {0 if allow_zero else 1}, got {value!r}")
    if value > available:
        raise ParameterError(f"{name} = {value} exceeds the {available} images available; pass {name} <= {available}")
    return int(value)


def _block_average(images: np.ndarray, factor: int) -> np.ndarray:
    """Average over ``factor x factor`` pixel blocks of ``(k, rows, columns)`` images."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ParameterError(f"downsample must be an integer >= 1, got {factor!r}")
    k, rows, columns = images.shape
    if rows % factor or columns % factor:
        raise ParameterError(
            f"downsample = {factor} does not divide the image shape {rows} x {columns}; "
            f"pass a divisor of both sides (e.g. {math.gcd(rows, columns)})"
        )
    blocks = images.reshape(k, rows // factor, factor, columns // factor, factor)
    return blocks.mean(axis=(2, 4))


def _build(name, train, train_labels, held_out, held_out_labels, downsample, normalise) -> Dataset:
    """Downsample, flatten and (optionally) normalise with the training statistics."""
    train = _block_average(np.asarray(train, dtype=float), downsample)
    held_out = _block_average(np.asarray(held_out, dtype=float), downsample)
    shape = train.shape[1:]
    d = math.prod(shape)
    train, held_out = train.reshape(len(train), d), held_out.reshape(len(held_out), d)
    if normalise:
        mean = train.mean(axis=0)
        scale = math.sqrt(float(np.sum((train - mean) ** 2)) / (len(train) * d))
        if not scale > 0.0:
            raise ParameterError("the training images are all equal: they cannot be normalised; pass more images")
    else:
        mean, scale = np.zeros(d), 1.0
    return Dataset(
        train=(train - mean) / scale,
        held_out=(held_out - mean) / scale,
        train_labels=np.asarray(train_labels, dtype=int),
        held_out_labels=np.asarray(held_out_labels, dtype=int),
        shape=tuple(int(s) for s in shape),
        mean=mean,
        scale=scale,
        name=name,
    )


def digits(n: int = 300, held_out: int = 300, downsample: int = 1, normalise: bool = True, seed: Any = 0) -> Dataset:
    """scikit-learn's bundled 8 x 8 handwritten digits (1797 images, pixel values 0..16).

    ``n`` training and ``held_out`` other images, drawn without replacement in a random
    order given by ``seed`` (so the classes are mixed); normalised as described in the
    module docstring.

    Parameters
    ----------
    n, held_out : int
        Numbers of training and held-out images, ``n + held_out <= 1797``.
    downsample : int
        Block-average factor (1, 2, 4 or 8).
    normalise : bool
        Centre and scale so that the mean squared norm of a training image is ``d``.
    seed : int, sequence of int or None
        Seeds the random split (:func:`numpy.random.default_rng`).

    Raises
    ------
    DataError
        If scikit-learn is not installed (``pip install 'pencils[data]'``).

    Examples
    --------
    >>> from pencils.datasets import digits
    >>> data = digits(n=100, held_out=50)
    >>> data.train.shape, data.held_out.shape, data.shape
    ((100, 64), (50, 64), (8, 8))
    >>> round(float((data.train**2).sum(axis=1).mean()), 10) == data.d
    True
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("digits() needs scikit-learn: pip install 'pencils[data]' (or scikit-learn)") from None
    bunch = load_digits()
    images, labels = bunch.images, bunch.target
    n = _count(n, "n", len(images))
    held_out = _count(held_out, "held_out", len(images) - n, allow_zero=True)
    order = np.random.default_rng(seed).permutation(len(images))
    train_index, held_index = order[:n], order[n : n + held_out]
    return _build("digits", images[train_index], labels[train_index], images[held_index], labels[held_index],
                  downsample, normalise)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed if its name ends in ``.gz``).

    The format: two zero bytes, a type byte (0x08 unsigned byte, 0x09 signed byte,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions,
    then each dimension as a big-endian 32-bit integer, then the data (big-endian, C order).

    Raises
    ------
    DataError
        If the file is missing or not a well-formed IDX file.

    Examples
    --------
    >>> import os, tempfile
    >>> from pencils.datasets import read_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx1-ubyte")
    >>> _ = open(path, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(path)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {str(path)!r} does not exist; pass the path of a file you have")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read {str(path)!r} ({error}); is it a valid (gzip-compressed) IDX file?") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    rank = raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DataError(f"{str(path)!r}: truncated IDX header ({rank} dimensions announced)")
    dims = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{str(path)!r}: {len(raw)} bytes, but its header {dims} of {dtype.name} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_pair(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for stem in _IDX_NAMES[split]:
        candidates = [directory / stem, directory / f"{stem}.gz"]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise DataError(f"{str(directory)!r} has neither {stem} nor {stem}.gz; "
                            "pass the directory holding the four IDX files, or an .npz file")
        arrays.append(read_idx(found))
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{str(directory)!r}: {split} images {images.shape} and labels {labels.shape} do not match "
                        "(expected (k, rows, columns) and (k,))")
    return images, labels


def _npz_pairs(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if key not in archive.files]
            if missing:
                raise DataError(f"{str(path)!r} lacks the arrays {missing} (has {archive.files}); "
                                "expected x_train, y_train, x_test, y_test")
            pairs = {"train": (archive["x_train"], archive["y_train"]), "test": (archive["x_test"], archive["y_test"])}
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {str(path)!r} as an .npz archive ({error})") from None
    for split, (images, labels) in pairs.items():
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{str(path)!r}: x_{split} {images.shape} and y_{split} {labels.shape} do not match "
                            "(expected (k, rows, columns) and (k,))")
    return pairs


def _image_files(name: str, path: Any, n: int | None, held_out: int | None, downsample: int,
                 normalise: bool, seed: Any) -> Dataset:
    """MNIST-format images: ``n`` training images from the training split, ``held_out`` from the test split."""
    if not isinstance(path, (str, Path)):
        raise ParameterError(f"path must be a file or directory name, got {path!r}")
    path = Path(path).expanduser()
    if path.is_dir():
        pairs = {split: _idx_pair(path, split) for split in ("train", "test")}
    elif path.is_file() and path.suffix == ".npz":
        pairs = _npz_pairs(path)
    elif path.exists():
        raise DataError(f"{str(path)!r} is neither a directory of IDX files nor an .npz file")
    else:
        raise DataError(f"{str(path)!r} does not exist; {name} is never downloaded: pass the directory of its "
                        "IDX files (e.g. train-images-idx3-ubyte.gz) or an .npz file (x_train, y_train, x_test, y_test)")
    (train, train_labels), (test, test_labels) = pairs["train"], pairs["test"]
    n = len(train) if n is None else _count(n, "n", len(train))
    held_out = len(test) if held_out is None else _count(held_out, "held_out", len(test), allow_zero=True)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train_index = np.sort(train_rng.choice(len(train), n, replace=False))
    test_index = np.sort(test_rng.choice(len(test), held_out, replace=False))
    return _build(name, train[train_index], train_labels[train_index], test[test_index], test_labels[test_index],
                  downsample, normalise)


_LOADER_DOC = """{title} from files at ``path`` (never downloaded).

    ``n`` training images drawn without replacement (by ``seed``) from the training
    split, ``held_out`` from the test split (``None``: all of them), block-averaged by
    ``downsample`` and normalised as in the module docstring.

    Parameters
    ----------
    path : str or Path
        A directory with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``),
        or an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    n, held_out : int or None
    downsample : int
        Block-average factor dividing 28 (1, 2, 4, 7, 14, 28).
    normalise : bool
    seed : int, sequence of int or None

    Raises
    ------
    DataError
        Missing path or files, or files not in the expected format.

    Examples
    --------
    >>> from pencils.datasets import {function}
    >>> {function}("/no/such/dir")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pencils.datasets.DataError: '/no/such/dir' does not exist; ...
    """


def mnist(path: str | Path, n: int | None = None, held_out: int | None = None, downsample: int = 1,
          normalise: bool = True, seed: Any = 0) -> Dataset:
    return _image_files("mnist", path, n, held_out, downsample, normalise, seed)


def fashion_mnist(path: str | Path, n: int | None = None, held_out: int | None = None, downsample: int = 1,
                  normalise: bool = True, seed: Any = 0) -> Dataset:
    return _image_files("fashion-mnist", path, n, held_out, downsample, normalise, seed)


mnist.__doc__ = _LOADER_DOC.format(title="MNIST handwritten digits (28 x 28)", function="mnist")
fashion_mnist.__doc__ = _LOADER_DOC.format(title="Fashion-MNIST clothing images (28 x 28)", function="fashion_mnist")
