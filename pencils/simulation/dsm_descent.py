r"""Real gradient descent on the DSM loss at finite ``d``, with fresh noise at every step.

The limit :func:`pencils.models.dsm.gradient_flow` describes the random-features score trained
from ``B = 0`` by gradient flow on the ``m = inf`` DSM loss (conventions of
:mod:`pencils.simulation.dsm`)

.. math::

   \tfrac12 L_\infty(B) = \tfrac12\Big[\frac1n\sum_i E_z\|z - B\rho_i(z)\|^2
       + \lambda\|B\|_F^2\Big],
   \qquad \frac{dB}{d\tau} = V - B(U + \lambda I_p),

with ``rho_i(z) = rho(W (a x_i + sqrt(h) z)/sqrt(d))``, ``U = (1/n) sum_i E_z[rho rho^T]``,
``V = (1/n) sum_i E_z[z rho^T]``, so ``B(tau) = V (I - exp(-tau (U + lam))) (U + lam)^{-1}``.

:func:`gradient_descent` trains ``B`` on that loss the way one really would: at step ``k`` it
draws ``draws`` *fresh* noises ``z_ij`` per training point, forms the features
``F_k`` (``p x N``, ``N = n draws``) of the noisy inputs and the noises ``Z_k`` (``d x N``), and
takes the step

.. math::

   B_{k+1} = B_k + \eta\Big[\frac{Z_k F_k^T}{N} - B_k\Big(\frac{F_k F_k^T}{N} + \lambda I_p\Big)\Big],

a stochastic gradient step on ``L_inf / 2`` whose expectation over the fresh noise is the exact
gradient step (``B_k`` is independent of the noise of step ``k``).  So
``E B_k = V (I - (I - eta (U + lam))^k) (U + lam)^{-1}``: the gradient flow at
``tau = k eta`` up to ``O(eta)``, plus a zero-mean fluctuation of variance ``O(eta / N)``.
Fresh noise (rather than ``m`` fixed draws, i.e. descent on the finite-``m`` loss) is what
targets the ``m = inf`` flow: with fixed draws the trajectory converges to the finite-``m``
ridge estimator, which differs from the ``m = inf`` one at order one when ``p`` is comparable
to ``n m``.

Errors are computed exactly given ``B`` (no Monte Carlo): the test error from the closed-form
moments of a fresh ``x_t ~ N(0, I)`` (:func:`pencils.simulation.dsm.fresh_moments`), the
``m = inf`` train error ``(1/n) sum_i E_z ||z - B rho||^2 / d`` from the closed-form training
moments (:func:`pencils.simulation.dsm.training_moments`), hence ``rho = sin`` or ``cos``.  The
same moments give the exact gradient flow of the same draw of ``W`` and ``X``
(eigendecomposition of ``U + lam``), returned alongside to separate the error of the
descent from the finite-``d`` fluctuations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pencils import activations
from pencils.errors import ParameterError
from pencils.simulation.dsm import fresh_moments, training_moments
from pencils.validation import check_number, check_positive_int

__all__ = ["DescentResult", "gradient_descent"]


@dataclass(frozen=True)
class DescentResult:
    """Errors along one run of :func:`gradient_descent`, all divided by ``d``.

    Attributes
    ----------
    time : numpy.ndarray
        Training times ``tau = steps * learning_rate`` actually reached (the requested times
        rounded to whole steps).
    test, train : numpy.ndarray
        Test error (fresh data and noise) and ``m = inf`` train error of the trained ``B`` at
        each time.
    flow_test, flow_train : numpy.ndarray
        The same errors for the exact gradient flow ``B(tau) = V(I - e^{-tau(U + lam)})(U +
        lam)^{-1}`` of the same ``W`` and ``X``.
    d, n, p : int
    learning_rate : float
    draws : int
        Fresh noises per training point and step.
    seed : Any
    """

    time: np.ndarray
    test: np.ndarray
    train: np.ndarray
    flow_test: np.ndarray
    flow_train: np.ndarray
    d: int
    n: int
    p: int
    learning_rate: float
    draws: int
    seed: Any


def _errors(B: np.ndarray, second: np.ndarray, cross: np.ndarray) -> float:
    """``1 + (1/d)[tr(B U B^T) - 2 tr(B V^T)]`` for the moments ``U = second``, ``V = cross``."""
    return 1.0 + (float(np.sum((B @ second) * B)) - 2.0 * float(np.sum(B * cross))) / B.shape[0]


def gradient_descent(
    d: int,
    psi_n: float,
    psi_p: float,
    t: float,
    time,
    lam: float = 0.0,
    learning_rate: float = 5e-3,
    draws: int = 1,
    activation: Any = "sin",
    seed: Any = 0,
) -> DescentResult:
    r"""Train the DSM random-features score by gradient descent with fresh noise; errors along the way.

    ``n = round(psi_n d)`` points ``X`` and features ``W`` are drawn as in
    :func:`pencils.simulation.dsm.simulate` with the same ``seed`` (same ``W`` and ``X``), the
    activation is centred (``rho - E rho(g)``), ``B`` starts at ``0`` and follows the step of the
    module docstring for ``round(max(time) / learning_rate)`` steps.

    Parameters
    ----------
    d : int
    psi_n, psi_p, t : float
        ``n/d``, ``p/d`` and the diffusion time.
    time : float or array_like
        Training times ``tau >= 0`` at which to record the errors (the gradient-flow time of
        :func:`pencils.models.dsm.gradient_flow`).
    lam : float
        Ridge (``>= 0``).
    learning_rate : float
        Step ``eta``; the discretisation error is ``O(eta)`` and the fluctuation ``O(sqrt(eta /
        (n draws)))``.  Must satisfy ``eta (lambda_max(U) + lam) < 2`` (else ``ParameterError``);
        a run that still diverges (noisy steps) raises too.
    draws : int
        Fresh noises per training point and step (``N = n draws`` noisy inputs per step).
    activation : str or Activation
        ``"sin"`` or ``"cos"`` (closed-form ``m = inf`` moments).
    seed : int, sequence of int or None

    Returns
    -------
    DescentResult

    Examples
    --------
    >>> run = gradient_descent(40, 2.0, 1.0, 0.5, [0.5, 1.0], lam=0.1, learning_rate=0.01, seed=1)
    >>> run.time
    array([0.5, 1. ])
    >>> bool(np.all(np.abs(run.test - run.flow_test) < 0.02))
    True
    """
    d = check_positive_int(d, "d")
    psi_n = check_number(psi_n, "psi_n", hint=" Pass the ratio n/d, e.g. psi_n=2.")
    psi_p = check_number(psi_p, "psi_p", hint=" Pass the ratio p/d, e.g. psi_p=1.")
    t = check_number(t, "t", hint=" The diffusion time must be positive, e.g. t=0.5.")
    lam = check_number(lam, "lam", strict=False, hint=" The ridge must be non-negative, e.g. lam=0.1.")
    learning_rate = check_number(learning_rate, "learning_rate", hint=" e.g. learning_rate=5e-3.")
    draws = check_positive_int(draws, "draws")
    times = np.atleast_1d(np.asarray(time, dtype=float))
    if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ParameterError("time must be finite non-negative training times (a float or a 1-d array)")
    act = activations.get(activation)
    if act not in (activations.sin, activations.cos):
        raise ParameterError("gradient_descent needs activation 'sin' or 'cos' (closed-form m = inf moments)")
    n, p = max(1, round(psi_n * d)), max(1, round(psi_p * d))
    steps = np.rint(times / learning_rate).astype(int)

    train_stream, _ = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(train_stream)
    W = rng.standard_normal((p, d))
    X = rng.standard_normal((d, n))
    a, h = math.exp(-t), -math.expm1(-2.0 * t)
    mu0 = float(act.mu0())
    U, V = training_moments(W, X, t, act, centred=True)
    U_test, V_test = fresh_moments(W, t, act, centred=True)
    eigenvalues, vectors = np.linalg.eigh(U + lam * np.eye(p))
    if learning_rate * eigenvalues[-1] >= 2.0:
        raise ParameterError(f"learning_rate={learning_rate} is unstable: gradient descent needs learning_rate "
                             f"< 2 / (lambda_max(U) + lam) = {2.0 / eigenvalues[-1]:.3g} here")

    signal = (a / math.sqrt(d)) * (W @ X)  # p x n, the data part of every pre-activation
    projection = math.sqrt(h / d) * W  # p x d
    total = n * draws
    B = np.zeros((d, p))
    ridge = lam * np.eye(p)
    test, train = np.empty(times.size), np.empty(times.size)
    order = np.argsort(steps, kind="stable")
    position = 0
    for step in range(int(steps.max(initial=0)) + 1):
        while position < order.size and steps[order[position]] == step:
            test[order[position]] = _errors(B, U_test, V_test)
            train[order[position]] = _errors(B, U, V)
            position += 1
        if position == order.size:
            break
        Z = rng.standard_normal((d, total))
        F = np.asarray(act(np.tile(signal, draws) + projection @ Z), dtype=float) - mu0
        B += learning_rate * ((Z @ F.T) / total - B @ ((F @ F.T) / total + ridge))
        if not np.all(np.isfinite(B)):
            raise ParameterError(f"gradient descent diverged at step {step + 1}: lower learning_rate "
                                 f"(it must be below 2 / (lambda_max(U) + lam))")

    flow_test, flow_train = np.empty(times.size), np.empty(times.size)
    for index, tau in enumerate(steps * learning_rate):
        flow = (V @ vectors) * (-np.expm1(-tau * eigenvalues) / eigenvalues) @ vectors.T
        flow_test[index], flow_train[index] = _errors(flow, U_test, V_test), _errors(flow, U, V)
    return DescentResult(time=steps * learning_rate, test=test, train=train, flow_test=flow_test,
                         flow_train=flow_train, d=d, n=n, p=p, learning_rate=learning_rate, draws=draws,
                         seed=seed)
