import atexit
import os
import shutil
import tempfile

import pytest
import sympy
from threadpoolctl import threadpool_limits

from pencils import Gaussian

# Derivations go to a cache of this run (inherited by the subprocesses of the example and
# notebook tests), not to the user's: every run starts cold and leaves nothing behind.
if "PENCILS_CACHE_DIR" not in os.environ:
    os.environ["PENCILS_CACHE_DIR"] = tempfile.mkdtemp(prefix="pencils-test-cache-")
    atexit.register(shutil.rmtree, os.environ["PENCILS_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def single_threaded_blas():
    """The tests run many small and mid-sized dense products; one BLAS thread keeps their time
    predictable on a shared two-core machine (two threads were measured 13x slower under load)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def matrices():
    """Symbols and Gaussians shared by the engine tests."""
    d, n, p, z, lam = sympy.symbols("d n p z lambda")
    return {
        "d": d, "n": n, "p": p, "z": z, "lam": lam,
        "X": Gaussian("X", n, d),
        "Y": Gaussian("Y", d, d),
        "W": Gaussian("W", p, d),
        "Z": Gaussian("Z", d, n),
        "I_d": sympy.Identity(d), "I_n": sympy.Identity(n), "I_p": sympy.Identity(p),
    }
