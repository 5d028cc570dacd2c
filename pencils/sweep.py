"""Parameter sweeps: learning curves and phase diagrams, chunked, with progress and executors.

A model function (e.g. :func:`pencils.models.dsm.errors`) is already vectorised
over numpy arrays; :func:`sweep` lays a grid over some of its parameters, splits
it into chunks, evaluates the chunks (in this process or on any
:class:`concurrent.futures.Executor`, e.g. a process pool or a dask.distributed
``Client.get_executor()``), shows a progress bar on long runs, and returns the
fields on the grid.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Mapping

import mpmath
import numpy as np

from .errors import ParameterError
from .validation import check_positive_int

__all__ = ["Sweep", "sweep", "write_csv"]


@dataclass(frozen=True)
class Sweep:
    """Fields of a model on a grid of parameters.

    Attributes
    ----------
    axes : dict
        ``{name: 1-D array}``, in grid order.
    values : dict
        ``{field: array}`` with shape ``tuple(len(axis) for axis in axes)``.
    fixed : dict
        The parameters held fixed.
    """

    axes: dict
    values: dict
    fixed: dict

    def __getitem__(self, field: str) -> np.ndarray:
        return self.values[field]

    def rows(self) -> list:
        """One dict per grid point: the swept parameters, the fixed ones, then the fields.

        Fields computed in arbitrary precision stay mpmath numbers (every digit is kept).
        """
        grids = np.meshgrid(*self.axes.values(), indexing="ij")
        points = {name: grid.reshape(-1) for name, grid in zip(self.axes, grids)}
        return _rows(points, self.fixed, {field: np.reshape(values, -1) for field, values in self.values.items()})

    def to_csv(self) -> str:
        """The sweep as CSV text with a header of column names (mpmath numbers with all their digits)."""
        buffer = io.StringIO()
        write_csv(self.rows(), buffer, header=True)
        return buffer.getvalue()


def write_csv(rows: list, stream, header: bool) -> None:
    """Write ``rows`` (dicts of one sweep) as CSV to ``stream``, after a header line if ``header``.

    An mpmath number is written with the ``dps`` digits of its row (if the row has ``dps``),
    else with the digits its mantissa holds, never rounded to a double.
    """
    if not rows:
        return
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows({key: _text(value, row.get("dps")) for key, value in row.items()} for row in rows)


def _text(value, dps):
    if isinstance(value, (mpmath.mpf, mpmath.mpc)):
        digits = dps or mpmath.libmp.prec_to_dps(max(53, int(abs(value.real)._mpf_[1]).bit_length() + 1))
        return mpmath.nstr(value, int(digits), min_fixed=-4, max_fixed=6)
    return value


def _rows(points: dict, fixed: dict, values: dict) -> list:
    """The rows of consecutive grid points: ``points`` and ``values`` are flat arrays of one length."""
    count = len(next(iter(points.values())))
    return [
        {**{name: column[k].item() for name, column in points.items()}, **fixed,
         **{field: _scalar(column[k]) for field, column in values.items()}}
        for k in range(count)
    ]


def _scalar(value):
    if isinstance(value, (mpmath.mpf, mpmath.mpc)):
        return value
    try:
        return float(value)
    except TypeError:
        return value


def _as_dict(result) -> dict:
    if isinstance(result, Mapping):
        return dict(result)
    if dataclasses.is_dataclass(result):
        values = {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
        if hasattr(type(result), "gap"):
            values["gap"] = result.gap
        return values
    return {"value": result}


def _evaluate(function: Callable, chunk: dict, fixed: dict) -> dict:
    return {key: np.asarray(value) for key, value in _as_dict(function(**chunk, **fixed)).items()}


def sweep(
    function: Callable,
    grid: Mapping,
    *,
    chunk_size: int = 2500,
    executor: Executor | None = None,
    progress: bool | None = None,
    on_rows: Callable[[list], None] | None = None,
    **fixed,
) -> Sweep:
    r"""Evaluate a vectorised model on the Cartesian grid of ``grid``.

    Parameters
    ----------
    function : callable
        A model taking the swept and fixed parameters as keywords and returning
        a dataclass (its fields, and ``gap`` if defined), a dict, or an array.
    grid : dict
        ``{parameter: 1-D array}``; the result has one axis per entry, in order.
    chunk_size : int
        Grid points per call of ``function`` (a positive integer).
    executor : concurrent.futures.Executor, optional
        Evaluates the chunks (``function`` must then be picklable, e.g. a module-level function).
    progress : bool, optional
        Show a tqdm progress bar (on standard error, once the run has taken a second);
        by default when there is more than one chunk.
    on_rows : callable, optional
        Called with the rows of each chunk (see :meth:`Sweep.rows`) as soon as it is
        done, in grid order: e.g. to write them out while later chunks are computed.
    **fixed
        Parameters held fixed.

    Returns
    -------
    Sweep

    Examples
    --------
    A learning curve of the random-features test error over ``psi_p``:

    >>> import numpy as np
    >>> from pencils.sweep import sweep
    >>> from pencils.models import random_features
    >>> curve = sweep(random_features.errors, {"psi_p": np.array([0.5, 1.0, 2.0])}, psi_n=2.0, lam=0.1)
    >>> curve["test"].shape
    (3,)
    >>> curve.to_csv().splitlines()[0]
    'psi_p,psi_n,lam,test,train,gap'
    """
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if not isinstance(grid, Mapping) or not grid:
        raise ParameterError("grid is empty; give at least one parameter to sweep, e.g. {'psi_p': np.logspace(-1, 2, 50)}.")
    axes = {name: np.asarray(values).reshape(-1) for name, values in grid.items()}
    for name, values in axes.items():
        if values.size == 0:
            raise ParameterError(f"the axis {name} is empty.")
    shape = tuple(values.size for values in axes.values())
    flat = {name: values.reshape(-1) for name, values in zip(axes, np.meshgrid(*axes.values(), indexing="ij"))}
    total = int(np.prod(shape))
    chunks = [{name: values[start : start + chunk_size] for name, values in flat.items()}
              for start in range(0, total, chunk_size)]
    if executor is None:
        iterator = (_evaluate(function, chunk, fixed) for chunk in chunks)
    else:
        futures = [executor.submit(_evaluate, function, chunk, fixed) for chunk in chunks]
        iterator = (future.result() for future in futures)
    if progress if progress is not None else len(chunks) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(chunks), desc=getattr(function, "__qualname__", "sweep"), unit="chunk",
                        delay=1.0)
    pieces = []
    for piece, chunk in zip(iterator, chunks):
        count = len(next(iter(chunk.values())))
        pieces.append({field: np.broadcast_to(values, (count,)) for field, values in piece.items()})
        if on_rows is not None:
            on_rows(_rows(chunk, dict(fixed), pieces[-1]))
    values = {field: np.concatenate([piece[field] for piece in pieces]).reshape(shape) for field in pieces[0]}
    return Sweep(axes, values, dict(fixed))
