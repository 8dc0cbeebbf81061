"""The spectral-model protocol: labels in, noiseless spectra and Jacobians out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["SpectralModel"]

#: Members a spectral model may have: its consumers use them when present and do
#: without them otherwise (see the Notes of `SpectralModel`).
OPTIONAL_MEMBERS = ("n_pix", "stencil_valid", "axes", "metadata")


@runtime_checkable
class SpectralModel(Protocol):
    """A map from stellar labels to noiseless spectra, with its Jacobian.

    Everything in specreg that needs physics (data generation, template fitting,
    Fisher and Bayes bounds) consumes this protocol;
    :class:`~specreg.spectra.SpectralGrid` implements it. The members declared
    here are what every consumer may call; ``isinstance(obj, SpectralModel)``
    checks that they exist (not their signatures).

    Attributes
    ----------
    param_names : tuple of str
        Label names, in the column order of ``theta``, e.g.
        ``("T_eff", "log_g", "M_H")``.
    wave : ndarray of shape (n_pix,)
        Wavelengths in Å, strictly increasing.
    bounds : dict of str -> (float, float)
        The label box, ``name -> (lo, hi)``: the default prior of
        :func:`~specreg.datasets.make_spectra` and the bounds, and the box a
        template fit searches.

    Notes
    -----
    **Optional members.** A model may also have these; consumers use them when
    present (all of them on a `SpectralGrid`):

    * ``n_pix`` (int): the number of pixels; otherwise ``len(wave)``.
    * ``stencil_valid(theta)`` (ndarray of bool of shape (n,)): whether the
      labels can be evaluated (a grid with holes says False next to a missing
      node); :func:`~specreg.datasets.make_spectra` redraws such labels.
    * ``axes`` (dict of str -> ndarray): node coordinates per label.
      ``LabelPrior.from_grid(model, snap=True)`` snaps to them (and needs them),
      and ``FisherCeiling.evaluate`` uses them to refuse snapped test labels.
    * ``metadata`` (dict): provenance; its ``"name"`` names the model in the
      metadata of simulated sets and benchmark reports.

    **What needs a SpectralGrid.** A few procedures are defined on the nodes of
    a grid, not on a map from labels to spectra, and take a `SpectralGrid` (or
    a subclass such as `ResponseGrid`):

    * the template fit's coarse start searches the grid's nodes
      (``node_flux``, ``valid``, ``axes``, ``method``); any other model is
      searched on a regular lattice of ``flux`` calls instead;
    * the reference procedure of the Fisher ceiling
      (``FisherCeiling.reference_table``) uses ``node_jacobian``,
      ``node_flux``, ``nodes`` and ``valid``;
    * :func:`~specreg.datasets.save_grid` and
      :func:`~specreg.grids.leave_one_out_errors`.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid
    >>> grid = SpectralGrid({"T_eff": [4000.0, 5000.0]}, np.ones((2, 3)),
    ...                     wave=[1.0, 2.0, 3.0])
    >>> isinstance(grid, SpectralModel)
    True
    """

    param_names: tuple[str, ...]
    wave: np.ndarray
    bounds: dict[str, tuple[float, float]]

    def flux(self, theta: ArrayLike, *, out_of_bounds: str = "raise") -> np.ndarray:
        """Noiseless spectra at the labels ``theta``.

        Parameters
        ----------
        theta : array-like of shape (n, n_params)
            Labels, columns in ``param_names`` order.
        out_of_bounds : {"raise", "clip"}, default="raise"
            Labels outside ``bounds``: raise ``ValueError``, or evaluate at the
            nearest label inside the box. The bounds pass ``"clip"`` (their
            posterior draws may step outside the box); the template fit and
            :func:`~specreg.datasets.make_spectra` only ask for labels inside it.

        Returns
        -------
        flux : ndarray of shape (n, n_pix)
        """

    def jacobian(self, theta: ArrayLike, *, out_of_bounds: str = "raise") -> np.ndarray:
        """Derivative of :meth:`flux` with respect to the labels.

        Parameters
        ----------
        theta : array-like of shape (n, n_params)
        out_of_bounds : {"raise", "clip"}, default="raise"
            As in :meth:`flux`; with ``"clip"`` the derivative at the clipped
            label.

        Returns
        -------
        jacobian : ndarray of shape (n, n_pix, n_params)
            ``d flux / d theta`` in flux units per label unit (per K, per dex).
        """
