"""The :class:`Activation` class, its closed forms (:class:`ClosedForm`) and the split of its variance."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import mpmath
import numpy as np

from .. import precision
from ..errors import ParameterError
from ._arithmetic import Real, arithmetic, to_complement, to_correlation, to_mpf, to_output
from ._integrals import evaluate_kernel, evaluate_moments
from ._split import quadrature_split


class ClosedForm(NamedTuple):
    r"""Closed-form Gaussian moments of an activation.

    Each entry takes an arithmetic namespace ``m`` (and ``kernel`` also the
    correlation ``r``) providing ``one``, ``pi``, ``sqrt``, ``exp``,
    ``expm1``, ``log1p``, ``sin``, ``cos``, ``sinh``, ``cosh``, ``asin``,
    ``acos`` and ``select(condition, a, b)``, so that one formula serves
    both float64 (numpy, vectorised in ``r``) and mpmath.  Write rational
    constants as ``2 * m.one / 3``, not ``2 / 3``, to keep them exact.

    The optional ``split(r, q, m)``, with ``q = 1 - r`` given separately,
    returns the ``(shared, private)`` variances of
    :meth:`Activation.correlated_split` written without cancellation; without
    it they come from the kernel and the Hermite series (see "Split without
    cancellation" in the docstring of :mod:`pencils.activations`).

    Examples
    --------
    The activation :math:`\rho(x) = x^2` has :math:`\mu_0 = 1`, :math:`\mu_1 = 0`,
    :math:`\|\rho\|^2 = 3` and :math:`c(r) = 1 + 2r^2`:

    >>> square = Activation(
    ...     "square", np.square, lambda x: x * x,
    ...     closed_form=ClosedForm(
    ...         mu0=lambda m: m.one,
    ...         mu1=lambda m: 0 * m.one,
    ...         second_moment=lambda m: 3 * m.one,
    ...         kernel=lambda r, m: 1 + 2 * r * r,
    ...     ),
    ... )
    >>> square.kernel(np.array([0.0, 0.5]))
    array([1. , 1.5])
    """

    mu0: Callable[[Any], Real]
    mu1: Callable[[Any], Real]
    second_moment: Callable[[Any], Real]
    kernel: Callable[[Real, Any], Real]
    split: Callable[[Real, Real, Any], tuple[Real, Real]] | None = None


class CorrelatedSplit(NamedTuple):
    r"""Gaussian-equivalent split of the centred activation for two correlated inputs.

    For :math:`g, g'` standard normal with correlation :math:`r`, write
    :math:`\rho(g) - \mu_0 = \mu_1 g + \eta` and :math:`\rho(g') - \mu_0 =
    \mu_1 g' + \eta'`.  The nonlinear parts :math:`\eta, \eta'` have variance
    ``total`` and covariance ``shared``; Gaussian equivalence models them as
    :math:`\eta = \xi_0 + \xi`, :math:`\eta' = \xi_0 + \xi'` with independent
    centred Gaussians of variances ``shared`` (:math:`\xi_0`) and ``private``
    (:math:`\xi, \xi'`).

    Attributes
    ----------
    shared : float, numpy.ndarray or mpmath.mpf
        :math:`c(r) - \mu_0^2 - r\mu_1^2`, the nonlinear variance common to
        both inputs (``v0**2`` in the diffusion application, where
        :math:`r = a^2 = e^{-2t}`).
    private : float, numpy.ndarray or mpmath.mpf
        :math:`(\|\rho\|^2 - \mu_0^2) - (c(r) - \mu_0^2) - (1 - r)\mu_1^2`,
        the nonlinear variance independent between the inputs (``s**2``).
    total : float or mpmath.mpf
        :math:`\|\rho\|^2 - \mu_0^2 - \mu_1^2 =` ``shared + private``, the
        whole nonlinear variance (``v**2``); it does not depend on :math:`r`.
    """

    shared: Real
    private: Real
    total: Real


@dataclass(frozen=True, eq=False)
class Activation:
    r"""An activation function with its Gaussian moments.

    Parameters
    ----------
    name : str
        Label used in messages and in :data:`REGISTRY`.
    numpy_fn : callable
        Vectorised float implementation, ``numpy_fn(x_array) -> array``.
    mpmath_fn : callable
        Scalar arbitrary-precision implementation, ``mpmath_fn(mpf) -> mpf``.
        It receives numbers of the calling thread's private mpmath context
        (:mod:`pencils.precision`; test for them with ``hasattr(x, "_mpf_")``)
        and must compute in it: with arithmetic operators, or with that
        context's functions (``pencils.precision.Function("erf")``).  The
        global ``mpmath.erf`` would compute at the caller's ``mpmath.mp.dps``
        and is refused.
    closed_form : ClosedForm, optional
        Exact moments; without them the moments come from the quadrature
        described in the docstring of :mod:`pencils.activations`, which assumes that the activation
        is smooth except possibly at 0.

    Notes
    -----
    Every method takes ``dps``: ``None`` gives float64 results (numpy arrays
    where ``r`` is an array), an integer ``k`` gives mpmath numbers accurate
    to about ``k`` digits (``r`` must then be a scalar; pass it as a string,
    integer, fraction or ``mpf`` to avoid binary rounding of decimals).
    ``mu0``, ``mu1`` and ``second_moment`` are cached per ``(activation,
    dps)``.  Instances compare and hash by identity.

    Examples
    --------
    >>> act = Activation("cube", lambda x: x**3, lambda x: x**3)
    >>> round(act.mu1(), 12), round(act.second_moment(), 12)
    (3.0, 15.0)
    >>> act(np.array([-1.0, 2.0]))
    array([-1.,  8.])
    """

    name: str
    numpy_fn: Callable[[np.ndarray], np.ndarray]
    mpmath_fn: Callable[[Any], Any]
    closed_form: ClosedForm | None = field(default=None, kw_only=True)
    closed_form_at_variance: Callable[[Any], ClosedForm] | None = field(default=None, kw_only=True)

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"

    def __call__(self, x: Any) -> np.ndarray:
        """Evaluate the float implementation, ``numpy_fn(x)``."""
        return self.numpy_fn(x)

    def at_variance(self, variance: Any) -> Activation:
        r"""The activation seen by inputs of variance :math:`v`: :math:`x \mapsto \rho(\sqrt v\,x)`.

        Its moments are those of :math:`\rho` for :math:`g \sim \mathcal N(0, v)`
        (e.g. :math:`\mu_1 = E\,g\rho(\sqrt v g)`, with :math:`g` standard).
        The named activations keep closed forms (``closed_form_at_variance``):
        ReLU, :math:`|x|` and :math:`x` scale (:math:`\mu` by :math:`\sqrt v`,
        second moments by :math:`v`); erf has :math:`c(r) = (2/\pi)\arcsin(br)`
        with :math:`b = 2v/(1 + 2v)` and :math:`\mu_1 = \sqrt{2b/\pi}`; sin
        and cos have :math:`c(r) = e^{-v}\sinh(vr)` and :math:`e^{-v}\cosh(vr)`.
        Other activations use the quadrature.

        Parameters
        ----------
        variance : float, str, fraction or mpmath number
            :math:`v > 0`; pass a string or fraction to keep it exact at high precision.

        Examples
        --------
        >>> from pencils.activations import erf, relu, tanh
        >>> wide = erf.at_variance(2)
        >>> round(wide.mu1(), 15) == round(2 * math.sqrt(2 / (5 * math.pi)), 15)
        True
        >>> round(relu.at_variance(4).second_moment(), 15)  # 4 * 1/2
        2.0
        >>> round(tanh.at_variance("0.5").mu1(), 12)  # E g tanh(g / sqrt 2), by quadrature
        0.513588407994
        """
        try:
            value = float(variance)
        except (TypeError, ValueError):
            raise ParameterError(f"variance must be a positive real number; got {variance!r}.") from None
        if not (0 < value < math.inf):
            raise ParameterError(f"variance must be a positive, finite real number; got {variance!r}.")
        scale = math.sqrt(value)

        def numpy_fn(x: np.ndarray) -> np.ndarray:
            return self.numpy_fn(scale * np.asarray(x))

        def mpmath_fn(x: mpmath.mpf) -> mpmath.mpf:
            return self.mpmath_fn(precision.context().sqrt(to_mpf(variance)) * x)

        family = self.closed_form_at_variance
        return Activation(f"{self.name} at variance {variance}", numpy_fn, mpmath_fn,
                          closed_form=None if family is None else family(variance))

    def mu0(self, dps: int | None = None) -> Real:
        r"""Mean :math:`\mu_0 = E\,\rho(g)`.

        Examples
        --------
        >>> from pencils.activations import relu
        >>> relu.mu0()  # 1/sqrt(2 pi)
        0.3989422804014327
        >>> mpmath.nstr(relu.mu0(dps=30), 30)
        '0.398942280401432677939946059934'
        """
        return evaluate_moments(self, dps)[0]

    def mu1(self, dps: int | None = None) -> Real:
        r"""Linear coefficient :math:`\mu_1 = E\,g\,\rho(g) = E\,\rho'(g)`.

        Examples
        --------
        >>> from pencils.activations import erf, tanh
        >>> erf.mu1()  # 2/sqrt(3 pi)
        0.6514700158705599
        >>> round(tanh.mu1(), 12)
        0.605705509602
        """
        return evaluate_moments(self, dps)[1]

    def second_moment(self, dps: int | None = None) -> Real:
        r"""Second moment :math:`\|\rho\|^2 = E\,\rho(g)^2 = c(1)`.

        Examples
        --------
        >>> from pencils.activations import relu, sin
        >>> relu.second_moment()
        0.5
        >>> mpmath.nstr(sin.second_moment(dps=25), 25)  # (1 - e^{-2}) / 2
        '0.4323323583816936540530003'
        """
        return evaluate_moments(self, dps)[2]

    def kernel(self, r: Any, dps: int | None = None) -> Real:
        r"""Kernel :math:`c(r) = E\,\rho(g)\rho(g')` for :math:`\mathrm{corr}(g, g') = r`.

        Parameters
        ----------
        r : float, array_like or (with ``dps``) a real scalar
            Correlation(s) in :math:`[-1, 1]`.
        dps : int, optional
            Decimal digits; ``None`` for float64.

        Returns
        -------
        float, numpy.ndarray or mpmath.mpf
            Same shape as ``r`` in float.

        Raises
        ------
        ValueError
            If some ``r`` lies outside :math:`[-1, 1]` (or is NaN).

        Examples
        --------
        >>> from pencils.activations import erf, relu, tanh
        >>> relu.kernel([0.0, 1.0])  # mu0^2 = 1/(2 pi), ||relu||^2 = 1/2
        array([0.15915494, 0.5       ])
        >>> mpmath.nstr(erf.kernel("0.75", dps=20), 20)  # (2/pi) asin(1/2) = 1/3
        '0.33333333333333333333'
        >>> round(tanh.kernel(0.5), 12)
        0.186324413203
        """
        with arithmetic(dps) as m:
            return precision.public(evaluate_kernel(self, to_correlation(r, m), m))

    def correlated_split(self, r: Any, dps: int | None = None, *, complement: Any = None) -> CorrelatedSplit:
        r"""Variances of the shared and private nonlinear noise at correlation ``r``.

        See :class:`CorrelatedSplit`; ``r`` and ``dps`` as in :meth:`kernel`.
        Both variances are sums of non-negative Hermite terms,
        :math:`\sum_{k\ge2} c_k^2 r^k` and :math:`\sum_{k\ge2} c_k^2 (1 - r^k)`,
        and are computed without the cancellation of the defining differences
        (see "Split without cancellation" in the docstring of :mod:`pencils.activations`): to full
        relative accuracy even for :math:`r` near 0 or 1, for
        :math:`r \in [0, 1]`.

        Parameters
        ----------
        complement : float, array_like or real scalar, optional
            :math:`1 - r`, when it is known more accurately than by subtracting
            ``r`` from 1 (e.g. ``-expm1(-2 t)`` for ``r = exp(-2 t)``); it fixes
            the private variance near :math:`r = 1`.  It must match ``1 - r``
            to at least 10 digits.

        Examples
        --------
        >>> from pencils.activations import linear, relu
        >>> split = linear.correlated_split(0.3)  # a linear map has no noise
        >>> split.shared, split.private, split.total
        (0.0, 0.0, 0.0)
        >>> split = relu.correlated_split(np.array([0.0, 0.5, 1.0]))
        >>> split.shared  # zero at r = 0, the whole nonlinear variance at r = 1
        array([0.        , 0.02034395, 0.09084506])
        >>> bool(np.allclose(split.shared + split.private, split.total))
        True
        """
        with arithmetic(dps) as m:
            mu0, mu1, second = (m.number(value) for value in evaluate_moments(self, dps))
            r = to_correlation(r, m)
            q = 1 - r if complement is None else to_complement(complement, r, m)
            form = self.closed_form
            if form is not None and form.split is not None:
                shared, private = (np.broadcast_to(m.number(v), np.shape(r)) if m.dps is None else v
                                   for v in form.split(r, q, m))
            else:
                shared, private = quadrature_split(self, np.asarray(r) if m.dps is None else r, q, m)
            return CorrelatedSplit(
                shared=precision.public(to_output(shared, m)),
                private=precision.public(to_output(private, m)),
                total=precision.public(to_output(second - mu0**2 - mu1**2, m)),
            )
