"""Make ``import greenlet`` load fastco's greenlet module.

fastco can stand in for the greenlet package, so that libraries written for
greenlet (SQLAlchemy's asyncio layer, greenback, gevent in pure-Python mode)
run on fastco's switch without a change.  A meta path finder placed first on
``sys.meta_path`` resolves the name ``greenlet`` to fastco's provider package
(fastco/_as_greenlet/greenlet), whether or not the real greenlet is
installed.

It is switched on for a whole program, child processes included, by the
environment variable ``FASTCO_AS_GREENLET=1``: fastco-as-greenlet.pth,
installed with fastco, imports this module at interpreter start only when
the variable is set.  This module is top-level and uses the standard library
only, so that doing so does not import fastco itself: that happens at the
first ``import greenlet``.  From code, ``fastco.install_as_greenlet()`` does
the same for the running process.
"""

# Only what the interpreter's start has imported anyway: importlib's parts
# are imported at the first `import greenlet`.
import os
import sys

#: The environment variable that switches it on ("1"; anything else: off).
ENV_VAR = "FASTCO_AS_GREENLET"


def provider_root() -> str:
    """The directory that holds fastco's ``greenlet`` package."""
    import importlib.util

    spec = importlib.util.find_spec("fastco")   # finds fastco without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("fastco is not installed: cannot provide the greenlet module")
    return os.path.join(list(spec.submodule_search_locations)[0], "_as_greenlet")


class GreenletFinder:
    """Finds ``greenlet`` in fastco's provider directory.

    Only the top-level name is handled here: its submodules
    (``greenlet._greenlet``) are then found through the package's
    ``__path__`` by Python's ordinary path finder.
    """

    @classmethod
    def find_spec(cls, fullname: str, path: object = None,
                  target: object = None) -> object:
        """The spec of fastco's package for the name ``greenlet``, else None."""
        if fullname != "greenlet":
            return None
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(fullname, [provider_root()])

    @classmethod
    def invalidate_caches(cls) -> None:
        """Nothing cached here (the path finder keeps its own caches)."""


def is_provided(module: object) -> bool:
    """Whether ``module`` is fastco's greenlet module (not the real greenlet)."""
    return getattr(module, "__fastco__", False) is True


def install() -> None:
    """Make the next ``import greenlet`` load fastco's greenlet module.

    Raises RuntimeError if the real greenlet was imported already: greenlet
    objects of two implementations cannot mix, so it must come first.
    Calling it again is harmless.
    """
    module = sys.modules.get("greenlet")
    if module is not None and not is_provided(module):
        where = getattr(module, "__file__", None) or "?"
        raise RuntimeError(
            "install_as_greenlet(): the greenlet module was already imported (from "
            f"{where}); call it before anything imports greenlet, or set {ENV_VAR}=1 "
            "in the environment")
    if GreenletFinder not in sys.meta_path:
        sys.meta_path.insert(0, GreenletFinder)


def enabled_by_environment() -> bool:
    """Whether the environment asks for fastco as greenlet."""
    return os.environ.get(ENV_VAR) == "1"


def install_at_startup() -> None:
    """Called from fastco-as-greenlet.pth when FASTCO_AS_GREENLET=1: like
    install(), but a failure is a warning, never the end of the interpreter."""
    try:
        install()
    except Exception as exc:   # site would print a bare traceback and go on
        sys.stderr.write(f"fastco: {ENV_VAR}=1 but fastco cannot stand in for greenlet: "
                         f"{exc}\n")
