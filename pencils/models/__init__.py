"""Problems built on the engine: each states its quantity as matrix expressions and calls it."""

import mpmath
import numpy as np


def difference(minuend, subtrahend):
    """``minuend - subtrahend``, exact for mpmath numbers (at any global ``mpmath.mp.dps``).

    Models return mpmath numbers rounded to ``dps`` digits; subtracting them in
    the global context would round the difference to its 15 digits.

    Examples
    --------
    >>> import mpmath
    >>> with mpmath.workdps(40):
    ...     a, b = mpmath.mpf(1) / 3, mpmath.mpf(1) / 7
    >>> mpmath.nstr(difference(a, b), 40) == mpmath.nstr(mpmath.fsub(a, b, exact=True), 40)
    True
    """
    if isinstance(minuend, np.ndarray) and minuend.dtype == object:
        return np.frompyfunc(lambda x, y: mpmath.fsub(x, y, exact=True), 2, 1)(minuend, subtrahend)
    if isinstance(minuend, (mpmath.mpf, mpmath.mpc)):
        return mpmath.fsub(minuend, subtrahend, exact=True)
    return minuend - subtrahend
