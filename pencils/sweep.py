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

import numpy as np

from .errors import ParameterError

__all__ = ["Sweep", "sweep"]


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
        """One dict per grid point: the swept parameters, the fixed ones, then the fields."""
        names = list(self.axes)
        grids = np.meshgrid(*self.axes.values(), indexing="ij")
        result = []
        for index in np.ndindex(*grids[0].shape) if grids else [()]:
            row = {name: grid[index].item() for name, grid in zip(names, grids)}
            row.update({name: value for name, value in self.fixed.items()})
            row.update({field: _scalar(values[index]) for field, values in self.values.items()})
            result.append(row)
        return result

    def to_csv(self) -> str:
        """The sweep as CSV text with a header of column names."""
        rows = self.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def _scalar(value):
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
        Grid points per call of ``function``.
    executor : concurrent.futures.Executor, optional
        Evaluates the chunks (``function`` must then be picklable, e.g. a module-level function).
    progress : bool, optional
        Show a tqdm progress bar; by default when there is more than one chunk.
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
    if not grid:
        raise ParameterError("grid is empty; give at least one parameter to sweep, e.g. {'psi_p': np.logspace(-1, 2, 50)}.")
    axes = {name: np.asarray(values).reshape(-1) for name, values in grid.items()}
    for name, values in axes.items():
        if values.size == 0:
            raise ParameterError(f"the axis {name} is empty.")
    shape = tuple(values.size for values in axes.values())
    flat = [grid_values.reshape(-1) for grid_values in np.meshgrid(*axes.values(), indexing="ij")]
    total = flat[0].size
    starts = list(range(0, total, max(1, int(chunk_size))))
    chunks = [{name: values[s : s + chunk_size] for name, values in zip(axes, flat)} for s in starts]
    show = progress if progress is not None else len(chunks) > 1
    if executor is None:
        iterator = (_evaluate(function, chunk, fixed) for chunk in chunks)
    else:
        futures = [executor.submit(_evaluate, function, chunk, fixed) for chunk in chunks]
        iterator = (future.result() for future in futures)
    if show:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(chunks), desc=getattr(function, "__qualname__", "sweep"), unit="chunk")
    pieces = list(iterator)
    values = {}
    for field in pieces[0]:
        parts = [np.broadcast_to(piece[field], (len(chunk[next(iter(axes))]),)) for piece, chunk in zip(pieces, chunks)]
        values[field] = np.concatenate(parts).reshape(shape)
    return Sweep(axes, values, dict(fixed))
