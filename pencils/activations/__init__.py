r"""Gaussian moments of activation functions.

Gaussian equivalence replaces a random feature :math:`\rho(w \cdot x)` by a
linear function of its pre-activation plus independent Gaussian noise, with
coefficients that are Gaussian moments of the activation :math:`\rho`.  For
standard normal variables :math:`g, g'` with correlation :math:`E[g g'] = r`,

.. math::

    \mu_0 = E\,\rho(g), \qquad
    \mu_1 = E\,g\,\rho(g), \qquad
    \|\rho\|^2 = E\,\rho(g)^2, \qquad
    c(r) = E\,\rho(g)\,\rho(g').

The kernel :math:`c` is defined on :math:`[-1, 1]`, with :math:`c(1) =
\|\rho\|^2`, :math:`c(0) = \mu_0^2` and :math:`c'(0) = \mu_1^2` (Mehler's
formula: :math:`c(r) = \sum_k r^k a_k^2 / k!` with :math:`a_k = E\,\rho(g)
He_k(g)`).

:class:`Activation` evaluates these in two arithmetics, chosen by the ``dps``
argument of every method:

* ``dps=None``: float64, vectorised over numpy arrays of correlations;
* ``dps=k``: mpmath numbers accurate to about ``k`` significant digits,
  computed with :data:`pencils.precision.GUARD_DIGITS` extra digits in the calling thread's private
  context (:mod:`pencils.precision`; the global ``mpmath.mp`` is never changed).

Named activations (:data:`relu`, :data:`erf`, :data:`sin`, ...) use closed
forms where they exist; every other activation, including any Python callable
passed to :func:`get`, goes through the quadrature described below.

Quadrature
----------
Activations are assumed smooth (analytic) except possibly for a kink at 0, as
for ReLU or :math:`|x|`.  In float, the first moments fold the line at 0,

.. math::

    E\,f(g) = \frac{1}{\sqrt{2\pi}} \int_0^\infty e^{-x^2/2}
              \bigl(f(x) + f(-x)\bigr)\,dx ,

and use a Gauss rule for the half-range weight :math:`e^{-x^2/2}` on
:math:`(0, \infty)`; with mpmath, they use :func:`mpmath.quad` (tanh-sinh) on
:math:`(-\infty, 0)` and :math:`(0, \infty)`.  For the kernel, write
:math:`g = u`, :math:`g' = r u + \sqrt{1 - r^2}\,z` with :math:`u, z`
independent standard normals and pass to polar coordinates :math:`(u, z) =
R(\cos\theta, \sin\theta)`: then :math:`g = R\cos\theta`, :math:`g' =
R\cos(\theta - \alpha)` with :math:`\alpha = \arccos r`.  Substituting
:math:`\theta = \varphi + \pi/2` and folding :math:`\varphi \in [\pi, 2\pi)`
onto :math:`[0, \pi)`, which flips the signs of both :math:`g` and :math:`g'`,

.. math::

    c(r) = \frac{1}{2\pi} \int_0^\pi d\varphi \int_0^\infty R\,e^{-R^2/2}
    \Bigl(\rho(-R\sin\varphi)\,\rho\bigl(R\sin(\alpha-\varphi)\bigr)
        + \rho(R\sin\varphi)\,\rho\bigl(-R\sin(\alpha-\varphi)\bigr)\Bigr)\,dR .

On each of :math:`\varphi \in (0, \alpha)` and :math:`(\alpha, \pi)` neither
argument of :math:`\rho` changes sign, so the kink is never crossed: the
angular integrals use Gauss-Legendre rules on these two arcs, the radial one a
Gauss rule for the weight :math:`R\,e^{-R^2/2}` on :math:`(0, \infty)`, in
float and in mpmath alike.  Rule sizes run through 8, 11, 16, 23, ... (a
factor :math:`\sqrt 2`) until the estimated error is below :math:`10^{-13}`
(float) or :math:`10^{-\mathrm{dps}}` (mpmath) relative to the integral of
the absolute value of the integrand.  A :class:`RuntimeWarning` reports a
failure to converge, which is what kinks away from 0 (e.g. ReLU6) cause.

The rules are those of :mod:`pencils.quadrature` (Gauss-Legendre on the arcs,
:func:`~pencils.quadrature.half_range_gauss` for the half-range weights), cached
per size and precision.

Accuracy and cost (measured against the closed forms and against nested
:func:`mpmath.quad` references):

* float: errors below :math:`10^{-13}` relative, whether smooth (tanh,
  sigmoid, erf, sin, polynomials) or kinked at 0 (ReLU, :math:`|x|`), in
  well under a millisecond per correlation.  A plain Gauss-Hermite rule
  would not do: on a ReLU-type integrand it converges algebraically, leaving
  an error near :math:`10^{-5}` with 200 nodes.
* mpmath: first moments in well under a second.  Kernels at ``dps=50`` take
  0.1 s for ReLU, 1-2 s for sin or cos and 20-70 s for erf (``mpmath.erf``
  is slow at large arguments); tanh takes about 3 s at ``dps=30``, as its
  poles at :math:`\pm i\pi/2` slow the convergence down (91 nodes per
  dimension, against 32 in float).  Nested :func:`mpmath.quad` is far slower,
  e.g. 35 s for one sine kernel value at ``dps=20``.

Closed forms
------------
Registered in :data:`REGISTRY`; :data:`tanh` and :data:`sigmoid` have none
and use the quadrature.  Each also has closed forms at any input variance
(:meth:`Activation.at_variance`).

``relu``, :math:`\max(x, 0)`
    :math:`\mu_0 = 1/\sqrt{2\pi}`, :math:`\mu_1 = \|\rho\|^2 = 1/2` and
    :math:`c(r) = \bigl(\sqrt{1-r^2} + r(\pi - \arccos r)\bigr)/(2\pi)`.  In
    the polar formula only :math:`\varphi \in (\alpha, \pi)` contributes,
    with integrand :math:`R^2\sin\varphi\,\sin(\varphi-\alpha)`; and
    :math:`\int_0^\infty R^3 e^{-R^2/2}dR = 2`, :math:`\int_\alpha^\pi
    \sin\varphi\,\sin(\varphi-\alpha)\,d\varphi = \bigl((\pi-\alpha)\cos
    \alpha + \sin\alpha\bigr)/2`.
``abs``, :math:`|x|`
    :math:`\mu_0 = \sqrt{2/\pi}`, :math:`\mu_1 = 0`, :math:`\|\rho\|^2 = 1`
    and :math:`c(r) = (2/\pi)\bigl(\sqrt{1-r^2} + r\arcsin r\bigr)`, from
    :math:`|x| = \mathrm{relu}(x) + \mathrm{relu}(-x)`, i.e.
    :math:`c(r) = 2c_\mathrm{relu}(r) + 2c_\mathrm{relu}(-r)`.
``erf``
    :math:`\mu_0 = 0`, :math:`\mu_1 = E\,\mathrm{erf}'(g) = (2/\sqrt\pi)\,
    E\,e^{-g^2} = 2/\sqrt{3\pi}` and :math:`c(r) = (2/\pi)\arcsin(2r/3)`,
    :math:`\|\rho\|^2 = (2/\pi)\arcsin(2/3)`: by Price's theorem
    :math:`c'(r) = E\,\rho'(g)\rho'(g') = (4/\pi)\,E\,e^{-g^2-g'^2} =
    (4/\pi)(9 - 4r^2)^{-1/2}`, and :math:`c(0) = \mu_0^2 = 0`.
``sin`` and ``cos``
    From :math:`E\,e^{i(ag + bg')} = e^{-(a^2 + 2abr + b^2)/2}`:
    :math:`E\cos(g \mp g') = e^{-(1 \mp r)}`, so
    :math:`c_{\sin}(r) = e^{-1}\sinh r` and :math:`c_{\cos}(r) = e^{-1}\cosh r`;
    :math:`\mu_1 = E\cos g = e^{-1/2}` for sin, :math:`\mu_0 = e^{-1/2}` for
    cos, the other first moments vanishing by parity, and
    :math:`\|\rho\|^2 = (1 \mp e^{-2})/2`.
``linear`` (also ``identity``), :math:`x`
    :math:`\mu_0 = 0`, :math:`\mu_1 = \|\rho\|^2 = 1`, :math:`c(r) = r`.

Split without cancellation
--------------------------
With the Hermite coefficients :math:`c_k = E\,\rho(g) He_k(g)/\sqrt{k!}`,
the shared and private variances of :meth:`Activation.correlated_split` are

.. math::

    c(r) - \mu_0^2 - r\mu_1^2 = \sum_{k \ge 2} c_k^2 r^k, \qquad
    \|\rho\|^2 - c(r) - (1 - r)\mu_1^2 = \sum_{k \ge 2} c_k^2 (1 - r^k),

sums of non-negative terms for :math:`r \in [0, 1]`, while the differences on
the left lose all digits as :math:`r \to 0` (the shared part is
:math:`O(r^2)`) or :math:`r \to 1` (the private part is :math:`O(1 - r)`, and
``1 - r`` itself is inexact unless given: see the ``complement`` argument).
They are computed as follows, to a few units of roundoff in float and to the
requested digits in mpmath, for every :math:`r \in [0, 1]`:

* ``relu`` and ``abs`` (ReLU is :math:`x/2 + |x|/2`, so its variances are a
  quarter of those of :math:`|x|`): with :math:`\varphi = \arcsin r` and
  :math:`\theta = \arccos r = 2\arcsin\sqrt{(1 - r)/2}`, the shared part of
  :math:`|x|` is :math:`(2/\pi)(\varphi\sin\varphi - 2\sin^2(\varphi/2))` (the
  two terms differ by a factor 2 at least) and the private part is
  :math:`(1 - r) - (2/\pi)(\sin\theta - \theta\cos\theta)`, the last term
  a power series below :math:`\theta = 1` and :math:`O((1 - r)^{3/2})`.
* ``erf``: shared :math:`(2/\pi)(\arcsin x - x)`, :math:`x = 2r/3`, by its
  power series; private :math:`(2/\pi)(\arcsin D - 2(1 - r)/3)` with
  :math:`\arcsin D = \arcsin(2/3) - \arcsin x` and
  :math:`D = (4/9)(1 - r)(1 + r)/(b\sqrt{1 - x^2} + x\sqrt{1 - b^2})`,
  :math:`b = 2/3`.
* ``sin``: shared :math:`e^{-1}(\sinh r - r)` by its series; private
  :math:`e^{-1}(4\sinh^2((1 + r)/4)\sinh(q/2) + 2(\sinh(q/2) - q/2))` with
  :math:`q = 1 - r`.  ``cos``: :math:`2e^{-1}\sinh^2(r/2)` and
  :math:`2e^{-1}\sinh((1 + r)/2)\sinh(q/2)`.
* Activations without these closed forms: the Hermite series, with
  :math:`1 - r^k = -\mathrm{expm1}(k\,\mathrm{log1p}(-q))`, and the
  coefficients from the folded half-range Gauss rule (256 in float; parity
  exact, so odd activations get exact zeros).  In float the series is used
  when its coefficients have converged (:math:`\sum k c_k^2` over the last
  eighth below :math:`10^{-15}\sum c_k^2`: tanh and sigmoid); otherwise
  (kinked activations) the shared part is the series for :math:`|r| \le 1/2`
  and the subtraction above, the private part the subtraction for
  :math:`q \ge 1/2` and the mpmath value below.  In mpmath the shared part is
  the series where 96 terms suffice, else the subtraction, and the private
  part the subtraction, both with the working precision raised by the digits
  the subtraction loses (:math:`\log_{10}` of :math:`\|\rho\|^2` over the
  leading term, and :math:`\log_{10}(1/q)`).

Measured against the subtractions evaluated at 400 digits, for
:math:`r = e^{-2t}`, :math:`t \in [10^{-12}, 100]`: within
:math:`3.2 \cdot 10^{-15}` relative in float (erf; :math:`4 \cdot 10^{-16}`
for the others) and :math:`10^{-48}` at ``dps=50``; tanh and sigmoid in
float against ``dps=20`` within :math:`4 \cdot 10^{-15}`.  The float series
converges for tanh and sigmoid; for a kinked activation, or tanh at input
variance 3, the private part near :math:`r = 1` comes from mpmath (seconds).

The package's modules: ``_arithmetic`` (the two arithmetics), ``_integrals``
(quadratures of moments, kernels and Hermite coefficients), ``_split`` (the split
without cancellation), ``_activation`` (:class:`Activation`) and ``_named`` (the
named activations and :func:`get`).

Examples
--------
>>> from pencils import activations
>>> act = activations.get("relu")
>>> act.mu0(), act.mu1(), act.second_moment()
(0.3989422804014327, 0.5, 0.5)
>>> split = act.correlated_split(0.25)
>>> bool(abs(split.shared + split.private - split.total) < 1e-15)
True
"""

from ..precision import GUARD_DIGITS
from ._activation import Activation, ClosedForm, CorrelatedSplit
from ._named import REGISTRY, absolute, cos, erf, get, linear, relu, sigmoid, sin, tanh

__all__ = [
    "GUARD_DIGITS",
    "REGISTRY",
    "Activation",
    "ClosedForm",
    "CorrelatedSplit",
    "absolute",
    "cos",
    "erf",
    "get",
    "linear",
    "relu",
    "sigmoid",
    "sin",
    "tanh",
]
