"""Package attributes imported on first use (PEP 562), for names behind heavy imports.

``specreg``, ``specreg.grids`` and ``specreg.estimators`` re-export names whose modules
load torch, scipy or pandas; a package binds them lazily with :func:`lazy_attributes`
so that importing it (and the ``specreg`` command's help) stays cheap. Kept free of
imports beyond the standard library, so every package may use it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, modules: Mapping[str, str], names: Iterable[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package that imports names on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    modules : mapping of str to str
        Public name -> the module that defines it, relative to ``package``
        (``"._vit"``) or absolute.
    names : iterable of str
        The package's public names (its ``__all__``), listed by ``dir()`` before
        they are imported.

    Returns
    -------
    __getattr__ : callable
        Imports the module of a name of ``modules`` on first access and binds the
        name in the package, so that later accesses are plain lookups; any other
        name raises ``AttributeError``.
    __dir__ : callable
        The package's globals and ``names``, sorted.

    Examples
    --------
    >>> import types, sys
    >>> pkg = types.ModuleType("pkg")
    >>> sys.modules["pkg"] = pkg
    >>> pkg.__getattr__, pkg.__dir__ = lazy_attributes("pkg", {"sqrt": "math"}, ["sqrt"])
    >>> pkg.sqrt(4.0), "sqrt" in vars(pkg)
    (2.0, True)
    >>> del sys.modules["pkg"]
    """
    names = tuple(names)

    def __getattr__(name: str):
        if name in modules:
            value = getattr(import_module(modules[name], package), name)
            setattr(sys.modules[package], name, value)  # import once
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
