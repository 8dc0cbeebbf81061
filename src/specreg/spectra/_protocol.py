"""The spectral-model protocol: labels in, noiseless spectra and Jacobians out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["SpectralModel"]


@runtime_checkable
class SpectralModel(Protocol):
    """A map from stellar labels to noiseless spectra, with its Jacobian.

    Everything in specreg that needs physics (data generation, template fitting,
    Fisher bounds) consumes this protocol; :class:`~specreg.spectra.SpectralGrid`
    implements it.

    Attributes
    ----------
    param_names : tuple of str
        Label names, e.g. ``("T_eff", "log_g", "M_H")``.
    wave : ndarray of shape (n_pix,)
        Wavelengths in Å.
    bounds : dict
        ``name -> (lo, hi)``.

    Examples
    --------
    >>> from specreg.spectra import SpectralGrid
    >>> import numpy as np
    >>> grid = SpectralGrid({"T_eff": [4000.0, 5000.0]}, np.ones((2, 3)), wave=[1.0, 2.0, 3.0])
    >>> isinstance(grid, SpectralModel)
    True
    """

    param_names: tuple[str, ...]
    wave: np.ndarray
    bounds: dict

    def flux(self, theta) -> np.ndarray:
        """Noiseless spectra, shape (n, n_pix)."""

    def jacobian(self, theta) -> np.ndarray:
        """d flux / d theta in label units, shape (n, n_pix, n_params)."""
