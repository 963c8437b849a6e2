"""The optional dependencies (extras) and the one way an error message says how to get one.

``pip install stargate`` fetches the unrelated 2011 Stargate (0.4) from PyPI, so a hint to
install the extra ``stargate[redis]`` from there misleads every user of this project.  What
is always right, however this project was installed (a checkout, ``-e .``, a wheel), is to
install the missing package itself: :func:`install_hint` says so, in one wording everywhere.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "install_hint"]

#: Each extra of pyproject.toml that the code asks for by name, and the distributions it
#: installs (any version pip picks satisfies the extra's lower bound).
EXTRAS: dict[str, tuple[str, ...]] = {
    "gunicorn": ("gunicorn",),
    "prometheus": ("prometheus_client",),
    "pyramid": ("pyramid",),
    "redis": ("redis",),
    "reload": ("hupper",),
    "uvloop": ("uvloop",),
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``'s packages: ``python3 -m pip install redis``."""
    return "python3 -m pip install " + " ".join(EXTRAS[extra])
