import sympy
import pytest

from pencils import Gaussian


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
