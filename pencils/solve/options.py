"""The options of a solve: one immutable object with named, documented fields, passed per call."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_OPTIONS", "SolverOptions"]


@dataclass(frozen=True)
class SolverOptions:
    """How the solver works and what a float result promises.

    Pass an instance as ``options=`` to :func:`pencils.trace_limit`,
    :func:`pencils.limit`, :meth:`pencils.solve.Solver.target` or
    :meth:`pencils.solve.Solver.solve`; :func:`dataclasses.replace` changes a
    field of the defaults.  The defaults are those every figure of the package
    was measured with.

    Attributes
    ----------
    float_accuracy : float
        The promise of a float result: its relative error is at most this.  A
        point whose rounding-error bound is larger is finished in arbitrary
        precision or reported by a :class:`pencils.errors.PrecisionWarning`.
    finishing_dps : int
        The decimal digits at which such points are finished before they are
        rounded to floats.
    max_finished_unknowns : int
        The largest system whose inaccurate float points are finished
        automatically; larger ones issue a :class:`pencils.errors.PrecisionWarning`.
    max_newton : int
        The most Newton iterations at the requested parameters.
    max_reduced_unknowns : int
        Evaluations in arbitrary precision (``dps``, no Diagonals) of a system of at
        most this many unknowns, which its reduction at least halves, solve it in floats
        and polish the few unknowns of its reduced equations (:mod:`pencils.reduction`,
        kept by the derivation store) instead of the full matrix equation, derivatives
        by the implicit function theorem on them: measured 1.2-3.5 times faster at 50
        digits, one point, warm (``benchmarks/reduction.py``); 0 turns this off.
    anchors : int
        The most points of a batch solved from zero variance before continuation
        from neighbours.
    max_grid_level : int
        The finest grid of continuation from neighbours has ``2**max_grid_level``
        cells per normalised coordinate.
    chunk_entries : int
        The most intermediate values of a Jacobian built at once (8 bytes each).
    batch_points : int
        The most points of an array solved at once by :func:`pencils.trace_limit`
        and :func:`pencils.limit`.  Memory grows with the batch (measured: about
        6 KB a point for the DSM errors at m = inf, 170 KB at m = 4), so larger
        arrays are solved in consecutive batches of this size.
    block_solve_points : int
        Float batches of at least this many points solve Newton's linear systems
        block by block (as do all arbitrary-precision ones); smaller float
        batches are solved densely (each numpy call has a fixed cost).
    first_variance_step : float
        The first step of a path from zero variance (the variance goes from 0 to 1).
    corrector_iterations : int
        The most Newton iterations that correct a predicted point of a path.
    max_correction_ratio : float
        A step of a path is accepted when Newton's correction is at most this
        fraction of the predictor's move (a larger one means a jump to another
        branch or a sharp turn).
    target_correction_ratio : float
        The next step is scaled to aim at this ratio.
    min_step_scale, max_step_scale : float
        The bounds of that scaling; a rejected step is cut by at least ``min_step_scale``.
    min_step : float
        A path whose step falls below this (in its position from 0 to 1) has failed.
    relative_move_floor : float
        The predictor's move is counted as at least this fraction of the size of
        the solution, so that a path along which the solution hardly moves is not
        judged by a ratio to almost nothing.

    Examples
    --------
    >>> import dataclasses
    >>> from pencils import SolverOptions
    >>> dataclasses.replace(SolverOptions(), anchors=1).anchors
    1
    """

    float_accuracy: float = 1e-10
    finishing_dps: int = 30
    max_finished_unknowns: int = 80
    max_newton: int = 60
    max_reduced_unknowns: int = 16
    anchors: int = 4
    max_grid_level: int = 30
    chunk_entries: int = 2**20
    batch_points: int = 2048
    block_solve_points: int = 64
    first_variance_step: float = 1e-2
    corrector_iterations: int = 4
    max_correction_ratio: float = 0.25
    target_correction_ratio: float = 0.1
    min_step_scale: float = 0.25
    max_step_scale: float = 4.0
    min_step: float = 1e-13
    relative_move_floor: float = 1e-6


#: The options of a call that passes none.
DEFAULT_OPTIONS = SolverOptions()
